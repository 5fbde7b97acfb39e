"""The sweeper: returns expired leases to pending and dead-letters jobs out of attempts.

A lease expires when its holder crashed or hung (a ``kill -9``, a lost network). The store's
``release_expired`` makes such jobs pending again at once (the crashed attempt counts) or dead
when no attempt is left; the resulting wake-up brings the ticker. Retention (purging old finished
jobs) and database upkeep run as cron jobs (see :mod:`thotto.engine`), not here.
"""

from __future__ import annotations

import logging

import trio

from thotto.engine.errors import StoreError
from thotto.engine.jobs import ExpiredLeases
from thotto.engine.store.base import JobStore

log = logging.getLogger("thotto.sweeper")


class Sweeper:
    """Checks for expired leases every ``interval_seconds``. Holds nothing: cancel any time."""

    def __init__(self, store: JobStore, *, interval_seconds: float = 5.0):
        self.store = store
        self.interval_seconds = interval_seconds
        self.released = 0
        self.dead = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            await self.sweep()
            await trio.sleep(self.interval_seconds)

    async def sweep(self) -> ExpiredLeases | None:
        """One pass; a store failure is logged and the next pass tries again."""
        try:
            expired = await self.store.release_expired()
        except StoreError:
            log.warning("releasing expired leases failed; retrying next pass", exc_info=True)
            return None
        if expired.released or expired.dead:
            log.warning(
                "expired leases: %d jobs back to pending, %d dead (out of attempts)",
                len(expired.released), len(expired.dead),
                extra={"released": expired.released, "dead": expired.dead},
            )
        self.released += len(expired.released)
        self.dead += len(expired.dead)
        return expired
