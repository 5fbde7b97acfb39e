"""The worker pool: N workers that run claimed jobs at their exact time and report outcomes.

The ticker hands claimed jobs to :meth:`WorkerPool.submit` (a direct call: it only pushes onto a
heap). Idle workers take the earliest job, sleep until its ``run_at`` if it was claimed a little
ahead, and run its handler under the kind's timeout. Outcomes are collected and written with one
``Store.settle`` per batch (a second batch goes out while one is in flight once ``SETTLE_AHEAD``
outcomes wait); leases of every held job are renewed together by one heartbeat task.

Two lanes of workers: ``workers`` run jobs of ordinary kinds, and ``io_workers`` run jobs of the
kinds registered ``io_bound`` (publishing to Reddit, webhooks), which spend their time waiting on
the network. A Trio task waiting on a socket costs a few KB and no CPU, so the I/O lane is wide
(many submissions in flight at once, each waiting ~0.2 s on Reddit) while CPU-bound jobs keep a
few workers: they cannot run in parallel in one Trio thread anyway. Each lane has its own heap, so
a claimed burst of posts never queues behind slow CPU-bound jobs, nor the other way round.

Capacity (backpressure): the pool accepts at most ``workers + prefetch`` unstarted-or-running
jobs (``workers`` counting the I/O lane's too while it has jobs, so a process that runs only
CPU-bound jobs does not claim work for I/O workers that would never take it), where the prefetch
follows the measured completion rate (what the pool finishes in ``prefetch_seconds``, between
``workers`` and ``max_prefetch``), so slow jobs (Reddit posts) are claimed a few dozen at a time
and leave the rest to other processes, while no-op jobs are claimed by the thousand.

Shutdown: when asked to stop, the pool hands back jobs it has not started, lets running ones
finish within the grace period, cancels the rest, records every outcome and releases every lease
it still holds (shielded), so another process or a restart picks them up at once.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import itertools
import logging
import math
import operator
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import trio

from actors import ChildContext
from thotto.engine.clock import Clock
from thotto.engine.errors import DeferJob, PermanentJobError, RetryableJobError, StoreError
from thotto.engine.handlers import HandlerRegistry, HandlerSpec, JobContext
from thotto.engine.jobs import (
    Completed,
    Dead,
    Deferred,
    FailureCause,
    Job,
    Outcome,
    Retry,
    SettleStatus,
)
from thotto.engine.store.base import JobStore

log = logging.getLogger("thotto.engine.workers")

NO_HANDLER_DEFER_SECONDS = 30.0
YIELD_EVERY_JOBS = 64  # a worker running only instant handlers still lets other tasks in
SETTLE_RETRY_SECONDS = 1.0
CLAIM_AT = 0.5  # claim again once the pool is down to this fraction of its target
SETTLES_IN_FLIGHT = 2
SETTLE_AHEAD = 256  # outcomes waiting that are worth a second settle while one is in flight
RATE_WINDOW_SECONDS = 0.25
RATE_WINDOW_JOBS = 64  # or this many outcomes if the rate rose (see _update_rate)
TIMING_SAMPLE_EVERY = 8  # with more than TIMING_SAMPLE_QUEUE jobs queued, time one job of a
TIMING_SAMPLE_QUEUE = 64  # kind in this many (see _work_until_interrupted)


class WorkerPool:
    """Runs jobs; see the module docstring. Start with ``nursery.start(pool.run)``."""

    def __init__(
        self,
        store: JobStore,
        registry: HandlerRegistry,
        clock: Clock,
        *,
        owner: str,
        workers: int = 8,
        io_workers: int = 0,
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
        self.io_workers = io_workers  # 0: io_bound kinds share the ordinary workers
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.prefetch_seconds = prefetch_seconds
        self.max_prefetch = max_prefetch
        # Each lane's heap of (run_at, -priority, id, job, claimed_early) and the parking lot its
        # idle workers wait in.
        self._queue: list[tuple[datetime, int, int, Job, bool]] = []
        self._io_queue: list[tuple[datetime, int, int, Job, bool]] = []
        self._work_ready = trio.lowlevel.ParkingLot()
        self._io_work_ready = trio.lowlevel.ParkingLot()
        self._io_in_use = False  # see concurrency
        self._held: dict[int, Job] = {}  # every job whose lease we hold, until its outcome is stored
        self._slots = [_Slot(io=False) for _ in range(workers)] + [_Slot(io=True) for _ in range(io_workers)]
        self._active = 0  # jobs running now
        self._watching_until = math.inf
        self._watchdog_nudge = trio.Event()
        self._outcomes: list[Outcome] = []
        self._capacity_freed = trio.lowlevel.ParkingLot()
        self._settle_wanted = trio.Event()
        self._settling = 0  # settles in flight
        self._holding = trio.Event()
        self._idle = trio.Event()
        self._accepting = False
        self._grace = trio.CancelScope()
        self._rate = 0.0
        self._window_start = 0.0
        self._window_done = 0
        self._claim_below = self._claim_threshold()  # busy at or under this: claim more
        self._ticker_due = False  # the ticker was woken to claim and has not run yet
        self.counts = {"completed": 0, "retried": 0, "dead": 0, "deferred": 0, "lease_lost": 0}
        # The same outcomes by (queue, kind), and run times and lateness (start minus due) by
        # (queue, kind): read at scrape time by a metrics exporter, so they cost the hot path little.
        self.finished: dict[str, collections.Counter[tuple[str, str]]] = {
            name: collections.Counter() for name in ("completed", "retried", "dead", "deferred")}
        self.timings: dict[tuple[str, str], JobTimings] = {}
        #: Called as ``listener(job, reason)`` for each job an outcome of this pool dead-letters
        #: (e.g. a monitor that announces failures); must not block.
        self.on_dead: list[Callable[[Job, str], None]] = []

    # --- the ticker's side (direct calls) ---------------------------------------------------

    @property
    def busy(self) -> int:
        """Jobs accepted and not yet finished running (queued plus running)."""
        return len(self._queue) + len(self._io_queue) + self._active

    @property
    def concurrency(self) -> int:
        """How many jobs the pool runs at once: its workers, plus the I/O lane's while that lane
        is in use (it had jobs in hand at the last rate window, or was handed some since)."""
        return self.workers + (self.io_workers if self._io_in_use else 0)

    def target(self) -> int:
        """How many jobs the pool wants in hand: workers plus a prefetch of what it finishes in
        ``prefetch_seconds`` at its measured rate (at least ``concurrency``, at most ``max_prefetch``)."""
        workers = self.concurrency
        prefetch = min(self.max_prefetch, max(workers, int(self._rate * self.prefetch_seconds)))
        return workers + prefetch

    def capacity(self) -> int:
        """How many more jobs the pool takes now."""
        return max(0, self.target() - self.busy) if self._accepting else 0

    async def wait_for_capacity(self) -> None:
        """Return once the pool is down to half its target (or idle workers wait), so claims
        come in worthwhile batches while the pool still has work in hand, not one job at a
        time as each finishes."""
        while not self._accepting or self.busy > self._claim_below:
            await self._capacity_freed.park()
        self._ticker_due = False

    def _claim_threshold(self) -> int:
        return max(int(self.target() * CLAIM_AT), self.concurrency - 1)

    def submit(self, jobs: Sequence[Job], claimed_at: datetime) -> list[Job]:
        """Accept jobs claimed at ``claimed_at`` (their leases are now the pool's). Returns the
        ones refused because the pool is stopping; the caller must release those."""
        if not self._accepting:
            return list(jobs)
        if not jobs:
            return []
        self._held.update(zip(map(_ID, jobs), jobs))
        io_kinds = self.registry.io_kinds if self.io_workers else ()
        if io_kinds and any(job.kind in io_kinds for job in jobs):
            if not self._io_in_use:  # claim for the I/O workers too from now on
                self._io_in_use = True
                self._claim_below = self._claim_threshold()
            self._enqueue(self._io_queue, self._io_work_ready, [j for j in jobs if j.kind in io_kinds], claimed_at)
            jobs = [job for job in jobs if job.kind not in io_kinds]
        self._enqueue(self._queue, self._work_ready, jobs, claimed_at)
        self._holding.set()
        return []

    @staticmethod
    def _enqueue(queue: list, work_ready: trio.lowlevel.ParkingLot, jobs: Sequence[Job],
                 claimed_at: datetime) -> None:
        """Put jobs on one lane's heap and wake as many of its idle workers."""
        if not jobs:
            return
        entries = [(job.run_at, -job.priority, job.id, job, job.run_at > claimed_at) for job in jobs]
        had_work = bool(queue)
        if not had_work:  # a claim comes in claim order, which is heap order: a sorted list is a heap
            entries.sort()
        queue += entries
        if had_work:
            heapq.heapify(queue)  # O(n), in C
        work_ready.unpark(count=len(jobs))

    # --- running --------------------------------------------------------------------------

    async def run(self, ctx: ChildContext | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled or, with a context, until asked to stop (then shut down
        gracefully as the module docstring says)."""
        self._accepting = True
        self._window_start = trio.current_time()
        self._capacity_freed.unpark_all()  # a restarted pool: the ticker may be waiting
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
        unstarted = [entry[3] for entry in (*self._queue, *self._io_queue)]
        self._queue.clear()
        self._io_queue.clear()
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
        # The path of every job, kept to local operations: with no-op handlers it runs ~250k
        # times a second, and each attribute lookup or call shows (this loop, not the store, was
        # the limit of a drain once claims and settles were batched).
        queue, other_queue = (self._io_queue, self._queue) if slot.io else (self._queue, self._io_queue)
        work_ready = self._io_work_ready if slot.io else self._work_ready
        heappop, get_spec = heapq.heappop, self.registry.get
        trio_now = trio.lowlevel.current_clock().current_time  # what trio.current_time() reads
        outcomes, wall_now, capacity_freed = self._outcomes, self.clock.now, self._capacity_freed
        timings, timings_for, weight = self.timings, self._timings_for, 1
        sample_below, sample_queue = TIMING_SAMPLE_EVERY - 1, TIMING_SAMPLE_QUEUE
        settle_now = (1, SETTLE_AHEAD)  # outcomes waiting that call for a settle (_settle_loop)
        for count in itertools.count(1):
            while not queue:
                await work_ready.park()
            run_at, _, _, job, claimed_early = heappop(queue)
            if claimed_early:
                await trio.sleep_until(self.clock.deadline(run_at))
            spec = get_spec(job.kind)
            # started: the watchdog reads the slot
            timeout = spec.timeout_seconds if spec is not None and spec.timeout_seconds else math.inf
            started = trio_now()
            slot.job, slot.deadline, slot.interruption = job, started + timeout, None
            # Timings of every job while the pool keeps up; with a long queue, of one job in
            # TIMING_SAMPLE_EVERY of a kind, weighted by the jobs of its kind skipped since.
            timing = timings.get((job.queue, job.kind)) or timings_for(job)
            if len(queue) > sample_queue and timing.skipped < sample_below:
                timing.skipped += 1
                lateness = None
            else:
                weight, timing.skipped = timing.skipped + 1, 0
                lateness = (wall_now() - run_at).total_seconds()
            self._active += 1
            if slot.deadline < self._watching_until:
                self._watchdog_nudge.set()
            try:
                if spec is None:
                    outcome = self._no_handler(job)
                else:
                    try:
                        await spec.handler(JobContext(job, wall_now))
                    except Exception as error:
                        outcome = self._failure(job, spec, error)
                    else:
                        outcome = Completed(job.id, job.attempt)
            finally:  # stopped, also when cancelled
                slot.job = None
                self._active -= 1
                if capacity_freed and len(queue) + len(other_queue) + self._active <= self._claim_below:
                    capacity_freed.unpark_all()
                    self._ticker_due = True  # workers yield after each job until it has run
                if not self._active and not self._accepting:
                    self._idle.set()
                if lateness is not None:
                    timing.duration.observe(trio_now() - started, weight)
                    timing.lateness.observe(lateness, weight)
            if slot.interruption is None:
                outcomes.append(outcome)
                if len(outcomes) in settle_now:
                    self._settle_wanted.set()
            elif slot.interruption == "timeout":  # it finished anyway, before noticing: keep that
                slot.interruption = None
                self._record(outcome)
            if count % YIELD_EVERY_JOBS == 0 or self._ticker_due:
                # Yield now and then, and after every job while the ticker waits to run: it
                # should claim while the pool still has work in hand, not after every worker ran
                # a slice of YIELD_EVERY_JOBS jobs (Trio may run a batch in either order).
                await trio.sleep(0)

    def _timings_for(self, job: Job) -> JobTimings:
        """The timings of the job's queue and kind, made on first use."""
        return self.timings.setdefault((job.queue, job.kind), JobTimings())

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

    def _no_handler(self, job: Job) -> Outcome:
        until = self.clock.now() + timedelta(seconds=NO_HANDLER_DEFER_SECONDS)
        return Deferred(job.id, job.attempt, until, f"no handler for kind {job.kind!r} in this process")

    def _failure(self, job: Job, spec: HandlerSpec, error: Exception) -> Outcome:
        """The outcome of a handler that raised ``error``."""
        if isinstance(error, DeferJob):
            return Deferred(job.id, job.attempt, error.until, error.reason)
        if isinstance(error, PermanentJobError):
            return Dead(job.id, job.attempt, error.reason, FailureCause(error.cause))
        if isinstance(error, RetryableJobError):
            return self._retry(spec, job, error.reason, error.after_seconds)
        # an unclassified failure is worth another try
        log.warning("job %d attempt %d (%s) failed", job.id, job.attempt, job.kind, extra=_fields(job),
                    exc_info=(type(error), error, error.__traceback__))
        return self._retry(spec, job, f"{type(error).__name__}: {error}", None)

    def _retry(self, spec: HandlerSpec, job: Job, reason: str, after: float | None) -> Outcome:
        return Retry(job.id, job.attempt, spec.retry_at(job.attempt, self.clock.now(), after), reason[:4000])

    # --- outcomes -------------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if len(self._outcomes) in (1, SETTLE_AHEAD):
            self._settle_wanted.set()

    async def _settle_loop(self) -> None:
        """Write outcomes as they come: a settle whenever none is in flight, and a second one as
        soon as SETTLE_AHEAD outcomes wait, so the store finds the next batch queued when it
        finishes one (the SQLite writer sat idle a fifth of a drain waiting for it)."""
        async with trio.open_nursery() as nursery:
            while True:
                await self._settle_wanted.wait()
                self._settle_wanted = trio.Event()
                while self._outcomes and (not self._settling or (
                    self._settling < SETTLES_IN_FLIGHT and len(self._outcomes) >= SETTLE_AHEAD
                )):
                    self._settling += 1
                    nursery.start_soon(self._settle_in_flight, self._take_outcomes())

    async def _settle_in_flight(self, batch: list[Outcome]) -> None:
        try:
            await self._settle(batch)
        finally:
            self._settling -= 1
            if self._outcomes:
                self._settle_wanted.set()

    def _take_outcomes(self) -> list[Outcome]:
        batch = self._outcomes[:]
        self._outcomes.clear()  # in place: workers hold on to this list
        return batch

    async def _flush_outcomes(self) -> None:
        """Write every recorded outcome now (settles already in flight finish on their own)."""
        while self._outcomes:
            await self._settle(self._take_outcomes())

    async def _settle(self, batch: list[Outcome]) -> None:
        """One settle; on a store failure, put the outcomes back and pause (settle is
        idempotent, so retrying after an unknown result is safe)."""
        try:
            with trio.CancelScope(shield=True):
                results = await self.store.settle(self.owner, batch)
        except StoreError:
            log.warning("settling %d outcomes failed; retrying", len(batch), exc_info=True)
            self._outcomes[:0] = batch
            await trio.sleep(SETTLE_RETRY_SECONDS)
            return
        self._account(batch, results)

    def _account(self, batch: list[Outcome], results) -> None:
        ids = list(map(_JOB_ID, batch))
        if all(map(operator.is_, map(_STATUS, results), itertools.repeat(SettleStatus.OK))) and (
            set(map(type, batch)) == {Completed}
        ):
            # in C: forget the jobs, count them by (queue, kind)
            self.finished["completed"].update(map(_QUEUE_KIND, filter(None, map(
                self._held.pop, ids, itertools.repeat(None)))))
            self.counts["completed"] += len(batch)
        else:
            for outcome, result in zip(batch, results):
                job = self._held.pop(outcome.job_id, None)
                if result.status is SettleStatus.LEASE_LOST:
                    self.counts["lease_lost"] += 1
                    log.warning("job %d attempt %d: lease lost before its outcome was stored",
                                outcome.job_id, outcome.attempt,
                                extra={"job_id": outcome.job_id, "attempt": outcome.attempt})
                else:
                    self.counts[_COUNTER[type(outcome)]] += 1
                    if job is not None:
                        self.finished[_COUNTER[type(outcome)]][job.queue, job.kind] += 1
                        if self.on_dead and _dead_letters(job, outcome):
                            self._report_dead(job, outcome.error)
        self._update_rate(len(batch))

    def _report_dead(self, job: Job, reason: str) -> None:
        for listener in self.on_dead:
            try:
                listener(job, reason)
            except Exception:  # a listener's bug must not lose the pool's accounting
                log.exception("on_dead listener failed for job %d", job.id, extra=_fields(job))

    def _update_rate(self, finished: int) -> None:
        self._window_done += finished
        elapsed = trio.current_time() - self._window_start
        if elapsed <= 0:
            return
        rate = self._window_done / elapsed
        # A window closes early, after RATE_WINDOW_JOBS outcomes, when the rate went up: fast
        # jobs get a prefetch worth their rate within a few claims instead of a quarter second of
        # claims of 2 x workers (much of a 10k drain). It slows down on the usual cadence only,
        # so a slow settle or two on a busy machine do not shrink the claims at once.
        if elapsed >= RATE_WINDOW_SECONDS or (
            self._window_done >= RATE_WINDOW_JOBS and rate > self._rate
        ):
            self._rate = rate
            self._window_start, self._window_done = trio.current_time(), 0
            self._io_in_use = bool(self._io_queue) or any(slot.job for slot in self._slots if slot.io)
            self._claim_below = self._claim_threshold()
            if self._capacity_freed and self.busy <= self._claim_below:
                self._capacity_freed.unpark_all()

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
        log.warning("job %d: lease lost (expired and taken back); stopping its work", job_id,
                    extra={"job_id": job_id})
        self._held.pop(job_id, None)
        self.counts["lease_lost"] += 1
        for slot in self._slots:
            if slot.job is not None and slot.job.id == job_id:
                self._interrupt(slot, "lease_lost")
        for queue in (self._queue, self._io_queue):
            queue[:] = [entry for entry in queue if entry[2] != job_id]
            heapq.heapify(queue)


#: Job duration and lateness buckets (seconds): no-op jobs take microseconds, Reddit posts seconds.
JOB_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Timings:
    """A cheap histogram accumulator for hot paths: ``observe`` is a bisect and two additions
    (no lock: only Trio's thread writes it), read at scrape time. ``bounds`` are the buckets'
    upper bounds, ascending (the job timings' by default)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = JOB_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        """Count ``value`` ``weight`` times (a sample standing for several)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs, as Prometheus wants them."""
        total, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            total += count
            out.append((bound, total))
        return out


class JobTimings:
    """Run time and lateness of the jobs of one (queue, kind), for the worker pool's hot path.
    ``skipped`` counts jobs not timed yet: under load the pool times one job in a few and
    weights it by the jobs skipped before it, so histogram counts match the jobs run."""

    __slots__ = ("duration", "lateness", "skipped")

    def __init__(self) -> None:
        self.duration = Timings()
        self.lateness = Timings()
        self.skipped = 0


def _fields(job: Job) -> dict:
    """What every log line about a job carries (``extra=``; thotto.logs puts it on JSON lines)."""
    return {"job_id": job.id, "attempt": job.attempt, "queue": job.queue, "kind": job.kind}


def _dead_letters(job: Job, outcome: Outcome) -> bool:
    """Whether this outcome dead-letters the job: Dead, or a Retry of its last attempt."""
    return type(outcome) is Dead or (type(outcome) is Retry and job.attempt >= job.max_attempts)


_COUNTER = {Completed: "completed", Retry: "retried", Dead: "dead", Deferred: "deferred"}
_ID = operator.attrgetter("id")
_QUEUE_KIND = operator.attrgetter("queue", "kind")
_JOB_ID = operator.attrgetter("job_id")
_STATUS = operator.attrgetter("status")


class _Slot:
    """One worker's state, read by the watchdog and by lease-loss handling."""

    __slots__ = ("io", "scope", "job", "deadline", "interruption", "interrupted_job")

    def __init__(self, *, io: bool) -> None:
        self.io = io  # an I/O worker: it takes jobs of io_bound kinds
        self.scope = trio.CancelScope()
        self.job: Job | None = None
        self.deadline = math.inf
        self.interruption: str | None = None  # "timeout" | "lease_lost"
        self.interrupted_job: Job | None = None
