"""The engine's storage protocol (:class:`thotto.engine.store.base.JobStore`)."""
