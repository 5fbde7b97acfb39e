"""The store's instrumentation wraps it (metrics.TimedStore) and leaves the store itself as it is."""

from __future__ import annotations

from thotto.engine.errors import NotFound
from thotto.engine.jobs import NewJob
from thotto.metrics import TIMED_OPERATIONS, Metrics
from thotto.store import open_store


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_calls_through_the_wrapper_are_timed_and_the_store_is_untouched(tmp_path):
    metrics = Metrics()
    async with open_store(str(tmp_path / "thotto.db")) as store:
        timed = metrics.timed_store(store)
        await timed.enqueue_many([NewJob(queue="q", kind="k"), NewJob(queue="q", kind="k")])
        claimed = await timed.claim("w1", 10, 30.0)
        assert len(claimed) == 2
        assert timed.name == store.name and timed.store is store
        assert not set(TIMED_OPERATIONS) & set(vars(store))  # no method replaced on the store
        await store.claim("w1", 10, 30.0)  # a call straight to the store is not counted
        try:
            await timed.get_job(10**9)
        except NotFound:
            pass
    count = "thotto_store_operation_seconds_count"
    assert sample(metrics, count, operation="claim") == 1
    assert sample(metrics, count, operation="enqueue_many") == 1
    assert sample(metrics, "thotto_store_errors_total", operation="get_job") == 1
    assert sample(metrics, "thotto_store_batch_size_sum", operation="claim") == 2
    assert sample(metrics, "thotto_jobs_enqueued_total", queue="q", kind="k") == 2
