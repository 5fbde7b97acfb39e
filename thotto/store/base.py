"""The Store protocol: the one contract every storage adapter keeps.

Both dialects (``sqlite.py``, ``postgres.py``: the core of :mod:`thotto.store.core` over the job
store of :mod:`thotto.store.jobs`) subclass :class:`Store` and pass the one contract test suite in
``tests/store/``. Methods are Trio coroutines. Unless a docstring says
otherwise:

* Times go in and come out time-zone aware, in UTC; a naive datetime is a ValidationError.
* "Now" is ``self.now()``, a clock the store is given (wall-clock UTC by default), so tests and the
  engine can drive time; adapters never read the database server's clock.
* Inputs arrive as the types in :mod:`thotto.messages` and are validated against their
  constraints; bad input raises :class:`~thotto.errors.ValidationError` and changes nothing.
* Each method is atomic: it happens entirely or not at all.
* Writes are idempotent where a retry could repeat them (a cancelled or broken commit may still have
  committed): repeating ``settle``, ``cancel`` or ``complete`` with the same arguments is harmless.
* Driver errors are wrapped (``raise ... from``): :class:`~thotto.errors.StoreUnavailable` when the
  database cannot be reached, :class:`~thotto.errors.StoreError` otherwise.

Job lifecycle (docs/architecture.md): ``pending`` → claimed under a lease (``processing``, attempt + 1) →
``completed`` | retry (``pending`` at a later ``run_at``) | ``dead`` ; ``cancelled`` while pending.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime

import msgspec

from thotto.errors import InvalidTransition, LeaseLost, MediaInUse, ValidationError
from thotto.messages import (
    Account,
    ApiToken,
    Attempt,
    Completed,
    Dead,
    Deferred,
    EngagementReading,
    EnqueueResult,
    ExpiredLeases,
    FailureCause,
    Job,
    AccountUnlinked,
    LinkRequest,
    PasswordLink,
    WebSession,
    Media,
    MediaPage,
    JobState,
    NewAccount,
    NewMedia,
    NewJob,
    NewPost,
    NewUser,
    Outcome,
    Post,
    PostContent,
    PostEngagement,
    PostPage,
    PostStatus,
    QueueCount,
    Released,
    Retry,
    SettleResult,
    SettleStatus,
    SubredditRules,
    Tier,
    User,
    UserRemoval,
    utcnow,
)

NowFunction = Callable[[], datetime]

#: The largest message :meth:`Store.broadcast` carries (Postgres NOTIFY payloads are < 8,000
#: bytes, and the message travels base64-encoded).
BROADCAST_MAX_BYTES = 5_000
#: How many messages a :meth:`Store.broadcasts` iterator holds for a slow reader before it
#: replaces the newest with ``None`` ("may have missed some").
BROADCAST_BUFFER = 1_000


def check_broadcast(message: bytes) -> bytes:
    """``message`` if :meth:`Store.broadcast` may carry it, else ValidationError."""
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


class QueueActivity(msgspec.Struct, frozen=True):
    """One queue's row of :meth:`Store.queue_activity`."""

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
    """Build :meth:`Store.queue_activity`'s answer from an adapter's rows: ``(queue, what,
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


#: Media are stored in chunks of at most this many bytes, so neither storing nor reading an image
#: holds more than one chunk of it in memory.
MEDIA_CHUNK_BYTES = 1_000_000


async def media_chunks(chunks: AsyncIterable[bytes], size: int = MEDIA_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """``chunks`` cut or joined into pieces of exactly ``size`` bytes (the last one shorter):
    what the adapters store, whatever sizes the caller's iterator yields."""
    pending = bytearray()
    async for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ValidationError(f"media chunks must be bytes, got {type(chunk).__name__}",
                                  field="chunks")
        if not pending and len(chunk) == size:  # already a whole chunk: no copy
            yield bytes(chunk)
            continue
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def encode_media_cursor(media_id: int) -> str:
    """The opaque cursor of a media page that ended with ``media_id`` (pages go newest first)."""
    return base64.urlsafe_b64encode(f"media:{media_id}".encode()).decode().rstrip("=")


def decode_media_cursor(cursor: str) -> int:
    """The last media id of the previous page; ValidationError for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "media" or not number.isdigit() or len(number) > 18:
            raise ValueError(text)
        return int(number)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("Malformed cursor: pass the nextCursor of the previous page unchanged",
                              field="cursor") from None


def media_in_use(media_id: int, post_ids: list[int]) -> MediaInUse:
    """The error of deleting media that posts not finished yet use."""
    named = ", ".join(str(post_id) for post_id in post_ids)
    noun = "post" if len(post_ids) == 1 else "posts"
    return MediaInUse(f"Media {media_id} is used by {noun} {named}, not finished yet; cancel the "
                      f"{noun} or wait until published, then delete it", post_ids=post_ids)


POST_QUEUE = "posts"
POST_JOB_KIND = "reddit.submit"
SEARCH_LIMIT_MAX = 500


class JobSearch(msgspec.Struct, kw_only=True, frozen=True):
    """What :meth:`Store.search_jobs` looks for; None matches anything. ``run_from``/``run_to``
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
    """A page of :meth:`Store.search_jobs`: newest job first; ``next_cursor`` None at the end."""

    jobs: list[JobRecord]
    next_cursor: str | None


class PausedQueue(msgspec.Struct, frozen=True):
    """A queue an operator paused, and since when."""

    queue: str
    paused_at: datetime


def check_search(search: JobSearch) -> JobSearch:
    """``search`` if its limit is 1-500 and its times are aware; else a ValidationError naming
    the field."""
    from thotto.errors import ValidationError

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


class Store(abc.ABC):
    """Durable storage for jobs, their attempts, and the user/account/post records.

    Open one with :func:`thotto.store.open_store`, an async context manager that closes it (and
    its threads and connections) on exit, also when cancelled.
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
        """Delete finished (completed, dead, cancelled) jobs, with their attempt history and
        posts, that finished before ``finished_before``. Returns how many jobs were deleted.
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

    # --- users and API tokens --------------------------------------------------------------

    @abc.abstractmethod
    async def create_user(self, user: NewUser) -> User:
        """Create a user. Conflict if the name is taken."""

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> User:
        """The user; NotFound."""

    @abc.abstractmethod
    async def get_user_by_name(self, name: str) -> User:
        """The user; NotFound."""

    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """All users, by id."""

    @abc.abstractmethod
    async def set_tier(self, user_id: int, tier: Tier) -> User:
        """Change a user's tier; NotFound."""

    @abc.abstractmethod
    async def create_token(self, user_id: int, name: str, token_hash: str) -> ApiToken:
        """Store an API token by its hash (the token itself is never stored). Conflict if the
        hash exists; NotFound if the user does not."""

    @abc.abstractmethod
    async def revoke_token(self, token_id: int) -> ApiToken:
        """Revoke a token; idempotent. NotFound."""

    @abc.abstractmethod
    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        """A user's tokens, revoked ones included, by id."""

    @abc.abstractmethod
    async def user_for_token(self, token_hash: str) -> User | None:
        """The user owning an unrevoked token with this hash, else None."""

    @abc.abstractmethod
    async def remove_user(self, user_id: int) -> UserRemoval:
        """Remove a user, in one transaction: every token of theirs is revoked; every post of
        theirs still scheduled (job pending) is cancelled, so none is published after this; the
        credentials of their linked Reddit accounts are erased and the accounts flagged
        ``needs_relink``; a publishing attempt already running when the user is removed cannot
        :meth:`arm_post` any more (InvalidTransition), so it never reaches Reddit after this;
        the user is then gone for every user look-up (``get_user``, ``get_user_by_name``,
        ``list_users``, ``set_tier``, ``create_token``, ``create_account``: NotFound), and the
        name is free for a new user. Published posts stay, as history. NotFound if the user
        does not exist or was removed; Conflict if they are the last admin."""

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

    # --- Reddit accounts -------------------------------------------------------------------

    @abc.abstractmethod
    async def create_account(self, account: NewAccount) -> Account:
        """Link a Reddit account to a user. Linking the same Reddit username again for the same
        user replaces its token and clears ``needs_relink`` (re-linking), returning that account.
        NotFound if the user does not exist."""

    @abc.abstractmethod
    async def get_account(self, account_id: int) -> Account:
        """The account; NotFound."""

    @abc.abstractmethod
    async def list_accounts(self, user_id: int) -> list[Account]:
        """A user's linked accounts, by id (not those they unlinked)."""

    @abc.abstractmethod
    async def set_account_token(self, account_id: int, refresh_token_encrypted: bytes) -> Account:
        """Replace an account's (encrypted) refresh token and clear ``needs_relink``."""

    @abc.abstractmethod
    async def set_needs_relink(self, account_id: int, needs_relink: bool) -> Account:
        """Flag (or clear) that the account must be linked again (its token was refused)."""

    # --- account link requests --------------------------------------------------------------

    @abc.abstractmethod
    async def create_link_request(self, state_hash: str, user_id: int, secret_hash: str,
                                  expires_at: datetime) -> LinkRequest:
        """Record that ``user_id`` started linking: the state's hash, the binding secret's
        hash, when it expires. Forgets requests that expired over a day ago (the table stays
        small without a sweep). Conflict if the state hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_link_request(self, state_hash: str) -> LinkRequest | None:
        """The link request with this state hash, used or expired ones included; else None."""

    @abc.abstractmethod
    async def hold_link_code(self, state_hash: str, held_code: bytes, verifier_hash: str) -> bool:
        """Keep Reddit's (encrypted) code and the verification code's hash on a request that is
        unused, unexpired (at ``self.now()``) and holds no code yet; True if this call did.
        Across processes one call wins, so a replayed callback can never replace a code."""

    @abc.abstractmethod
    async def use_link_request(self, state_hash: str) -> bool:
        """Mark the request used (``used_at`` = now) if it is unused and unexpired; True if
        this call did. One call wins across every process: a state links at most once."""

    @abc.abstractmethod
    async def unlink_account(self, account_id: int, user_id: int) -> AccountUnlinked:
        """Unlink one of the user's Reddit accounts, in one transaction: its credentials are
        erased, it is flagged ``needs_relink`` and left out of :meth:`list_accounts`, and the
        posts still scheduled on it are cancelled. Linking the same Reddit account again
        (:meth:`create_account`) brings it back. NotFound if it is not the user's or is
        already unlinked."""

    # --- the web app: time zones, passwords, sessions, sign-in failures ---------------------

    @abc.abstractmethod
    async def set_time_zone(self, user_id: int, time_zone: str) -> User:
        """Set the IANA zone the user's pages use (checked by the caller); NotFound."""

    @abc.abstractmethod
    async def get_password_hash(self, user_id: int) -> str | None:
        """The user's password hash, None if they have none; NotFound."""

    @abc.abstractmethod
    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace the user's password hash (a stronger rehash at sign-in); NotFound."""

    @abc.abstractmethod
    async def create_password_link(self, token_hash: str, user_id: int,
                                   expires_at: datetime) -> PasswordLink:
        """Record a one-time set-password link for the user. The user's earlier unused links
        stop working (the newest link is the only one), and links expired over a day ago are
        forgotten. Conflict if the hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_password_link(self, token_hash: str) -> PasswordLink | None:
        """The link with this hash, used or expired ones included; else None."""

    @abc.abstractmethod
    async def use_password_link(self, token_hash: str, password_hash: str) -> User | None:
        """In one transaction: spend the link if it is unused and unexpired (at ``self.now()``)
        and its user is not removed, set that user's password hash, and delete every session
        of theirs (a new password signs every browser out). Returns the user, or None if the
        link cannot be used; one call wins across processes."""

    @abc.abstractmethod
    async def create_session(self, id_hash: str, user_id: int, csrf_token: str,
                             expires_at: datetime) -> WebSession:
        """Record a signed-in browser (``last_seen_at`` = now), forgetting sessions that
        expired. Conflict if the hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_session(self, id_hash: str) -> WebSession | None:
        """The session with this hash and its user (as :meth:`get_user` sees them), expired
        ones included (the caller judges expiry); None if unknown or its user was removed."""

    @abc.abstractmethod
    async def touch_session(self, id_hash: str) -> None:
        """Set the session's ``last_seen_at`` to now (nothing if it is gone)."""

    @abc.abstractmethod
    async def delete_session(self, id_hash: str) -> bool:
        """Sign one browser out; True if the session existed."""

    @abc.abstractmethod
    async def delete_user_sessions(self, user_id: int) -> int:
        """Sign every browser of the user out; how many sessions there were."""

    @abc.abstractmethod
    async def record_sign_in_failure(self, keys: Sequence[str]) -> None:
        """Count one failed sign-in (now) under each key, forgetting failures over a day old."""

    @abc.abstractmethod
    async def sign_in_failures(self, key: str, since: datetime) -> list[datetime]:
        """When the failures counted under ``key`` at or after ``since`` happened, oldest
        first."""

    @abc.abstractmethod
    async def clear_sign_in_failures(self, key: str) -> None:
        """Forget the failures counted under ``key`` (after a successful sign-in)."""

    # --- posts -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_posts(
        self, posts: Sequence[NewPost], *, max_attempts: int = 3
    ) -> list[Post]:
        """Create posts, each with its publishing job (queue ``posts``, kind ``reddit.submit``,
        payload ``{"post_id": id}``, ``run_at`` = ``scheduled_for``), all in one transaction:
        all or none. NotFound if an account does not belong to the post's user."""

    @abc.abstractmethod
    async def get_post(self, post_id: int, user_id: int | None = None) -> Post:
        """The post. With ``user_id``, another user's post is NotFound (not Forbidden: its
        existence is not revealed)."""

    @abc.abstractmethod
    async def get_post_by_job(self, job_id: int) -> Post:
        """The post a publishing job belongs to; NotFound."""

    @abc.abstractmethod
    async def list_posts(
        self,
        user_id: int,
        *,
        status: PostStatus | None = None,
        scheduled_from: datetime | None = None,
        scheduled_to: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> PostPage:
        """A user's posts ordered by ``scheduled_for`` then id, filtered by status and a
        half-open ``[scheduled_from, scheduled_to)`` range. ``cursor`` is the opaque
        ``next_cursor`` of the previous page; pages do not skip or repeat posts. ValidationError
        for a malformed cursor or a limit outside 1–500."""

    @abc.abstractmethod
    async def find_recent_posts(
        self, account_id: int, subreddit: str, title: str, since: datetime
    ) -> list[Post]:
        """Posts of an account to a subreddit (name compared case-insensitively) with this title
        (compared by :func:`thotto.messages.title_key`, kept in an indexed column: NFKC, case
        folding, whitespace collapsed) that are scheduled or publishing, or whose job completed
        since ``since``: for duplicate detection."""

    @abc.abstractmethod
    async def update_post(
        self,
        post_id: int,
        user_id: int,
        *,
        content: PostContent | None = None,
        scheduled_for: datetime | None = None,
    ) -> Post:
        """Edit and/or reschedule a scheduled post (its job moves with it). InvalidTransition
        unless the post is still scheduled; NotFound for another user's post."""

    @abc.abstractmethod
    async def revive_post(
        self, post_id: int, *, scheduled_for: datetime, content: PostContent | None = None
    ) -> Post:
        """Edit (when ``content`` is given) and reschedule a *failed* post: it is scheduled again
        at ``scheduled_for``, its job pending with its attempts and failure cause reset.
        InvalidTransition unless the post is failed, and for an edit of a post that may be on
        Reddit (armed: an attempt's outcome was never known; retry it instead). NotFound."""

    @abc.abstractmethod
    async def cancel_post(self, post_id: int, user_id: int) -> Post:
        """Cancel a scheduled post and its job. Idempotent; InvalidTransition if it is
        publishing or finished; NotFound for another user's post."""

    @abc.abstractmethod
    async def record_publication(self, post_id: int, reddit_id: str, reddit_url: str) -> Post:
        """Record Reddit's id and URL for a published post. Idempotent for the same id;
        InvalidTransition if a different Reddit id is already recorded."""

    @abc.abstractmethod
    async def arm_post(self, post_id: int) -> Post:
        """Record, durably, that an attempt to publish the post is about to call Reddit: sets
        ``armed_at`` to now unless it is already set (the earliest arming is kept, so a later
        reconciliation looks back far enough). Call it before every submission. NotFound;
        InvalidTransition if the post's user was removed (see :meth:`remove_user`).

        While a post is armed and unpublished its status is ``publishing`` and it cannot be
        edited, rescheduled or cancelled (thotto.store.lifecycle)."""

    @abc.abstractmethod
    async def disarm_post(self, post_id: int) -> Post:
        """Clear ``armed_at`` once nothing of the post is in doubt: Reddit refused the attempt
        and any earlier one was reconciled as absent. A published post keeps its mark. The post
        is ``scheduled`` again (or failed, by its job), and may change. NotFound."""

    # --- media --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_media(self, media: NewMedia, chunks: AsyncIterable[bytes]) -> Media:
        """Store an image from ``chunks`` (cut into pieces of at most :data:`MEDIA_CHUNK_BYTES`,
        one transaction each, so no whole file is held), counting and hashing what is stored.
        The media becomes visible (get, list, read) only once its last chunk is stored; an
        upload that fails or is cancelled leaves nothing (an unfinished row is purged later)."""

    @abc.abstractmethod
    async def get_media(self, media_id: int, user_id: int | None = None) -> Media:
        """The media; with ``user_id``, another user's is NotFound (its existence is not revealed)."""

    @abc.abstractmethod
    async def list_media(self, user_id: int, *, cursor: str | None = None, limit: int = 50) -> MediaPage:
        """A user's media, newest first; ``cursor`` is the previous page's ``next_cursor``.
        ValidationError for a malformed cursor or a limit outside 1–500."""

    @abc.abstractmethod
    def read_media(self, media_id: int, user_id: int | None = None) -> AsyncIterator[bytes]:
        """The media's bytes, one stored chunk per step (NotFound as :meth:`get_media`)."""

    @abc.abstractmethod
    async def delete_media(self, media_id: int, user_id: int) -> Media:
        """Delete one of the user's media with its chunks; MediaInUse while a post that is not
        finished links it (``post_media``); NotFound for another user's."""

    @abc.abstractmethod
    async def purge_media(self, unused_before: datetime, *, unfinished_before: datetime | None = None) -> int:
        """Delete media no unfinished post uses, created before ``unused_before``, and uploads
        never finished, begun before ``unfinished_before`` (default: the same date). Returns
        how many were deleted."""

    # --- recurring posts and engagement -----------------------------------------------------

    @abc.abstractmethod
    async def create_follow_up(
        self, previous_post_id: int, post: NewPost, *, max_attempts: int = 3
    ) -> tuple[Post, bool]:
        """Create ``post`` (with its publishing job, as :meth:`create_posts` does) as the next
        occurrence of the recurring post ``previous_post_id``, exactly once: a post has at most
        one follow-up, whatever repeats or races the call (the database enforces it), so a
        repeated call creates nothing and returns the existing follow-up, even if it has since
        been published or cancelled. The follow-up inherits the previous post's
        :meth:`series_start`. Returns the follow-up and whether this call created it. NotFound
        if the previous post does not exist or the account is not the post's user's."""

    @abc.abstractmethod
    async def series_start(self, post_id: int) -> datetime:
        """The anchor of the post's recurring series: the scheduled time of its first
        occurrence, which :meth:`create_follow_up` carries from each post to its follow-up (a
        post that follows none is its own first occurrence). NotFound."""

    @abc.abstractmethod
    async def record_engagement(self, readings: Sequence[EngagementReading]) -> int:
        """Store the latest score and comment count of published posts, in one transaction.

        A reading replaces the post's stored one unless that was read later (readings from
        several processes may arrive out of order: the latest read wins); with several readings
        of one post in the batch, the latest counts. Readings of posts that are unknown (purged
        meanwhile) or have no Reddit id are ignored. Returns how many posts changed. Idempotent.
        """

    @abc.abstractmethod
    async def posts_to_refresh(
        self, published_since: datetime, read_before: datetime, *, limit: int = 1000
    ) -> list[Post]:
        """Published posts (job completed, Reddit id recorded) whose job completed at or after
        ``published_since`` and whose engagement was never read or last read before
        ``read_before``: never-read ones first, then the longest unread, then by id; at most
        ``limit`` (1-10,000, else ValidationError)."""

    @abc.abstractmethod
    async def subreddit_engagement(
        self, subreddit: str, *, since: datetime | None = None
    ) -> list[PostEngagement]:
        """The published posts to ``subreddit`` (case-insensitive) that have an engagement
        reading, with their latest one, published (job completed) at or after ``since`` when
        given; ordered by publication time, then post id."""

    # --- community rules -------------------------------------------------------------------

    @abc.abstractmethod
    async def save_subreddit_rules(self, rules: SubredditRules) -> None:
        """Store (or replace) what is known of a subreddit's rules, keyed by its lower-cased
        name."""

    @abc.abstractmethod
    async def get_subreddit_rules(self, name: str) -> SubredditRules | None:
        """The stored rules of a subreddit (name compared case-insensitively), or None."""

    @abc.abstractmethod
    async def list_subreddit_rules(self) -> list[SubredditRules]:
        """Every stored subreddit's rules, by name (for the weekly community sync)."""

    # --- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release threads, connections and locks. Idempotent; completes even when cancelled."""


__all__ = [
    "Store",
    "BROADCAST_MAX_BYTES",
    "BROADCAST_BUFFER",
    "check_broadcast",
    "missed_broadcasts",
    "NowFunction",
    "POST_QUEUE",
    "POST_JOB_KIND",
    "MEDIA_CHUNK_BYTES",
    "media_chunks",
    "encode_media_cursor",
    "decode_media_cursor",
    "media_in_use",
    "QueueActivity",
    "activity_rows",
    "JobSearch",
    "JobRecord",
    "JobPage",
    "PausedQueue",
    "check_search",
    "InvalidTransition",
    "LeaseLost",
    "Retry",
    "Deferred",
]
