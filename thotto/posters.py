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
RATE_WINDOW_SECONDS = 0.25


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
        # heap of (run_at, -priority, id, job, claimed_early)
        self._queue: list[tuple[datetime, int, int, Job, bool]] = []
        self._held: dict[int, Job] = {}  # every job whose lease we hold, until its outcome is stored
        self._slots = [_Slot() for _ in range(workers)]
        self._active = 0  # jobs running now
        self._watching_until = math.inf
        self._watchdog_nudge = trio.Event()
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
        return len(self._queue) + self._active

    def target(self) -> int:
        """How many jobs the pool wants in hand: workers plus a prefetch of what it finishes in
        ``prefetch_seconds`` at its measured rate (at least ``workers``, at most ``max_prefetch``)."""
        prefetch = min(self.max_prefetch, max(self.workers, int(self._rate * self.prefetch_seconds)))
        return self.workers + prefetch

    def capacity(self) -> int:
        """How many more jobs the pool takes now."""
        return max(0, self.target() - self.busy) if self._accepting else 0

    async def wait_for_capacity(self) -> None:
        """Return once the pool is down to half its target (or idle workers wait), so claims
        come in worthwhile batches while the pool still has work in hand, not one job at a
        time as each finishes."""
        while not self._accepting or self.busy > max(self.target() // 2, self.workers - 1):
            await self._capacity_freed.park()

    def submit(self, jobs: Sequence[Job], claimed_at: datetime) -> list[Job]:
        """Accept jobs claimed at ``claimed_at`` (their leases are now the pool's). Returns the
        ones refused because the pool is stopping; the caller must release those."""
        if not self._accepting:
            return list(jobs)
        for job in jobs:
            self._held[job.id] = job
            early = job.run_at > claimed_at  # claimed ahead: wait for its exact time
            heapq.heappush(self._queue, (job.run_at, -job.priority, job.id, job, early))
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
        if self._active:
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
    #
    # Entering a Trio cancel scope costs ~5 µs here, more than running a no-op job end to end, so
    # a worker does not open one per job. Each worker runs inside one long-lived scope; a single
    # watchdog task enforces every job's timeout, and a lost lease, by cancelling that scope,
    # after which the worker records the interrupted job's outcome and opens a fresh scope.

    async def _run_workers(self, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog)
                for slot in self._slots:
                    nursery.start_soon(self._work, slot)

    async def _work(self, slot: "_Slot") -> None:
        while True:
            slot.scope = trio.CancelScope()
            with slot.scope:
                await self._work_until_interrupted(slot)
            self._record_interruption(slot)

    async def _work_until_interrupted(self, slot: "_Slot") -> None:
        for count in itertools.count(1):
            while not self._queue:
                await self._work_ready.park()
            run_at, _, _, job, claimed_early = heapq.heappop(self._queue)
            if claimed_early:
                await trio.sleep_until(self.clock.deadline(run_at))
            spec = self.registry.get(job.kind)
            self._start(slot, job, spec)
            try:
                outcome = await self._outcome_of(job, spec)
            finally:
                self._stop(slot)
            if slot.interruption is None:
                self._record(outcome)
            elif slot.interruption == "timeout":  # it finished anyway, before noticing: keep that
                slot.interruption = None
                self._record(outcome)
            if count % YIELD_EVERY_JOBS == 0:
                await trio.sleep(0)

    def _start(self, slot: "_Slot", job: Job, spec: HandlerSpec | None) -> None:
        timeout = spec.timeout_seconds if spec and spec.timeout_seconds else math.inf
        slot.job, slot.deadline, slot.interruption = job, trio.current_time() + timeout, None
        self._active += 1
        if slot.deadline < self._watching_until:
            self._watchdog_nudge.set()

    def _stop(self, slot: "_Slot") -> None:
        slot.job = None
        self._active -= 1
        self._capacity_freed.unpark_all()
        if not self._active and not self._accepting:
            self._idle.set()

    def _record_interruption(self, slot: "_Slot") -> None:
        """A worker's scope was cancelled: record the timeout (a lost lease gets no outcome)."""
        job, reason, slot.interruption = slot.interrupted_job, slot.interruption, None
        if reason == "timeout" and job is not None:
            spec = self.registry.get(job.kind)
            self._record(self._retry(spec, job, f"timed out after {spec.timeout_seconds:g} s", None))

    def _interrupt(self, slot: "_Slot", reason: str) -> None:
        slot.interruption, slot.interrupted_job = reason, slot.job
        slot.scope.cancel()

    async def _watchdog(self) -> None:
        """Cancel jobs that run past their kind's timeout; sleeps until the earliest deadline."""
        while True:
            now, earliest = trio.current_time(), math.inf
            for slot in self._slots:
                if slot.job is None or slot.interruption:
                    continue
                if slot.deadline <= now:
                    self._interrupt(slot, "timeout")
                else:
                    earliest = min(earliest, slot.deadline)
            self._watching_until = earliest
            self._watchdog_nudge = trio.Event()
            with trio.move_on_at(earliest):
                await self._watchdog_nudge.wait()

    async def _outcome_of(self, job: Job, spec: HandlerSpec | None) -> Outcome:
        if spec is None:
            until = self.clock.now() + timedelta(seconds=NO_HANDLER_DEFER_SECONDS)
            return Deferred(job.id, job.attempt, until, f"no handler for kind {job.kind!r} in this process")
        try:
            await spec.handler(JobContext(job, self.clock.now))
        except DeferJob as defer:
            return Deferred(job.id, job.attempt, defer.until, defer.reason)
        except PermanentJobError as error:
            return Dead(job.id, job.attempt, error.reason)
        except RetryableJobError as error:
            return self._retry(spec, job, error.reason, error.after_seconds)
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
        for slot in self._slots:
            if slot.job is not None and slot.job.id == job_id:
                self._interrupt(slot, "lease_lost")
        self._queue = [entry for entry in self._queue if entry[2] != job_id]
        heapq.heapify(self._queue)


_COUNTER = {Completed: "completed", Retry: "retried", Dead: "dead", Deferred: "deferred"}


class _Slot:
    """One worker's state, read by the watchdog and by lease-loss handling."""

    __slots__ = ("scope", "job", "deadline", "interruption", "interrupted_job")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.job: Job | None = None
        self.deadline = math.inf
        self.interruption: str | None = None  # "timeout" | "lease_lost"
        self.interrupted_job: Job | None = None
