"""The JobStore protocol: what the job engine needs of storage (jobs, attempts, cron, queues).

Every adapter passes the one contract test suite in ``tests/store/``; the product's
:class:`thotto.store.base.Store` extends this protocol with users, accounts, posts and media.
Methods are Trio coroutines. Unless a docstring says otherwise:

* Times go in and come out time-zone aware, in UTC; a naive datetime is a ValidationError.
* "Now" is ``self.now()``, a clock the store is given (wall-clock UTC by default), so tests and the
  engine can drive time; adapters never read the database server's clock.
* Inputs arrive as the types in :mod:`thotto.engine.jobs` and are validated against their
  constraints; bad input raises :class:`~thotto.engine.errors.ValidationError` and changes nothing.
* Each method is atomic: it happens entirely or not at all.
* Writes are idempotent where a retry could repeat them (a cancelled or broken commit may still have
  committed): repeating ``settle``, ``cancel`` or ``complete`` with the same arguments is harmless.
* Driver errors are wrapped (``raise ... from``): :class:`~thotto.engine.errors.StoreUnavailable`
  when the database cannot be reached, :class:`~thotto.engine.errors.StoreError` otherwise.

Job lifecycle (docs/architecture.md): ``pending`` → claimed under a lease (``processing``, attempt + 1) →
``completed`` | retry (``pending`` at a later ``run_at``) | ``dead`` ; ``cancelled`` while pending.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime

import msgspec

from thotto.engine.errors import LeaseLost, ValidationError
from thotto.engine.jobs import (
    Attempt,
    Completed,
    Dead,
    Deferred,
    EnqueueResult,
    ExpiredLeases,
    FailureCause,
    Job,
    JobState,
    NewJob,
    Outcome,
    QueueCount,
    Released,
    Retry,
    SettleResult,
    SettleStatus,
    utcnow,
)

NowFunction = Callable[[], datetime]


class QueueActivity(msgspec.Struct, frozen=True):
    """One queue's row of :meth:`JobStore.queue_activity`."""

    queue: str
    due: int
    delayed: int
    completed: int
    dead: int
    failed_attempts: int
    retried: int
    expired: int
    durations: list[float]
    refused: int = 0
    """Attempts that dead-lettered their job for the job's own fault (a refused post, an account
    to link again): not counted in ``failed_attempts``."""


def activity_rows(counted: Iterable[tuple[str, str, int]],
                  durations: Iterable[tuple[str, float]]) -> list[QueueActivity]:
    """Build :meth:`JobStore.queue_activity`'s answer from an adapter's rows: ``(queue, what,
    count)`` where ``what`` is ``due``, ``delayed``, ``completed``, ``dead`` (jobs) or
    ``attempt_retry``, ``attempt_dead``, ``attempt_expired``, ``attempt_refused`` (attempts;
    refused ones are among the dead ones); and ``(queue, seconds)`` run times."""
    found: dict[str, dict[str, int]] = {}
    for queue, what, count in counted:
        found.setdefault(queue, {})[what] = int(count)
    times: dict[str, list[float]] = {}
    for queue, seconds in durations:
        times.setdefault(queue, []).append(float(seconds))
        found.setdefault(queue, {})
    rows = []
    for queue in sorted(found):
        got = found[queue].get
        retry, dead, expired = got("attempt_retry", 0), got("attempt_dead", 0), got("attempt_expired", 0)
        refused = min(dead, got("attempt_refused", 0))
        rows.append(QueueActivity(queue, got("due", 0), got("delayed", 0), got("completed", 0),
                                  got("dead", 0), retry + dead + expired - refused, retry, expired,
                                  times.get(queue, []), refused))
    return rows


SEARCH_LIMIT_MAX = 500


class JobSearch(msgspec.Struct, kw_only=True, frozen=True):
    """What :meth:`JobStore.search_jobs` looks for; None matches anything. ``run_from``/``run_to``
    are a half-open range ``[run_from, run_to)`` over the job's ``run_at`` (when it was or is
    due). ``cursor`` is the ``next_cursor`` of the previous page."""

    queue: str | None = None
    kind: str | None = None
    state: JobState | None = None
    run_from: datetime | None = None
    run_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


class JobRecord(msgspec.Struct, frozen=True):
    """A job as an operator sees it: the job and, for a dead one, why it died."""

    job: Job
    failure_cause: FailureCause | None = None


class JobPage(msgspec.Struct, frozen=True):
    """A page of :meth:`JobStore.search_jobs`: newest job first; ``next_cursor`` None at the end."""

    jobs: list[JobRecord]
    next_cursor: str | None


class PausedQueue(msgspec.Struct, frozen=True):
    """A queue an operator paused, and since when."""

    queue: str
    paused_at: datetime


def check_search(search: JobSearch) -> JobSearch:
    """``search`` if its limit is 1-500 and its times are aware; else a ValidationError naming
    the field."""
    if not isinstance(search, JobSearch):
        raise ValidationError(f"Expected a JobSearch, got {type(search).__name__}", "search")
    if type(search.limit) is not int or not 1 <= search.limit <= SEARCH_LIMIT_MAX:
        raise ValidationError(f"limit must be from 1 to {SEARCH_LIMIT_MAX}, got {search.limit!r}",
                              "limit")
    for name in ("run_from", "run_to"):
        value = getattr(search, name)
        if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
            raise ValidationError(f"{name} must be a datetime with a time zone", name)
    if search.state is not None and not isinstance(search.state, JobState):
        raise ValidationError(f"state must be a JobState, got {search.state!r}", "state")
    return search


#: The largest message :meth:`JobStore.broadcast` carries (Postgres NOTIFY payloads are < 8,000
#: bytes, and the message travels base64-encoded).
BROADCAST_MAX_BYTES = 5_000
#: How many messages a :meth:`JobStore.broadcasts` iterator holds for a slow reader before it
#: replaces the newest with ``None`` ("may have missed some").
BROADCAST_BUFFER = 1_000


def check_broadcast(message: bytes) -> bytes:
    """``message`` if :meth:`JobStore.broadcast` may carry it, else ValidationError."""
    if not isinstance(message, bytes):
        raise ValidationError(f"A broadcast message is bytes, not {type(message).__name__}",
                              field="message")
    if len(message) > BROADCAST_MAX_BYTES:
        raise ValidationError(f"A broadcast message is at most {BROADCAST_MAX_BYTES} bytes, got "
                              f"{len(message)}; send several, or one that says less",
                              field="message")
    return message


def missed_broadcasts(_older: bytes | None, _newer: bytes | None) -> None:
    """How a full broadcasts feed merges a message into the newest waiting one: both become
    ``None``, "messages may have been missed"."""
    return None


class JobStore(abc.ABC):
    """Durable storage for jobs and their attempts, cron occurrences (jobs too) and paused queues.

    The engine receives one from its caller (today the product's store, which extends this
    protocol), opened as an async context manager that closes it on exit, also when cancelled.
    """

    #: Short adapter name, e.g. ``"sqlite"`` or ``"postgres"``.
    name: str = "abstract"

    def __init__(self, clock: NowFunction = utcnow):
        self.now = clock

    # --- enqueueing -----------------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, job: NewJob) -> EnqueueResult:
        """Store one job as ``pending``; ``run_at`` None means now.

        With a ``dedupe_key``, if a live (pending or processing) job of the same queue has that
        key, nothing is stored and the existing job's id is returned with ``created=False``. Once
        that job is finished the key is free again.
        """

    @abc.abstractmethod
    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Store many jobs in one transaction: all or none. Results are in input order.

        Dedupe applies within the batch too: a later job whose key matches an earlier one in the
        batch returns the earlier job's id with ``created=False``.
        """

    # --- working jobs ---------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` pending jobs with ``run_at <= due_by`` (default: now), of the
        queues that are not paused (:meth:`pause_queue`): a claim that begins after a pause
        returned, in any process, takes none of that queue's jobs.

        Claimed jobs become ``processing`` with ``lease_owner=owner``,
        ``lease_until=now+lease_seconds`` and ``attempt`` incremented; they are returned ordered
        by ``run_at``, then priority (high first), then id. ``due_by`` later than now lets a
        ticker claim jobs a little ahead and start each at its exact time. No job is ever held by
        two owners at once, whether the claimers are tasks, stores or processes.
        """

    @abc.abstractmethod
    async def heartbeat(self, owner: str, job_ids: Sequence[int], lease_seconds: float) -> list[int]:
        """Extend the leases ``owner`` holds on ``job_ids`` to now+``lease_seconds``.

        Returns the ids whose lease was extended; an id missing from the result is no longer held
        by ``owner`` (it expired and was released, or finished) and its work should stop.
        """

    @abc.abstractmethod
    async def settle(self, owner: str, outcomes: Sequence[Outcome]) -> list[SettleResult]:
        """Record how attempts ended, in one transaction; one result per outcome, in order.

        Each outcome names the job and the attempt it settles. It applies only while ``owner``
        holds that job's lease for that attempt; otherwise the result is ``LEASE_LOST`` and the
        job is untouched, except that repeating an outcome already recorded for that attempt
        (same owner, same attempt, same result) answers ``ALREADY``. Effects:

        * ``Completed`` → ``completed``.
        * ``Retry`` → ``pending`` at ``run_at``, or ``dead`` if the attempt was the last.
        * ``Dead`` → ``dead`` with the error kept.
        * ``Deferred`` → ``pending`` at ``run_at``; the attempt is refunded (not spent).
        * ``Released`` → ``pending`` at once; the attempt is refunded.

        Every outcome but ``Completed`` is kept in the attempt history with its error or reason.
        A lease past ``lease_until`` still counts as held until ``release_expired`` returns the
        job (nobody else can hold it meanwhile), so a late outcome is still recorded.

        Because Deferred and Released refund the attempt, the next claim reuses its number;
        ``(job_id, attempt)`` with the owner identifies the lease, not a unique attempt.
        """

    async def complete(self, owner: str, job_id: int, attempt: int) -> SettleStatus:
        """Mark one attempt completed. Idempotent; raises LeaseLost if not held."""
        return await self._settle_one(owner, Completed(job_id, attempt))

    async def fail(
        self, owner: str, job_id: int, attempt: int, error: str, *, retry_at: datetime | None = None
    ) -> SettleStatus:
        """Fail one attempt: retry at ``retry_at``, or dead-letter when it is None."""
        if retry_at is None:
            return await self._settle_one(owner, Dead(job_id, attempt, error))
        return await self._settle_one(owner, Retry(job_id, attempt, retry_at, error))

    async def defer(
        self, owner: str, job_id: int, attempt: int, until: datetime, reason: str
    ) -> SettleStatus:
        """Reschedule one held job to ``until`` without spending its attempt."""
        return await self._settle_one(owner, Deferred(job_id, attempt, until, reason))

    async def release(self, owner: str, jobs: Sequence[Job]) -> list[SettleResult]:
        """Hand held jobs back as pending at once, refunding their attempts (shutdown)."""
        return await self.settle(owner, [Released(job.id, job.attempt) for job in jobs])

    async def _settle_one(self, owner: str, outcome: Outcome) -> SettleStatus:
        (result,) = await self.settle(owner, [outcome])
        if result.status is SettleStatus.LEASE_LOST:
            raise LeaseLost(
                f"Job {outcome.job_id} attempt {outcome.attempt} is not leased by {owner!r}; "
                "its lease expired or another worker holds it, so this outcome was not recorded",
                job_id=outcome.job_id,
            )
        return result.status

    @abc.abstractmethod
    async def release_expired(self) -> ExpiredLeases:
        """Return every job whose lease ended before now to ``pending`` (run at once).

        The expired attempt counts: it is recorded as ``expired`` in the history, and a job that
        has no attempts left is dead-lettered instead. Safe to run from several processes at once.
        """

    # --- managing jobs --------------------------------------------------------------------

    @abc.abstractmethod
    async def get_job(self, job_id: int) -> Job:
        """The job with this id; raises NotFound."""

    @abc.abstractmethod
    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending job. Idempotent on a cancelled job.

        Raises InvalidTransition for a processing job (it is running: it cannot be unsent) or a
        finished one, NotFound for an unknown id.
        """

    @abc.abstractmethod
    async def reschedule(self, job_id: int, run_at: datetime) -> Job:
        """Move a pending job to ``run_at``. InvalidTransition unless pending; NotFound."""

    @abc.abstractmethod
    async def redrive(self, job_ids: Sequence[int]) -> list[int]:
        """Give dead jobs a fresh start: ``pending`` now, attempt count reset to 0, failure cause
        cleared. Returns the ids that were redriven; ids that are not dead are left alone, so
        redriving twice runs a job once.
        """

    # --- operating queues -----------------------------------------------------------------

    @abc.abstractmethod
    async def search_jobs(self, search: JobSearch) -> JobPage:
        """Jobs matching ``search``, newest (highest id) first, a page at a time; pages do not
        skip or repeat jobs. ValidationError for a malformed cursor or a limit outside 1-500."""

    @abc.abstractmethod
    async def get_job_record(self, job_id: int) -> JobRecord:
        """The job with its failure cause (set while it is dead: what the dead-lettering
        outcome said, ``system`` for an expired lease or a last retry). NotFound."""

    @abc.abstractmethod
    async def pause_queue(self, queue: str) -> PausedQueue:
        """Stop claims of ``queue``'s jobs in every process until :meth:`resume_queue`; durable.
        Idempotent: pausing a paused queue keeps its first ``paused_at``. Jobs already running
        finish; a queue with no jobs yet may be paused too."""

    @abc.abstractmethod
    async def resume_queue(self, queue: str) -> bool:
        """Let ``queue``'s jobs be claimed again, waking the tickers of every process; whether it
        was paused. Idempotent."""

    @abc.abstractmethod
    async def paused_queues(self) -> list[PausedQueue]:
        """The paused queues, by name."""

    @abc.abstractmethod
    async def purge(self, finished_before: datetime) -> int:
        """Delete finished (completed, dead, cancelled) jobs, with their attempt history and what
        a product's store keeps with them (posts), that finished before ``finished_before``. Returns how many jobs were deleted.
        Live jobs are never purged."""

    @abc.abstractmethod
    async def tidy(self) -> None:
        """Database upkeep, e.g. after a purge: refresh the query planner's statistics and
        reclaim space where that does not block other work for long. Safe to run at any time,
        from any process, concurrently with everything else."""

    # --- reading --------------------------------------------------------------------------

    @abc.abstractmethod
    async def counts(self) -> list[QueueCount]:
        """Job counts per queue and state (states with no jobs are omitted)."""

    @abc.abstractmethod
    async def queue_activity(self, since: datetime, *, sample: int = 1000) -> list[QueueActivity]:
        """Per queue, what waits now and what happened since ``since`` (the queue monitor's
        snapshot): pending jobs due (``run_at`` <= now) and not yet due; jobs completed and
        dead-lettered since; attempts since that failed (retry, dead, expired), were retried, or
        expired (stalled); and the run times (``finished_at - started_at``, seconds) of up to
        ``sample`` jobs completed since, most recent first. Queues with none of these are left
        out. Ordered by queue."""

    @abc.abstractmethod
    async def next_due(self, queues: Sequence[str] | None = None) -> datetime | None:
        """The earliest ``run_at`` of a pending job of a queue that is not paused, or None."""

    @abc.abstractmethod
    async def attempts(self, job_id: int) -> list[Attempt]:
        """The job's attempt history, oldest first, including the current attempt. NotFound."""

    @abc.abstractmethod
    def wakeups(self) -> AsyncIterator[datetime]:
        """Yield the earliest ``run_at`` of each write that may make a job due sooner.

        Enqueue, reschedule, redrive, settle (retry/defer/release) and release_expired report
        here; on Postgres so do those of other processes (LISTEN/NOTIFY). Wake-ups may be
        coalesced (only the earliest kept) but never lost from the moment ``wakeups()`` is
        *called* (not first iterated) until the iterator is closed. Use it as
        ``async with contextlib.aclosing(store.wakeups()) as wakes:``.
        """

    # --- broadcasts between processes ------------------------------------------------------

    @abc.abstractmethod
    async def broadcast(self, message: bytes) -> None:
        """Deliver ``message`` (at most :data:`BROADCAST_MAX_BYTES`, else ValidationError) to
        the :meth:`broadcasts` iterators of every *other* store open on this database, in the
        order sent, once this returns (Postgres: NOTIFY). Not to this store's own iterators: the
        sender acts on it itself. SQLite: no other store can have the file open, so nothing is
        sent."""

    @abc.abstractmethod
    def broadcasts(self) -> AsyncIterator[bytes | None]:
        """Yield each message other stores :meth:`broadcast`, from the moment this is called
        until the iterator is closed (or the store closes). ``None`` means messages may have
        been missed (the listening connection was re-established, or the reader fell more than
        1,000 messages behind): act as if everything changed. Use it as
        ``async with contextlib.aclosing(store.broadcasts()) as messages:``."""

    # --- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release threads, connections and locks. Idempotent; completes even when cancelled."""


__all__ = [
    "BROADCAST_MAX_BYTES",
    "BROADCAST_BUFFER",
    "check_broadcast",
    "missed_broadcasts",
    "JobStore",
    "NowFunction",
    "QueueActivity",
    "activity_rows",
    "SEARCH_LIMIT_MAX",
    "JobSearch",
    "JobRecord",
    "JobPage",
    "PausedQueue",
    "check_search",
]
