"""The store core: everything both adapters share, written once (issue #14).

A dialect (``sqlite.py``, ``postgres.py``) subclasses :class:`CoreStore` and supplies:

* its named queries (``sql/queries_<dialect>.sql``, loaded once by :func:`load_queries`): the
  same names in both files, each dialect's own SQL text, parameters numbered from 1;
* how to run a function of a :class:`Tx` (one transaction): :meth:`CoreStore._read_tx` and
  :meth:`CoreStore._write_tx` (SQLite: on its reader or writer thread, in the writer's group
  commit; Postgres: on a pooled asyncpg connection on the sidecar);
* how a time travels to and from the database (:meth:`CoreStore._to_db`, ``_from_db``), how
  JSON travels (``_json``) and how a parameter is written in a query built here (``_param``);
* the hot paths a benchmark keeps per dialect: enqueue, claim, heartbeat, settle,
  release_expired, next_due, wake-ups and broadcasts.

The core holds the rest: validation of every input, rows → records, the state-change rules
(with :mod:`thotto.store.lifecycle`), and every cold-path method. Its functions of a ``Tx`` are
coroutines; on SQLite the ``Tx`` methods never suspend, so the writer thread runs them to the
end with :func:`run_now`, inside its transaction.
"""

from __future__ import annotations

import abc
import base64
import binascii
import contextlib
import hashlib
import importlib.resources
import re
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import msgspec
import trio

from thotto.aio import EventFeed
from thotto.errors import Conflict, InvalidTransition, NotFound, StoreError, ValidationError
from thotto.messages import (
    UTC,
    Account,
    ApiToken,
    Attempt,
    AttemptOutcome,
    EngagementReading,
    FailureCause,
    Job,
    JobState,
    LinkRequest,
    Media,
    MediaKind,
    MediaPage,
    Name,
    NewAccount,
    NewMedia,
    NewPost,
    NewUser,
    Post,
    PostContent,
    PostEngagement,
    PostPage,
    PostStatus,
    QueueCount,
    Recurrence,
    Role,
    SubredditRules,
    Tier,
    TokenHash,
    User,
    UserRemoval,
    title_key,
    utcnow,
    validated,
)
from thotto.store.base import (
    BROADCAST_BUFFER,
    POST_JOB_KIND,
    POST_QUEUE,
    Clock,
    JobPage,
    JobRecord,
    JobSearch,
    PausedQueue,
    QueueActivity,
    Store,
    activity_rows,
    check_search,
    decode_media_cursor,
    encode_media_cursor,
    media_chunks,
    media_in_use,
    missed_broadcasts,
)
from thotto.store.lifecycle import (
    STATUS_CONDITION,
    check_changeable,
    check_revivable,
    post_error,
    post_status,
)

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
INT64_LIMIT = 2**63
#: Expired link requests are kept this long (to say "expired" rather than "unknown"), then dropped.
LINK_REQUEST_MEMORY = timedelta(days=1)
MEDIA_PURGE_BATCH = 50  # media per transaction: a purge never holds the writer for long
EXPIRED_ERROR = "lease expired: the worker crashed, hung or lost its connection"
LAST_EXPIRED_ERROR = EXPIRED_ERROR + "; no attempts left"

# --- validation ---------------------------------------------------------------------------------

Owner = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
PositiveId = Annotated[int, msgspec.Meta(ge=1)]
ClaimLimit = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
LeaseSeconds = Annotated[float, msgspec.Meta(gt=0, le=366 * 86400)]
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=500)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
RedditId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RedditUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
MaxAttemptsArg = Annotated[int, msgspec.Meta(ge=1, le=1000)]
RefreshLimit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


def check(value: Any, type_: Any, field: str) -> Any:
    """``value`` converted to ``type_`` (with its constraints), or a ValidationError."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"{field}: {exc}", field) from exc


def check_struct(value: Any, type_: type[T], field: str) -> T:
    if not isinstance(value, type_):
        wanted, got = type_.__name__, type(value).__name__
        raise ValidationError(f"{field} must be a {wanted}, got {got}", field)
    return validated(value)


def check_bytes(value: Any, field: str) -> bytes:
    # msgspec.convert would accept a str here, as base64: refuse it instead
    if type(value) is not bytes:
        raise ValidationError(f"{field} must be bytes, got {type(value).__name__}", field)
    return value


def check_time(value: Any, field: str) -> datetime:
    """An aware datetime, in UTC; anything else is a ValidationError."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{field} must be a datetime, got {type(value).__name__}", field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{field} {value.isoformat()} has no time zone; give an offset, "
            "e.g. 2026-01-01T09:00:00+00:00", field)
    return value.astimezone(UTC)


def check_ids(ids: Sequence[int], field: str) -> list[int]:
    return check(list(ids), list[PositiveId], field)


def check_queues(queues: Sequence[str] | None) -> list[str] | None:
    return None if queues is None else check(list(queues), list[Name], "queues")


def malformed_cursor() -> ValidationError:
    return ValidationError("Malformed cursor: pass the next_cursor of the previous page unchanged",
                           "cursor")


def not_found(what: str, record_id: Any) -> NotFound:
    if isinstance(record_id, str):
        return NotFound(f"No {what} {record_id!r}")
    return NotFound(f"No {what} with id {record_id}")


# --- named queries ------------------------------------------------------------------------------

_NAME = re.compile(r"^-- name: (\w+)\s*$")


class Queries(dict):
    """A dialect's named queries: ``queries.get_job`` is the text under ``-- name: get_job``.
    A query of several statements (separated by ``;`` at a line's end) is a tuple of them."""

    def __getattr__(self, name: str) -> str | tuple[str, ...]:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"No query named {name!r}") from None


def load_queries(filename: str) -> Queries:
    """The named queries of ``thotto/store/sql/<filename>`` (comments dropped)."""
    text = importlib.resources.files("thotto.store").joinpath("sql", filename).read_text("utf-8")
    queries, name, lines = Queries(), None, []

    def keep() -> None:
        if name is not None:
            statements = [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M)]
            statements = [s for s in statements if s]
            queries[name] = statements[0] if len(statements) == 1 else tuple(statements)

    for line in text.splitlines():
        found = _NAME.match(line)
        if found:
            keep()
            name, lines = found.group(1), []
        elif not line.lstrip().startswith("--"):
            lines.append(line)
    keep()
    return queries


def migration_files(dialect: str) -> dict[int, str]:
    """The dialect's migrations in ``thotto/store/sql/``, by number: ``<dialect>_<number>_*.sql``.
    Numbers are reserved by branches as they start, so they may have gaps: a database records
    the highest number it applied, and takes every higher one in order."""
    found = {}
    for entry in importlib.resources.files("thotto.store").joinpath("sql").iterdir():
        match = re.fullmatch(rf"{dialect}_(\d+)_\w+\.sql", entry.name)
        if match:
            found[int(match.group(1))] = entry.name
    return dict(sorted(found.items()))


# --- transactions -------------------------------------------------------------------------------


class UniqueViolation(Exception):
    """A dialect's Tx raises this for a unique constraint's refusal (the core says Conflict)."""


class Tx(abc.ABC):
    """One transaction of a dialect. ``sql`` is a query's text (or a tuple of statements, run
    in order with the same arguments); rows are indexable by column position."""

    def __init__(self) -> None:
        self.earliest: datetime | None = None

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...

    @abc.abstractmethod
    async def fetchrow(self, sql: str, *args: Any) -> Any: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    @abc.abstractmethod
    async def execute(self, sql: str | tuple[str, ...], *args: Any) -> int:
        """Run the statement(s); the row count of the last."""

    def wake(self, when: datetime | None) -> None:
        """Announce, once this commits, that a job may be due at ``when``."""
        if when is not None and (self.earliest is None or when < self.earliest):
            self.earliest = when


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a SQLite Tx's queries are plain calls) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a store transaction suspended on a connection that runs synchronously")


# --- wake-ups and broadcasts, as this process's iterators see them ------------------------------


class Feeds:
    """The :meth:`Store.wakeups` and :meth:`Store.broadcasts` iterators a store has open. Each is
    registered when made (not when first iterated), so nothing posted meanwhile is lost; a
    wake-up feed keeps only the earliest time waiting, a broadcast feed up to BROADCAST_BUFFER
    messages (then ``None``: some were missed). Trio thread only."""

    def __init__(self) -> None:
        self._wakeups: weakref.WeakSet[EventFeed[datetime]] = weakref.WeakSet()
        self._broadcasts: weakref.WeakSet[EventFeed[bytes | None]] = weakref.WeakSet()
        self._closed = False

    def open_wakeups(self) -> EventFeed[datetime]:
        return self._open(self._wakeups, EventFeed(max_buffer=1, merge=min))

    def open_broadcasts(self) -> EventFeed[bytes | None]:
        feed = EventFeed(max_buffer=BROADCAST_BUFFER, merge=missed_broadcasts)
        return self._open(self._broadcasts, feed)

    def _open(self, hub: weakref.WeakSet[EventFeed[T]], feed: EventFeed[T]) -> EventFeed[T]:
        if self._closed:
            feed.close()
        else:
            hub.add(feed)
        return feed

    def wake(self, when: datetime) -> None:
        for feed in list(self._wakeups):
            feed.put_nowait(when)

    def deliver(self, message: bytes | None) -> None:
        for feed in list(self._broadcasts):
            feed.put_nowait(message)

    def close(self) -> None:
        """End every open iterator (once drained), and those opened later at once."""
        self._closed = True
        for feed in [*self._wakeups, *self._broadcasts]:
            feed.close()


# --- rows -> records --------------------------------------------------------------------------

_STATES = {state.value: state for state in JobState}
_OUTCOMES = {item.value: item for item in AttemptOutcome}
_TIERS = {tier.value: tier for tier in Tier}
_ROLES = {role.value: role for role in Role}
_CAUSES = {cause.value: cause for cause in FailureCause}
_MEDIA_KINDS = {kind.value: kind for kind in MediaKind}
_CONTENT = msgspec.json.Decoder(PostContent)
_RECURRENCE = msgspec.json.Decoder(Recurrence)
_RULES = msgspec.json.Decoder(SubredditRules)
_REMOVED = msgspec.json.Decoder(list[str])
_ENCODE = msgspec.json.Encoder().encode


class CoreStore(Store):
    """The Store's cold paths over a dialect's transactions and named queries."""

    q: Queries

    def __init__(self, clock: Clock = utcnow):
        super().__init__(clock)
        self._feeds = Feeds()

    def wakeups(self) -> AsyncIterator[datetime]:
        """See :meth:`Store.wakeups`. Close it (``contextlib.aclosing``)."""
        return self._feeds.open_wakeups()

    def broadcasts(self) -> AsyncIterator[bytes | None]:
        return self._feeds.open_broadcasts()

    # --- what a dialect supplies ---------------------------------------------------------------

    @abc.abstractmethod
    async def _read_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a read-only transaction (one snapshot)."""

    @abc.abstractmethod
    async def _write_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction; post its wake-up (:meth:`Tx.wake`) once it commits."""

    @staticmethod
    @abc.abstractmethod
    def _to_db(when: datetime) -> Any:
        """An aware UTC datetime as the database stores it."""

    @staticmethod
    @abc.abstractmethod
    def _from_db(value: Any) -> datetime | None:
        """A stored time (or NULL) as an aware UTC datetime (or None)."""

    @staticmethod
    @abc.abstractmethod
    def _json(value: Any) -> Any:
        """A value as a JSON column's parameter."""

    @staticmethod
    @abc.abstractmethod
    def _param(number: int) -> str:
        """How the ``number``-th parameter (from 1) is written in a query."""

    def _queue_pause_changed(self, queue: str, paused: bool) -> None:
        """Called inside the transaction that pauses or resumes ``queue`` (SQLite keeps a copy)."""

    # --- records -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.now()
        return now if now.tzinfo is UTC else now.astimezone(UTC)

    def _job(self, r: Any) -> Job:
        state, time = _STATES[r[6]], self._from_db
        held = state is JobState.PROCESSING  # the lease is shown only while the job runs
        return Job(r[0], r[1], r[2], bytes(r[3]), r[4], time(r[5]), state, r[7], r[8], r[9],
                   r[10] if held else None, time(r[11]) if held else None, time(r[12]),
                   time(r[13]), r[14])

    def _job_record(self, r: Any) -> JobRecord:
        return JobRecord(self._job(r), _CAUSES.get(r[15]))

    def _user(self, r: Any) -> User:
        return User(r[0], r[1], _TIERS[r[2]], _ROLES[r[3]], self._from_db(r[4]))

    def _token(self, r: Any) -> ApiToken:
        return ApiToken(r[0], r[1], r[2], self._from_db(r[3]), self._from_db(r[4]))

    def _account(self, r: Any) -> Account:
        return Account(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), self._from_db(r[6]))

    def _link_request(self, r: Any) -> LinkRequest:
        time = self._from_db
        return LinkRequest(r[0], r[1], r[2], time(r[3]), time(r[4]), time(r[5]),
                           None if r[6] is None else bytes(r[6]), r[7])

    def _post(self, r: Any) -> Post:
        time = self._from_db
        armed_at = time(r[13])
        status = post_status(_STATES[r[5]], armed_at, r[7])
        recurrence = None if r[10] is None else _RECURRENCE.decode(r[10])
        return Post(r[0], r[1], r[2], _CONTENT.decode(r[3]), time(r[4]), status, r[6], r[7], r[8],
                    post_error(status, r[9]), recurrence, time(r[11]), time(r[12]), armed_at)

    def _media(self, r: Any) -> Media:
        return Media(r[0], r[1], _MEDIA_KINDS[r[2]], r[3], r[4], r[5], r[6], _REMOVED.decode(r[7]),
                     self._from_db(r[8]))

    async def _one(self, tx: Tx, sql: str, args: Sequence[Any], what: str, record_id: Any) -> Any:
        """The one row ``sql`` finds; NotFound naming ``what`` otherwise."""
        row = await tx.fetchrow(sql, *args)
        if row is None:
            raise not_found(what, record_id)
        return row

    async def _read_one(self, sql: str, args: Sequence[Any], what: str, record_id: Any,
                        record: Callable[[Any], T]) -> T:
        return record(await self._read_tx(lambda tx: self._one(tx, sql, args, what, record_id)))

    async def _write_one(self, sql: str, args: Sequence[Any], what: str, record_id: Any,
                         record: Callable[[Any], T]) -> T:
        return record(await self._write_tx(lambda tx: self._one(tx, sql, args, what, record_id)))

    async def _read_all(self, sql: str, args: Sequence[Any], record: Callable[[Any], T]) -> list[T]:
        return [record(row) for row in await self._read_tx(lambda tx: tx.fetch(sql, *args))]

    async def _live_user(self, tx: Tx, user_id: int) -> None:
        await self._one(tx, self.q.live_user, (user_id,), "user", user_id)

    # --- managing jobs -------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        job_id = check(job_id, int, "job_id")
        return await self._read_one(self.q.get_job, (job_id,), "job", job_id, self._job)

    async def _pending_job(self, tx: Tx, job_id: int, action: str) -> Any:
        """The job's row (locked) if it is pending, or cancelled for a cancel; NotFound or
        InvalidTransition otherwise."""
        row = await self._one(tx, self.q.job_for_update, (job_id,), "job", job_id)
        state = row[6]
        if state != "pending" and not (state == "cancelled" and action == "cancelled"):
            why = (" (it is running and cannot be unsent)" if state == "processing"
                   else " (it has already finished)" if state != "pending" else "")
            raise InvalidTransition(f"Job {job_id} is {state}{why}: only a pending job can be "
                                    f"{action}", job_id=job_id, state=state)
        return row

    async def cancel(self, job_id: int) -> Job:
        job_id = check(job_id, int, "job_id")
        now = self._to_db(self._now())

        async def cancel(tx: Tx) -> Any:
            row = await self._pending_job(tx, job_id, "cancelled")
            return row if row[6] == "cancelled" else await tx.fetchrow(self.q.cancel_job, job_id, now)

        return self._job(await self._write_tx(cancel))

    async def reschedule(self, job_id: int, run_at: datetime) -> Job:
        job_id = check(job_id, int, "job_id")
        run_at = check_time(run_at, "run_at")

        async def move(tx: Tx) -> Any:
            await self._pending_job(tx, job_id, "rescheduled")
            tx.wake(run_at)
            return await tx.fetchrow(self.q.reschedule_job, job_id, self._to_db(run_at))

        return self._job(await self._write_tx(move))

    async def redrive(self, job_ids: Sequence[int]) -> list[int]:
        ids = list(dict.fromkeys(check_ids(job_ids, "job_ids")))
        now = self._now()

        async def redrive(tx: Tx) -> list[int]:
            # A dead job whose dedupe key a live job holds now stays dead (the query checks).
            done = [job_id for job_id in ids
                    if await tx.execute(self.q.redrive_job, job_id, self._to_db(now))]
            tx.wake(now if done else None)
            return done

        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        return await self._write_tx(redrive)

    async def purge(self, finished_before: datetime) -> int:
        before = self._to_db(check_time(finished_before, "finished_before"))
        return await self._write_tx(lambda tx: tx.execute(self.q.purge, before))

    # --- operating queues ------------------------------------------------------------------------

    async def search_jobs(self, search: JobSearch) -> JobPage:
        search = check_search(search)
        clauses, args = [], []

        def arg(value: Any) -> str:
            args.append(value)
            return self._param(len(args))

        if search.state is not None:
            # A literal (a JobState value, not user text): a parameter would keep the planner
            # from the partial index of dead jobs.
            clauses.append(f"state = '{search.state.value}'")
        for column, value in (("queue", search.queue), ("kind", search.kind)):
            if value is not None:
                clauses.append(f"{column} = {arg(check(value, str, column))}")
        if search.run_from is not None:
            clauses.append(f"run_at >= {arg(self._to_db(check_time(search.run_from, 'run_from')))}")
        if search.run_to is not None:
            clauses.append(f"run_at < {arg(self._to_db(check_time(search.run_to, 'run_to')))}")
        if search.cursor is not None:
            clauses.append(f"id < {arg(_decode_job_cursor(search.cursor))}")
        where = " AND ".join(clauses) or "1 = 1"
        sql = f"{self.q.search_jobs} WHERE {where} ORDER BY id DESC LIMIT {arg(search.limit + 1)}"
        rows = await self._read_tx(lambda tx: tx.fetch(sql, *args))
        records = [self._job_record(row) for row in rows[:search.limit]]
        more = len(rows) > search.limit
        return JobPage(records, _encode_job_cursor(records[-1].job.id) if more else None)

    async def get_job_record(self, job_id: int) -> JobRecord:
        job_id = check(job_id, int, "job_id")
        return await self._read_one(self.q.job_record, (job_id,), "job", job_id, self._job_record)

    async def pause_queue(self, queue: str) -> PausedQueue:
        queue = check(queue, Name, "queue")
        now = self._to_db(self._now())

        async def pause(tx: Tx) -> Any:
            await tx.execute(self.q.pause_queue, queue, now)
            self._queue_pause_changed(queue, True)
            return await tx.fetchval(self.q.paused_at, queue)

        return PausedQueue(queue, self._from_db(await self._write_tx(pause)))

    async def resume_queue(self, queue: str) -> bool:
        queue = check(queue, Name, "queue")
        now = self._now()

        async def resume(tx: Tx) -> bool:
            self._queue_pause_changed(queue, False)
            tx.wake(now)  # either way: a ticker may be asleep past this queue's due jobs
            return await tx.execute(self.q.resume_queue, queue) == 1

        return await self._write_tx(resume)

    async def paused_queues(self) -> list[PausedQueue]:
        return await self._read_all(self.q.paused_queues, (),
                                    lambda r: PausedQueue(r[0], self._from_db(r[1])))

    # --- reading -------------------------------------------------------------------------------

    async def counts(self) -> list[QueueCount]:
        return await self._read_all(self.q.counts, (), lambda r: QueueCount(r[0], _STATES[r[1]], r[2]))

    async def queue_activity(self, since: datetime, *, sample: int = 1000) -> list[QueueActivity]:
        since_db = self._to_db(check_time(since, "since"))
        now = self._to_db(self._now())

        async def read(tx: Tx) -> tuple[list, list]:
            return (await tx.fetch(self.q.activity, now, since_db),
                    await tx.fetch(self.q.activity_durations, since_db, max(0, int(sample))))

        counted, durations = await self._read_tx(read)
        return activity_rows(((r[0], r[1], r[2]) for r in counted), ((r[0], r[1]) for r in durations))

    async def attempts(self, job_id: int) -> list[Attempt]:
        job_id = check(job_id, int, "job_id")

        async def read(tx: Tx) -> tuple[Any, list]:
            job = await self._one(tx, self.q.current_attempt, (job_id,), "job", job_id)
            return job, await tx.fetch(self.q.attempt_history, job_id)

        (state, attempt, owner, started, finished), rows = await self._read_tx(read)
        time = self._from_db
        history = [Attempt(job_id, r[0], r[1], time(r[2]), time(r[3]), _OUTCOMES[r[4]], r[5])
                   for r in rows]
        if state == "processing":
            history.append(Attempt(job_id, attempt, owner, time(started), None,
                                   AttemptOutcome.RUNNING))
        elif state == "completed" and attempt > 0:
            history.append(Attempt(job_id, attempt, owner, time(started), time(finished),
                                   AttemptOutcome.COMPLETED))
        return history

    # --- users and API tokens -------------------------------------------------------------------

    async def create_user(self, user: NewUser) -> User:
        user = check_struct(user, NewUser, "user")
        args = (user.name, user.tier.value, user.role.value, self._to_db(self._now()))

        async def create(tx: Tx) -> Any:
            try:
                return await tx.fetchrow(self.q.insert_user, *args)
            except UniqueViolation:
                raise Conflict(f"The user name {user.name!r} is taken; choose another") from None

        return self._user(await self._write_tx(create))

    async def get_user(self, user_id: int) -> User:
        user_id = check(user_id, int, "user_id")
        return await self._read_one(self.q.user_by_id, (user_id,), "user", user_id, self._user)

    async def get_user_by_name(self, name: str) -> User:
        name = check(name, str, "name")
        return await self._read_one(self.q.user_by_name, (name,), "user named", name, self._user)

    async def list_users(self) -> list[User]:
        return await self._read_all(self.q.users, (), self._user)

    async def set_tier(self, user_id: int, tier: Tier) -> User:
        user_id, tier = check(user_id, int, "user_id"), check(tier, Tier, "tier")
        return await self._write_one(self.q.set_tier, (user_id, tier.value), "user", user_id,
                                     self._user)

    async def create_token(self, user_id: int, name: str, token_hash: str) -> ApiToken:
        user_id = check(user_id, int, "user_id")
        name = check(name, TokenName, "name")
        token_hash = check(token_hash, TokenHash, "token_hash")
        now = self._to_db(self._now())

        async def create(tx: Tx) -> Any:
            await self._live_user(tx, user_id)
            try:
                return await tx.fetchrow(self.q.insert_token, user_id, name, token_hash, now)
            except UniqueViolation:
                raise Conflict("An API token with this hash already exists") from None

        return self._token(await self._write_tx(create))

    async def revoke_token(self, token_id: int) -> ApiToken:
        token_id = check(token_id, int, "token_id")
        now = self._to_db(self._now())
        return await self._write_one(self.q.revoke_token, (token_id, now), "API token", token_id,
                                     self._token)

    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        return await self._read_all(self.q.tokens_of_user, (check(user_id, int, "user_id"),),
                                    self._token)

    async def user_for_token(self, token_hash: str) -> User | None:
        token_hash = check(token_hash, str, "token_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.user_by_token, token_hash))
        return None if row is None else self._user(row)

    async def remove_user(self, user_id: int) -> UserRemoval:
        user_id = check(user_id, int, "user_id")
        now = self._to_db(self._now())

        async def remove(tx: Tx) -> UserRemoval:
            user = self._user(await self._one(tx, self.q.user_to_remove, (user_id,), "user", user_id))
            # The other admins' rows are locked too: two admins removing each other at once
            # cannot both pass.
            if user.role is Role.ADMIN and not await tx.fetchval(self.q.other_admins, user_id):
                raise Conflict(f"{user.name!r} is the last admin; make another user an admin "
                               "before removing them")
            posts = await tx.execute(self.q.cancel_users_posts, user_id, now)
            tokens = await tx.execute(self.q.revoke_users_tokens, user_id, now)
            accounts = await tx.execute(self.q.unlink_users_accounts, user_id)
            # A '#' suffix, which no valid name has, frees the name for a new user.
            await tx.execute(self.q.mark_user_removed, user_id, now)
            return UserRemoval(user, posts, tokens, accounts)

        return await self._write_tx(remove)

    # --- Reddit accounts -------------------------------------------------------------------------

    async def create_account(self, account: NewAccount) -> Account:
        account = check_struct(account, NewAccount, "account")
        args = (account.user_id, account.reddit_username, account.refresh_token_encrypted,
                account.scopes, self._to_db(self._now()))

        async def link(tx: Tx) -> Any:
            await self._live_user(tx, account.user_id)
            return await tx.fetchrow(self.q.link_account, *args)

        return self._account(await self._write_tx(link))

    async def get_account(self, account_id: int) -> Account:
        account_id = check(account_id, int, "account_id")
        return await self._read_one(self.q.account_by_id, (account_id,), "account", account_id,
                                    self._account)

    async def list_accounts(self, user_id: int) -> list[Account]:
        return await self._read_all(self.q.accounts_of_user, (check(user_id, int, "user_id"),),
                                    self._account)

    async def set_account_token(self, account_id: int, refresh_token_encrypted: bytes) -> Account:
        token = check_bytes(refresh_token_encrypted, "refresh_token_encrypted")
        return await self._update_account(account_id, self.q.set_account_token, token)

    async def set_needs_relink(self, account_id: int, needs_relink: bool) -> Account:
        return await self._update_account(account_id, self.q.set_needs_relink,
                                          check(needs_relink, bool, "needs_relink"))

    async def _update_account(self, account_id: int, sql: str, value: Any) -> Account:
        account_id = check(account_id, int, "account_id")
        return await self._write_one(sql, (account_id, value), "account", account_id, self._account)

    # --- account link requests ---------------------------------------------------------------

    async def create_link_request(self, state_hash: str, user_id: int, secret_hash: str,
                                  expires_at: datetime) -> LinkRequest:
        state_hash = check(state_hash, TokenHash, "state_hash")
        user_id = check(user_id, int, "user_id")
        secret_hash = check(secret_hash, TokenHash, "secret_hash")
        expires = self._to_db(check_time(expires_at, "expires_at"))
        now = self._now()

        async def create(tx: Tx) -> Any:
            await self._live_user(tx, user_id)
            await tx.execute(self.q.forget_old_link_requests, self._to_db(now - LINK_REQUEST_MEMORY))
            try:
                return await tx.fetchrow(self.q.insert_link_request, state_hash, user_id,
                                         secret_hash, self._to_db(now), expires)
            except UniqueViolation:
                raise Conflict("A link request with this state already exists") from None

        return self._link_request(await self._write_tx(create))

    async def get_link_request(self, state_hash: str) -> LinkRequest | None:
        state_hash = check(state_hash, str, "state_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.link_request, state_hash))
        return None if row is None else self._link_request(row)

    async def hold_link_code(self, state_hash: str, held_code: bytes, verifier_hash: str) -> bool:
        args = (check(state_hash, str, "state_hash"), check_bytes(held_code, "held_code"),
                check(verifier_hash, TokenHash, "verifier_hash"), self._to_db(self._now()))
        return await self._write_tx(lambda tx: tx.execute(self.q.hold_link_code, *args)) == 1

    async def use_link_request(self, state_hash: str) -> bool:
        args = (check(state_hash, str, "state_hash"), self._to_db(self._now()))
        return await self._write_tx(lambda tx: tx.execute(self.q.use_link_request, *args)) == 1

    # --- posts -----------------------------------------------------------------------------------

    async def create_posts(self, posts: Sequence[NewPost], *, max_attempts: int = 3) -> list[Post]:
        checked = [check_struct(post, NewPost, "posts") for post in posts]
        max_attempts = check(max_attempts, MaxAttemptsArg, "max_attempts")
        times = [check_time(post.scheduled_for, "scheduled_for") for post in checked]
        now = self._now()
        if not checked:
            await trio.lowlevel.checkpoint()
            return []

        async def create(tx: Tx) -> list[Post]:
            return [await self._create_post(tx, post, when, max_attempts, now)
                    for post, when in zip(checked, times)]

        return await self._write_tx(create)

    async def _create_post(self, tx: Tx, post: NewPost, when: datetime, max_attempts: int,
                           now: datetime, follows: int | None = None) -> Post:
        """Insert a post and its publishing job (and, with ``follows``, mark it as that post's
        follow-up, carrying its series' anchor)."""
        if await tx.fetchval(self.q.account_owner, post.account_id) != post.user_id:
            raise NotFound(f"Account {post.account_id} is not an account of user {post.user_id}")
        at, created = self._to_db(when), self._to_db(now)
        job_id = await tx.fetchval(self.q.insert_post_job, POST_QUEUE, POST_JOB_KIND, b"null", at,
                                   max_attempts, created)
        recurrence = None if post.recurrence is None else self._json(post.recurrence)
        post_id = await tx.fetchval(
            self.q.insert_post, post.user_id, post.account_id, job_id, post.content.subreddit,
            title_key(post.content.title), self._json(post.content), at, recurrence, created)
        await tx.execute(self.q.set_job_payload, job_id, _ENCODE({"post_id": post_id}))
        if follows is not None:
            await tx.execute(self.q.set_follows, post_id, follows)
        await self._link_media(tx, post_id, post.user_id, post.content)
        tx.wake(when)
        return Post(post_id, post.user_id, post.account_id, post.content, when,
                    PostStatus.SCHEDULED, job_id, None, None, None, post.recurrence, now, now)

    async def _link_media(self, tx: Tx, post_id: int, user_id: int, content: PostContent) -> None:
        """Record which uploads the post uses (so they are not deleted while it may publish),
        each checked to be one of the post's user's."""
        await tx.execute(self.q.unlink_post_media, post_id)
        for position, ref in enumerate(content.media):
            if await tx.fetchval(self.q.media_owner, ref.media_id) != user_id:
                raise NotFound(f"Media {ref.media_id} is not one of user {user_id}'s uploads")
            await tx.execute(self.q.link_post_media, post_id, ref.media_id, position)

    async def _select_post(self, tx: Tx, post_id: int, user_id: int | None = None, *,
                           lock: bool = False) -> Post:
        """The post; NotFound if it is missing or (with ``user_id``) another user's."""
        row = await tx.fetchrow(self.q.post_for_update if lock else self.q.post_by_id, post_id)
        if row is None or (user_id is not None and row[1] != user_id):
            raise not_found("post", post_id)
        return self._post(row)

    async def get_post(self, post_id: int, user_id: int | None = None) -> Post:
        post_id = check(post_id, int, "post_id")
        user_id = check(user_id, int | None, "user_id")
        return await self._read_tx(lambda tx: self._select_post(tx, post_id, user_id))

    async def get_post_by_job(self, job_id: int) -> Post:
        job_id = check(job_id, int, "job_id")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.post_by_job, job_id))
        if row is None:
            raise NotFound(f"No post is published by job {job_id}")
        return self._post(row)

    async def list_posts(self, user_id: int, *, status: PostStatus | None = None,
                         scheduled_from: datetime | None = None,
                         scheduled_to: datetime | None = None, cursor: str | None = None,
                         limit: int = 50) -> PostPage:
        args: list[Any] = [check(user_id, int, "user_id")]
        limit = check(limit, PageLimit, "limit")

        def arg(value: Any) -> str:
            args.append(value)
            return self._param(len(args))

        clauses = [f"p.user_id = {self._param(1)}"]
        status = check(status, PostStatus | None, "status")
        if status is not None:
            clauses.append(STATUS_CONDITION[status])
        if scheduled_from is not None:
            clauses.append(f"p.scheduled_for >= {arg(self._to_db(check_time(scheduled_from, 'scheduled_from')))}")
        if scheduled_to is not None:
            clauses.append(f"p.scheduled_for < {arg(self._to_db(check_time(scheduled_to, 'scheduled_to')))}")
        if cursor is not None:
            after, after_id = _decode_post_cursor(cursor)
            clauses.append(f"(p.scheduled_for, p.id) > ({arg(self._to_db(after))}, {arg(after_id)})")
        sql = (f"{self.q.post_select} WHERE {' AND '.join(clauses)} "
               f"ORDER BY p.scheduled_for, p.id LIMIT {arg(limit + 1)}")
        rows = await self._read_tx(lambda tx: tx.fetch(sql, *args))
        posts = [self._post(row) for row in rows[:limit]]
        more = len(rows) > limit
        return PostPage(posts, _encode_post_cursor(posts[-1]) if more else None)

    async def find_recent_posts(self, account_id: int, subreddit: str, title: str,
                                since: datetime) -> list[Post]:
        args = (check(account_id, int, "account_id"), check(subreddit, str, "subreddit"),
                title_key(check(title, str, "title")), self._to_db(check_time(since, "since")))
        return await self._read_all(self.q.recent_posts, args, self._post)

    async def update_post(self, post_id: int, user_id: int, *, content: PostContent | None = None,
                          scheduled_for: datetime | None = None) -> Post:
        post_id, user_id = check(post_id, int, "post_id"), check(user_id, int, "user_id")
        if content is not None:
            content = check_struct(content, PostContent, "content")
        when = None if scheduled_for is None else check_time(scheduled_for, "scheduled_for")
        now = self._now()

        async def update(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, user_id, lock=True)
            check_changeable(post, "edited" if content is not None else "rescheduled", now)
            await self._apply_post_edit(tx, post, content, when, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(update)

    async def _apply_post_edit(self, tx: Tx, post: Post, content: PostContent | None,
                               when: datetime | None, now: datetime) -> None:
        if content is not None:
            await tx.execute(self.q.set_post_content, post.id, self._json(content),
                             content.subreddit, title_key(content.title))
            await self._link_media(tx, post.id, post.user_id, content)
        if when is not None:
            await tx.execute(self.q.set_post_schedule, post.id, self._to_db(when))
            await tx.execute(self.q.set_job_run_at, post.job_id, self._to_db(when))
            tx.wake(when)
        await tx.execute(self.q.set_post_updated, post.id, self._to_db(now))

    async def revive_post(self, post_id: int, *, scheduled_for: datetime,
                          content: PostContent | None = None) -> Post:
        post_id = check(post_id, int, "post_id")
        if content is not None:
            content = check_struct(content, PostContent, "content")
        when = check_time(scheduled_for, "scheduled_for")
        now = self._now()

        async def revive(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, lock=True)
            check_revivable(post, content is not None)
            await self._apply_post_edit(tx, post, content, when, now)
            await tx.execute(self.q.revive_job, post.job_id, self._to_db(when))
            return await self._select_post(tx, post_id)

        return await self._write_tx(revive)

    async def cancel_post(self, post_id: int, user_id: int) -> Post:
        post_id, user_id = check(post_id, int, "post_id"), check(user_id, int, "user_id")
        now = self._now()

        async def cancel(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, user_id, lock=True)
            if post.status is PostStatus.CANCELLED:
                return post
            check_changeable(post, "cancelled", now)
            await tx.execute(self.q.cancel_post_job, post.job_id, self._to_db(now))
            await tx.execute(self.q.set_post_updated, post_id, self._to_db(now))
            return await self._select_post(tx, post_id)

        return await self._write_tx(cancel)

    async def record_publication(self, post_id: int, reddit_id: str, reddit_url: str) -> Post:
        post_id = check(post_id, int, "post_id")
        reddit_id = check(reddit_id, RedditId, "reddit_id")
        reddit_url = check(reddit_url, RedditUrl, "reddit_url")
        now = self._to_db(self._now())

        async def record(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, lock=True)
            if post.reddit_id == reddit_id:
                return post
            if post.reddit_id is not None:
                raise InvalidTransition(
                    f"Post {post_id} is already recorded as Reddit post {post.reddit_id}; "
                    f"refusing to record {reddit_id} over it",
                    job_id=post.job_id, state=post.status.value)
            await tx.execute(self.q.set_publication, post_id, reddit_id, reddit_url, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(record)

    async def arm_post(self, post_id: int) -> Post:
        post_id = check(post_id, int, "post_id")
        now = self._to_db(self._now())

        async def arm(tx: Tx) -> Post:
            await self._select_post(tx, post_id, lock=True)
            if await tx.fetchrow(self.q.post_of_removed_user, post_id):
                raise InvalidTransition(f"Post {post_id} belongs to a removed user; it is not "
                                        "published")
            await tx.execute(self.q.arm_post, post_id, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(arm)

    async def disarm_post(self, post_id: int) -> Post:
        post_id = check(post_id, int, "post_id")
        now = self._to_db(self._now())

        async def disarm(tx: Tx) -> Post:
            await tx.execute(self.q.disarm_post, post_id, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(disarm)

    # --- recurring posts and engagement ---------------------------------------------------------

    async def create_follow_up(self, previous_post_id: int, post: NewPost, *,
                               max_attempts: int = 3) -> tuple[Post, bool]:
        previous_post_id = check(previous_post_id, PositiveId, "previous_post_id")
        post = check_struct(post, NewPost, "post")
        max_attempts = check(max_attempts, MaxAttemptsArg, "max_attempts")
        when, now = check_time(post.scheduled_for, "scheduled_for"), self._now()

        async def create(tx: Tx) -> tuple[Post, bool]:
            # Locking the previous post (Postgres; SQLite has one writer) queues concurrent
            # calls here; the unique index on follows_post_id is the last word besides.
            await self._one(tx, self.q.lock_post, (previous_post_id,), "post", previous_post_id)
            found = await tx.fetchval(self.q.follow_up_of, previous_post_id)
            if found is not None:
                return await self._select_post(tx, found), False
            return await self._create_post(tx, post, when, max_attempts, now,
                                           follows=previous_post_id), True

        return await self._write_tx(create)

    async def series_start(self, post_id: int) -> datetime:
        post_id = check(post_id, PositiveId, "post_id")
        return await self._read_one(self.q.series_start, (post_id,), "post", post_id,
                                    lambda row: self._from_db(row[0]))

    async def record_engagement(self, readings: Sequence[EngagementReading]) -> int:
        latest: dict[int, EngagementReading] = {}
        for reading in readings:
            reading = check_struct(reading, EngagementReading, "readings")
            kept = latest.get(reading.post_id)
            if kept is None or kept.read_at <= reading.read_at:
                latest[reading.post_id] = reading
        rows = [(r.post_id, r.score, r.comments, self._to_db(check_time(r.read_at, "read_at")))
                for r in latest.values()]
        if not rows:
            await trio.lowlevel.checkpoint()
            return 0

        async def record(tx: Tx) -> int:
            return sum([await tx.execute(self.q.set_engagement, *row) for row in rows])

        return await self._write_tx(record)

    async def posts_to_refresh(self, published_since: datetime, read_before: datetime, *,
                               limit: int = 1000) -> list[Post]:
        args = (self._to_db(check_time(published_since, "published_since")),
                self._to_db(check_time(read_before, "read_before")),
                check(limit, RefreshLimit, "limit"))
        return await self._read_all(self.q.to_refresh, args, self._post)

    async def subreddit_engagement(self, subreddit: str, *,
                                   since: datetime | None = None) -> list[PostEngagement]:
        args = (check(subreddit, str, "subreddit"),
                self._to_db(EPOCH if since is None else check_time(since, "since")))
        time = self._from_db
        return await self._read_all(self.q.subreddit_engagement, args, lambda r: PostEngagement(
            post_id=r[0], account_id=r[1], subreddit=r[2], scheduled_for=time(r[3]),
            published_at=time(r[4]), score=r[5], comments=r[6], read_at=time(r[7])))

    # --- community rules -------------------------------------------------------------------------

    async def save_subreddit_rules(self, rules: SubredditRules) -> None:
        rules = check_struct(rules, SubredditRules, "rules")
        args = (rules.name.lower(), self._json(rules),
                self._to_db(check_time(rules.synced_at, "synced_at")))
        await self._write_tx(lambda tx: tx.execute(self.q.save_rules, *args))

    async def get_subreddit_rules(self, name: str) -> SubredditRules | None:
        name = check(name, str, "name").lower()
        rules = await self._read_tx(lambda tx: tx.fetchval(self.q.rules_by_name, name))
        return None if rules is None else _RULES.decode(rules)

    async def list_subreddit_rules(self) -> list[SubredditRules]:
        return await self._read_all(self.q.all_rules, (), lambda row: _RULES.decode(row[0]))

    # --- media -----------------------------------------------------------------------------------

    async def create_media(self, media: NewMedia, chunks: AsyncIterable[bytes]) -> Media:
        media = check_struct(media, NewMedia, "media")
        args = (media.user_id, media.kind.value, media.width, media.height,
                self._json(media.removed), self._to_db(self._now()))

        async def begin(tx: Tx) -> int:
            await self._live_user(tx, media.user_id)
            return await tx.fetchval(self.q.insert_media, *args)

        media_id = await self._write_tx(begin)
        try:
            size, digest = await self._store_chunks(media_id, chunks)
            if size == 0:
                raise ValidationError("The image is empty: send its bytes", field="chunks")
            return await self._write_one(self.q.finish_media, (media_id, size, digest),
                                         "media (deleted while it was being stored)", media_id,
                                         self._media)
        except BaseException:
            # An unfinished upload must not stay behind (if this fails too, purge_media will).
            with trio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self._write_tx(lambda tx: tx.execute(self.q.delete_media, media_id))
            raise

    async def _store_chunks(self, media_id: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        """Write the chunks one transaction each; their total size and SHA-256."""
        hasher, size, seq = hashlib.sha256(), 0, 0
        async with contextlib.aclosing(media_chunks(chunks)) as pieces:
            async for piece in pieces:
                hasher.update(piece)
                size += len(piece)
                args = (media_id, seq, piece)
                await self._write_tx(lambda tx: tx.execute(self.q.insert_media_chunk, *args))
                seq += 1
        return size, hasher.hexdigest()

    async def get_media(self, media_id: int, user_id: int | None = None) -> Media:
        media_id = check(media_id, int, "media_id")
        user_id = check(user_id, int | None, "user_id")
        if user_id is None:
            return await self._read_one(self.q.media_by_id, (media_id,), "media", media_id,
                                        self._media)
        return await self._read_one(self.q.media_of_user, (media_id, user_id), "media", media_id,
                                    self._media)

    async def list_media(self, user_id: int, *, cursor: str | None = None,
                         limit: int = 50) -> MediaPage:
        user_id = check(user_id, int, "user_id")
        limit = check(limit, PageLimit, "limit")
        before = (1 << 62) if cursor is None else decode_media_cursor(cursor)
        rows = await self._read_tx(lambda tx: tx.fetch(self.q.media_page, user_id, before, limit + 1))
        media = [self._media(row) for row in rows[:limit]]
        return MediaPage(media, encode_media_cursor(media[-1].id) if len(rows) > limit else None)

    async def read_media(self, media_id: int, user_id: int | None = None) -> AsyncIterator[bytes]:
        media = await self.get_media(media_id, user_id)
        sent, seq = 0, 0
        while sent < media.bytes:
            args = (media.id, seq)
            data = await self._read_tx(lambda tx: tx.fetchval(self.q.media_chunk, *args))
            if data is None:
                raise not_found("media", media_id)  # deleted while it was being read
            sent += len(data)
            seq += 1
            yield bytes(data)

    async def delete_media(self, media_id: int, user_id: int) -> Media:
        media_id, user_id = check(media_id, int, "media_id"), check(user_id, int, "user_id")

        async def delete(tx: Tx) -> Media:
            media = self._media(await self._one(tx, self.q.media_of_user_for_update,
                                                (media_id, user_id), "media", media_id))
            posts = [row[0] for row in await tx.fetch(self.q.media_live_posts, media_id)]
            if posts:
                raise media_in_use(media_id, posts)
            await tx.execute(self.q.delete_media, media_id)
            return media

        return await self._write_tx(delete)

    async def purge_media(self, unused_before: datetime, *,
                          unfinished_before: datetime | None = None) -> int:
        unused = self._to_db(check_time(unused_before, "unused_before"))
        unfinished = unused if unfinished_before is None else self._to_db(
            check_time(unfinished_before, "unfinished_before"))

        async def purge_batch(tx: Tx) -> int:
            ids = [row[0] for row in await tx.fetch(self.q.media_to_purge, unused, unfinished,
                                                    MEDIA_PURGE_BATCH)]
            for media_id in ids:
                await tx.execute(self.q.delete_media, media_id)
            return len(ids)

        purged = 0
        while batch := await self._write_tx(purge_batch):
            purged += batch
        return purged


# --- cursors ---------------------------------------------------------------------------------


def _encode_job_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(f"job:{job_id}".encode()).decode()


def _decode_job_cursor(cursor: str) -> int:
    try:
        kind, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if kind != "job" or not -INT64_LIMIT <= int(job_id) < INT64_LIMIT:
            raise ValueError(kind)
        return int(job_id)
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeError):
        raise malformed_cursor() from None


def _encode_post_cursor(post: Post) -> str:
    micros = (post.scheduled_for - EPOCH) // ONE_US
    return base64.urlsafe_b64encode(f"{micros}:{post.id}".encode()).decode().rstrip("=")


def _decode_post_cursor(cursor: str) -> tuple[datetime, int]:
    """Where the previous page ended: (scheduled_for, post id). A forged cursor may hold numbers
    no database integer holds: a ValidationError, not a driver's overflow."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, post_id = (int(n) for n in base64.urlsafe_b64decode(padded.encode()).decode().split(":"))
        if not all(-INT64_LIMIT <= number < INT64_LIMIT for number in (micros, post_id)):
            raise OverflowError(micros, post_id)
        return EPOCH + ONE_US * micros, post_id
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeError, OverflowError):
        raise malformed_cursor() from None


__all__ = ["CoreStore", "Tx", "Queries", "load_queries", "run_now", "UniqueViolation", "check",
           "check_struct", "check_time", "check_ids", "check_queues", "not_found"]
