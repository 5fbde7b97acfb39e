"""The ticker: sleeps until the earliest due job, claims due jobs for the worker pool.

No polling interval. The ticker asks the store for the next due time and sleeps until just before
it (looking at the wall clock again at least every ``WALL_CLOCK_CHECK_SECONDS``, in case NTP
stepped it); a wake-up from the store (an enqueue, reschedule, retry or release here, or on Postgres in any
process) that may be due sooner interrupts the sleep. It claims at most what the pool can take
(``pool.capacity()``), and claims jobs due within ``lookahead_seconds`` ahead of time so each can
start at its exact instant. A job enqueued meanwhile that is due even sooner wakes the ticker too,
so pre-claiming never hides it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import datetime, timedelta

import trio

from actors import ChildContext
from thotto.engine.clock import Clock
from thotto.engine.errors import StoreError
from thotto.engine.store.base import JobStore
from thotto.engine.workers import WorkerPool

log = logging.getLogger("thotto.ticker")

STORE_RETRY_SECONDS = 1.0
# A sleep's deadline is computed from the wall clock, which NTP may step while the ticker sleeps:
# a clock stepped an hour forward left it asleep for an hour past due jobs (nothing else woke it
# once the pool had claimed every due job at once). So it looks at the clock again this often
# (only at the clock: the store is asked again when the job is due or a wake-up comes).
WALL_CLOCK_CHECK_SECONDS = 10.0


class Ticker:
    """Feeds the pool; see the module docstring. Start with ``nursery.start(ticker.run)``."""

    def __init__(
        self,
        store: JobStore,
        pool: WorkerPool,
        clock: Clock,
        *,
        owner: str,
        lease_seconds: float = 30.0,
        lookahead_seconds: float = 0.05,
    ):
        self.store = store
        self.pool = pool
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.lookahead = timedelta(seconds=lookahead_seconds)
        self._woken = trio.Event()
        self.sleeping_until: datetime | None = None
        self.claims = 0
        self.claimed_jobs = 0

    async def run(self, ctx: ChildContext | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Claim and hand over jobs until cancelled or asked to stop (it holds nothing of its
        own between claims, so stopping is immediate)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._listen_for_wakeups)
            if ctx is not None:
                nursery.start_soon(_cancel_when_set, ctx.stopping, nursery.cancel_scope)
            task_status.started(self)
            await self._tick_forever()

    async def _tick_forever(self) -> None:
        while True:
            await self.pool.wait_for_capacity()
            self._woken = trio.Event()  # wake-ups from here on interrupt the next sleep
            try:
                if await self._claim_due():
                    # Straight back to waiting for capacity (a checkpoint only if the pool is
                    # full): a sleep(0) here let every worker run a full slice of jobs before
                    # the next claim went out, and the pool ran dry waiting for it.
                    continue
                next_due = await self.store.next_due()
            except StoreError:
                log.warning("store unavailable; the ticker retries shortly", exc_info=True)
                await trio.sleep(STORE_RETRY_SECONDS)
                continue
            await self._sleep_until(next_due)

    async def _claim_due(self) -> int:
        """Claim what is due (or nearly) and fits the pool; return how many were claimed."""
        limit = self.pool.capacity()
        if limit == 0:
            return 0
        # Shielded: a claim that committed must reach the pool, or its leases would be stranded
        # until they expire (and the attempt counted for nothing).
        with trio.CancelScope(shield=True):
            now = self.clock.now()
            jobs = await self.store.claim(self.owner, limit, self.lease_seconds, due_by=now + self.lookahead)
            refused = self.pool.submit(jobs, claimed_at=now)
            if refused:
                await self.store.release(self.owner, refused)
        self.claims += 1
        self.claimed_jobs += len(jobs)
        return len(jobs)

    async def _sleep_until(self, next_due: datetime | None) -> None:
        """Sleep until just before ``next_due`` (forever if None) or a wake-up."""
        self.sleeping_until = next_due
        while True:  # the deadline is recomputed from the wall clock at each check; no store call
            deadline = self.clock.deadline(next_due - self.lookahead) if next_due else math.inf
            if deadline <= trio.current_time():
                break
            with trio.move_on_at(min(deadline, trio.current_time() + WALL_CLOCK_CHECK_SECONDS)):
                await self._woken.wait()
                break
        self.sleeping_until = None

    async def _listen_for_wakeups(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with contextlib.aclosing(self.store.wakeups()) as wakeups:
            task_status.started()
            async for run_at in wakeups:
                if self.sleeping_until is None or run_at < self.sleeping_until:
                    self._woken.set()


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
