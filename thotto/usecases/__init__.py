"""Use cases: each action a person takes, written once for every caller (the HTTP API, the CLI,
the creator's pages).

A use case owns its checks (tiers, duplicates, ownership), its store change and everything that
must follow it (cache invalidation in every process), so no caller can do one without the
other; callers only parse their input and present the outcome.

- :mod:`~thotto.usecases.posts`: schedule, edit or reschedule, cancel, read and list posts
- :mod:`~thotto.usecases.accounts`: link a Reddit account (by password, or by Reddit's consent)
- :mod:`~thotto.usecases.tokens`: mint and revoke API tokens
- :mod:`~thotto.usecases.users`: add a user, change a tier, remove a user
- :mod:`~thotto.usecases.operations`: operators' actions on jobs and queues
"""
