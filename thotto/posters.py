"""The poster pool: N workers that run claimed jobs at their exact time and report outcomes.

The ticker hands claimed jobs to :meth:`PosterPool.submit` (a direct call: it only pushes onto a
heap). Idle workers take the earliest job, sleep until its ``run_at`` if it was claimed a little
ahead, and run its handler under the kind's timeout. Outcomes are collected and written with one
``Store.settle`` per batch; leases of every held job are renewed together by one heartbeat task.

Capacity (backpressure): the pool accepts at most ``workers + prefetch`` unstarted-or-running
jobs, where the prefetch follows the measured completion rate (what the pool finishes in
``prefetch_seconds``, between ``workers`` and ``max_prefetch``), so slow jobs (Reddit posts) are
claimed a few at a time and leave the rest to other processes, while no-op jobs are claimed by the
thousand.

Shutdown: when asked to stop, the pool hands back jobs it has not started, lets running ones
finish within the grace period, cancels the rest, records every outcome and releases every lease
it still holds (shielded), so another process or a restart picks them up at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import trio

from actors import ChildContext
from thotto.clock import Clock
from thotto.errors import DeferJob, PermanentJobError, RetryableJobError, StoreError
from thotto.handlers import HandlerRegistry, HandlerSpec, JobContext
from thotto.messages import (
    Completed,
    Dead,
    Deferred,
    Job,
    Outcome,
    Retry,
    SettleStatus,
)
from thotto.store.base import Store

log = logging.getLogger("thotto.posters")

NO_HANDLER_DEFER_SECONDS = 30.0
YIELD_EVERY_JOBS = 64  # a worker running only instant handlers still lets other tasks in
SETTLE_RETRY_SECONDS = 1.0
RATE_WINDOW_SECONDS = 1.0


class PosterPool:
    """Runs jobs; see the module docstring. Start with ``nursery.start(pool.run)``."""

    def __init__(
        self,
        store: Store,
        registry: HandlerRegistry,
        clock: Clock,
        *,
        owner: str,
        workers: int = 8,
        lease_seconds: float = 30.0,
        grace_seconds: float = 25.0,
        prefetch_seconds: float = 0.1,
        max_prefetch: int = 1000,
    ):
        self.store = store
        self.registry = registry
        self.clock = clock
        self.owner = owner
        self.workers = workers
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.prefetch_seconds = prefetch_seconds
        self.max_prefetch = max_prefetch
        self._queue: list[tuple[datetime, int, int, Job]] = []  # heap: (run_at, -priority, id)
        self._held: dict[int, Job] = {}  # every job whose lease we hold, until its outcome is stored
        self._running: dict[int, trio.CancelScope] = {}
        self._outcomes: list[Outcome] = []
        self._work_ready = trio.lowlevel.ParkingLot()
        self._capacity_freed = trio.lowlevel.ParkingLot()
        self._outcomes_ready = trio.Event()
        self._holding = trio.Event()
        self._idle = trio.Event()
        self._accepting = False
        self._grace = trio.CancelScope()
        self._rate = 0.0
        self._window_start = 0.0
        self._window_done = 0
        self.counts = {"completed": 0, "retried": 0, "dead": 0, "deferred": 0, "lease_lost": 0}

    # --- the ticker's side (direct calls) ---------------------------------------------------

    @property
    def busy(self) -> int:
        """Jobs accepted and not yet finished running (queued plus running)."""
        return len(self._queue) + len(self._running)

    def capacity(self) -> int:
        """How many more jobs the pool takes now: workers plus a rate-based prefetch, minus busy."""
        prefetch = min(self.max_prefetch, max(self.workers, int(self._rate * self.prefetch_seconds)))
        return max(0, self.workers + prefetch - self.busy) if self._accepting else 0

    async def wait_for_capacity(self) -> None:
        """Return once ``capacity()`` is positive (or at once if it already is)."""
        while self.capacity() == 0:
            await self._capacity_freed.park()

    def submit(self, jobs: Sequence[Job]) -> list[Job]:
        """Accept claimed jobs (their leases are now the pool's). Returns the ones refused
        because the pool is stopping; the caller must release those."""
        if not self._accepting:
            return list(jobs)
        for job in jobs:
            self._held[job.id] = job
            heapq.heappush(self._queue, (job.run_at, -job.priority, job.id, job))
        self._work_ready.unpark(count=len(jobs))
        self._holding.set()
        return []

    # --- running --------------------------------------------------------------------------

    async def run(self, ctx: ChildContext | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled or, with a context, until asked to stop (then shut down
        gracefully as the module docstring says)."""
        self._accepting = True
        self._window_start = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                workers = trio.CancelScope()
                nursery.start_soon(self._run_workers, workers)
                nursery.start_soon(self._heartbeat_loop)
                nursery.start_soon(self._settle_loop)
                task_status.started(self)
                await (ctx.stopping.wait() if ctx else trio.sleep_forever())
                await self._drain(workers)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._hand_everything_back()

    async def _drain(self, workers: trio.CancelScope) -> None:
        """Stop taking work, release unstarted jobs, give running ones the grace period."""
        self._accepting = False
        unstarted = [entry[3] for entry in self._queue]
        self._queue.clear()
        await self._release(unstarted)
        if self._running:
            self._idle = trio.Event()
            with self._grace:
                self._grace.deadline = trio.current_time() + self.grace_seconds
                await self._idle.wait()
        workers.cancel()
        await self._flush_outcomes()

    async def _hand_everything_back(self) -> None:
        """Record pending outcomes, then release every lease still held."""
        await self._flush_outcomes()
        await self._release(list(self._held.values()))

    async def _release(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        try:
            await self.store.release(self.owner, jobs)
        except StoreError:
            log.warning("could not release %d leases; they will expire", len(jobs), exc_info=True)
        for job in jobs:
            self._held.pop(job.id, None)

    def abandon_grace(self) -> None:
        """Cut the shutdown grace period short: running jobs are cancelled and released now."""
        self._grace.cancel()

    # --- workers --------------------------------------------------------------------------

    async def _run_workers(self, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):
                    nursery.start_soon(self._work)

    async def _work(self) -> None:
        for count in itertools.count(1):
            while not self._queue:
                await self._work_ready.park()
            job = heapq.heappop(self._queue)[3]
            if job.run_at > self.clock.now():
                await trio.sleep_until(self.clock.deadline(job.run_at))
            await self._run_job(job)
            if count % YIELD_EVERY_JOBS == 0:
                await trio.sleep(0)

    async def _run_job(self, job: Job) -> None:
        scope = trio.CancelScope()
        self._running[job.id] = scope
        try:
            with scope:
                outcome = await self._outcome_of(job)
            if not scope.cancelled_caught:  # cancelled because the lease was lost: no outcome
                self._record(outcome)
        finally:
            del self._running[job.id]
            self._capacity_freed.unpark_all()
            if not self._running and not self._accepting:
                self._idle.set()

    async def _outcome_of(self, job: Job) -> Outcome:
        spec = self.registry.get(job.kind)
        if spec is None:
            until = self.clock.now() + timedelta(seconds=NO_HANDLER_DEFER_SECONDS)
            return Deferred(job.id, job.attempt, until, f"no handler for kind {job.kind!r} in this process")
        try:
            with trio.fail_after(spec.timeout_seconds or math.inf):
                await spec.handler(JobContext(job, self.clock.now))
        except DeferJob as defer:
            return Deferred(job.id, job.attempt, defer.until, defer.reason)
        except PermanentJobError as error:
            return Dead(job.id, job.attempt, error.reason)
        except RetryableJobError as error:
            return self._retry(spec, job, error.reason, error.after_seconds)
        except trio.TooSlowError:
            return self._retry(spec, job, f"timed out after {spec.timeout_seconds:g} s", None)
        except Exception as error:  # an unclassified failure is worth another try
            log.warning("job %d attempt %d (%s) failed", job.id, job.attempt, job.kind, exc_info=True)
            return self._retry(spec, job, f"{type(error).__name__}: {error}", None)
        return Completed(job.id, job.attempt)

    def _retry(self, spec: HandlerSpec, job: Job, reason: str, after: float | None) -> Outcome:
        return Retry(job.id, job.attempt, spec.retry_at(job.attempt, self.clock.now(), after), reason[:4000])

    # --- outcomes -------------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._outcomes_ready.set()

    async def _settle_loop(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            await self._flush_outcomes()

    async def _flush_outcomes(self) -> None:
        """Write every recorded outcome in one settle; keep them and retry if the store fails
        (settle is idempotent, so a retry after an unknown result is safe)."""
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            self._outcomes_ready = trio.Event()
            try:
                with trio.CancelScope(shield=True):
                    results = await self.store.settle(self.owner, batch)
            except StoreError:
                log.warning("settling %d outcomes failed; retrying", len(batch), exc_info=True)
                self._outcomes = batch + self._outcomes
                await trio.sleep(SETTLE_RETRY_SECONDS)
                continue
            self._account(batch, results)

    def _account(self, batch: list[Outcome], results) -> None:
        for outcome, result in zip(batch, results):
            self._held.pop(outcome.job_id, None)
            if result.status is SettleStatus.LEASE_LOST:
                self.counts["lease_lost"] += 1
                log.warning("job %d attempt %d: lease lost before its outcome was stored",
                            outcome.job_id, outcome.attempt)
            else:
                self.counts[_COUNTER[type(outcome)]] += 1
        self._update_rate(len(batch))

    def _update_rate(self, finished: int) -> None:
        self._window_done += finished
        elapsed = trio.current_time() - self._window_start
        if elapsed >= RATE_WINDOW_SECONDS:
            self._rate = self._window_done / elapsed
            self._window_start, self._window_done = trio.current_time(), 0

    # --- leases ---------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Renew every held lease each third of the lease; stop jobs whose lease was lost."""
        while True:
            if not self._held:  # idle: no timer ticking until there is a lease to renew
                self._holding = trio.Event()
                await self._holding.wait()
            await trio.sleep(self.lease_seconds / 3)
            held = list(self._held)
            try:
                alive = set(await self.store.heartbeat(self.owner, held, self.lease_seconds))
            except StoreError:
                log.warning("heartbeat failed; retrying next beat", exc_info=True)
                continue
            for job_id in held:
                if job_id not in alive and job_id in self._held:
                    self._lose(job_id)

    def _lose(self, job_id: int) -> None:
        log.warning("job %d: lease lost (expired and taken back); stopping its work", job_id)
        self._held.pop(job_id, None)
        self.counts["lease_lost"] += 1
        scope = self._running.get(job_id)
        if scope is not None:
            scope.cancel()
        self._queue = [entry for entry in self._queue if entry[2] != job_id]
        heapq.heapify(self._queue)


_COUNTER = {Completed: "completed", Retry: "retried", Dead: "dead", Deferred: "deferred"}
