"""The job store's core: what both dialects of the job tables share, written once (issue #14).

This package is the job engine's store (jobs, their attempts, paused queues). Like all of the
engine it imports no product module: the product store (:mod:`thotto.store`) extends it with its
own tables.

A dialect (``sqlite.py``, ``postgres.py``) subclasses :class:`JobCore` and supplies:

* its named queries (``sql/queries_<dialect>.sql``, loaded once by :func:`load_queries`): the
  same names in both files, each dialect's own SQL text, parameters numbered from 1;
* how to run a function of a :class:`Tx` (one transaction): :meth:`JobCore._read_tx` and
  :meth:`JobCore._write_tx` (SQLite: on its reader or writer thread, in the writer's group
  commit; Postgres: on a pooled asyncpg connection on the sidecar);
* how a time travels to and from the database (:meth:`JobCore._to_db`, ``_from_db``), how JSON
  travels (``_json``) and how a parameter is written in a query built here (``_param``);
* the statements a benchmark keeps per dialect: enqueue, claim (``_claim_due``), heartbeat
  (``_extend_leases``), settle (``_apply_outcomes``), next_due (``_earliest_due``), wake-ups and
  broadcasts; and a ``Tx``'s migration script.

The core holds the rest: validation of every input (the hot paths' too), rows → records, the
state-change rules (the one-outcome settle rule, ``release_expired``), the migration runner and
the cold-path methods. Its functions of a ``Tx`` are coroutines; on SQLite the ``Tx`` methods
never suspend, so the writer thread runs them to the end with :func:`run_now`, inside its
transaction.
"""

from __future__ import annotations

import abc
import base64
import binascii
import importlib.resources
import itertools
import operator
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec
import trio

from thotto.engine.aio import EventFeed
from thotto.engine.errors import NotFound, SchemaError
from thotto.engine.errors import InvalidTransition, ValidationError
from thotto.engine.jobs import (
    UTC,
    Attempt,
    AttemptOutcome,
    Completed,
    Dead,
    Deferred,
    ExpiredLeases,
    FailureCause,
    Job,
    JobState,
    Name,
    Outcome,
    QueueCount,
    Released,
    Retry,
    SettleResult,
    SettleStatus,
    utcnow,
    validated,
)
from thotto.engine.store.base import (
    BROADCAST_BUFFER,
    NowFunction,
    JobPage,
    JobRecord,
    JobSearch,
    PausedQueue,
    QueueActivity,
    activity_rows,
    check_search,
    missed_broadcasts,
)

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
INT64_LIMIT = 2**63
EXPIRED_ERROR = "lease expired: the worker crashed, hung or lost its connection"

# --- validation ---------------------------------------------------------------------------------

Owner = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
PositiveId = Annotated[int, msgspec.Meta(ge=1)]
ClaimLimit = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
LeaseSeconds = Annotated[float, msgspec.Meta(gt=0, le=366 * 86400)]


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


# --- what the hot paths check, and the rules they share ----------------------------------------


def check_owner(owner: Any) -> str:
    return check(owner, Owner, "owner")


def check_lease(owner: Any, lease_seconds: Any) -> tuple[str, float]:
    """A claim's or heartbeat's owner and lease length, checked."""
    return check_owner(owner), check(lease_seconds, LeaseSeconds, "lease_seconds")


def check_claim(owner: Any, limit: Any, lease_seconds: Any,
                queues: Sequence[str] | None) -> tuple[str, int, float, list[str] | None]:
    """A claim's owner, limit, lease length and queues, checked."""
    owner, lease_seconds = check_lease(owner, lease_seconds)
    return owner, check(limit, ClaimLimit, "limit"), lease_seconds, check_queues(queues)


def check_heartbeat(owner: Any, job_ids: Sequence[int],
                    lease_seconds: Any) -> tuple[str, list[int], float]:
    """A heartbeat's owner, job ids and lease length, checked."""
    owner, lease_seconds = check_lease(owner, lease_seconds)
    return owner, check_ids(job_ids, "job_ids"), lease_seconds


def held_in_order(job_ids: Sequence[int], held: set[int]) -> list[int]:
    """What a heartbeat returns: the ids of ``job_ids`` in ``held`` (their lease was extended),
    each once, in the order given."""
    return [job_id for job_id in dict.fromkeys(job_ids) if job_id in held]


#: An outcome's name in a settle statement and, but for a completion, in the attempt history.
OUTCOME_KINDS = {Completed: "completed", Retry: "retry", Dead: "dead", Deferred: "deferred",
                 Released: "released"}
JOB_ID = operator.attrgetter("job_id")
ATTEMPT = operator.attrgetter("attempt")


def check_outcome(item: Any) -> Outcome:
    """One settle outcome, validated; ``Completed`` and ``Released`` only carry two ints."""
    kind = type(item)
    if kind is Completed or kind is Released:
        if type(item.job_id) is int and type(item.attempt) is int:
            return item
    elif kind not in OUTCOME_KINDS:
        raise ValidationError("Expected an outcome (Completed, Retry, Dead, Deferred or "
                              f"Released), got {kind.__name__}", "outcomes")
    return validated(item)


def check_outcomes(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Validated outcomes; a batch of ``Completed`` with int fields is checked at C speed."""
    items = list(outcomes)
    if set(map(type, items)) <= {Completed} and (
            set(map(type, map(JOB_ID, items))) | set(map(type, map(ATTEMPT, items))) <= {int}):
        return items
    return [check_outcome(item) for item in items]


def outcome_row(item: Outcome) -> tuple[int, int, str, datetime | None, str | None, str | None]:
    """(job id, attempt, kind, run_at, error, failure cause) of a checked outcome: run_at for a
    Retry or Deferred, the error of a Retry or Dead (a Deferred's reason), a Dead's cause."""
    kind = OUTCOME_KINDS[type(item)]
    if kind == "completed" or kind == "released":
        return item.job_id, item.attempt, kind, None, None, None
    if kind == "dead":
        return item.job_id, item.attempt, kind, None, item.error, item.cause.value
    error = item.error if kind == "retry" else item.reason
    return item.job_id, item.attempt, kind, item.run_at.astimezone(UTC), error, None


#: Completions are matched by a key per job and attempt, id * KEY_SHIFT + attempt, which fits in
#: 63 bits for ids below MAX_KEYED_ID (attempts stay far below KEY_SHIFT: max_attempts <= 1000).
KEY_SHIFT = 1 << 20
MAX_KEYED_ID = 1 << 42


def keyable(ids: Sequence[int], attempts: Sequence[int]) -> bool:
    """Whether every job id and attempt has its key (see KEY_SHIFT)."""
    return (0 < min(ids) and max(ids) < MAX_KEYED_ID
            and 0 < min(attempts) and max(attempts) < KEY_SHIFT)


async def settle_in_order(tx: Tx, q: Queries, to_db: Callable[[datetime], Any], owner: str,
                          rows: Sequence[tuple], now: datetime) -> list[SettleStatus]:
    """Settle outcomes (as :func:`outcome_row` gives them) one by one, in order, by the rules of
    :meth:`Store.settle`, with the dialect's ``held_job`` query (locking the row), ``to_*`` and
    attempt queries; a requeued job's run_at is posted (:meth:`Tx.wake`). The rare path of both
    dialects: a batch naming a job twice, or (SQLite) what is not a completion of a held job."""
    return [await _settle_one(tx, q, to_db, owner, row, now) for row in rows]


async def _settle_one(tx: Tx, q: Queries, to_db: Callable[[datetime], Any], owner: str,
                      row: tuple, now: datetime) -> SettleStatus:
    job_id, attempt, kind, run_at, error, cause = row
    held = await tx.fetchrow(q.held_job, job_id)  # state, attempt, max_attempts, owner, started
    if held is None or held[0] != "processing" or held[3] != owner or held[1] != attempt:
        recorded = held is not None and await _recorded(tx, q, owner, row, held)
        return SettleStatus.ALREADY if recorded else SettleStatus.LEASE_LOST
    if kind == "completed":
        await tx.execute(q.to_completed, to_db(now), job_id)
        return SettleStatus.OK
    dead = kind == "dead" or (kind == "retry" and held[1] >= held[2])
    await tx.execute(q.insert_attempt, job_id, attempt, owner, held[4], to_db(now),
                     "dead" if dead else kind, error)
    if dead:
        await tx.execute(q.to_dead, to_db(now), error, cause or FailureCause.SYSTEM.value, job_id)
        return SettleStatus.OK
    run_at = run_at or now  # a release runs at once
    retry = kind == "retry"  # a deferral or a release refunds the attempt
    await tx.execute(q.to_pending, to_db(run_at), 0 if retry else 1, error if retry else None,
                     job_id)
    tx.wake(run_at)
    return SettleStatus.OK


async def _recorded(tx: Tx, q: Queries, owner: str, row: tuple, held: Any) -> bool:
    """Whether this very outcome (same owner, attempt and result) was recorded before."""
    job_id, attempt, kind = row[:3]
    if kind == "completed":
        return held[0] == "completed" and held[3] == owner and held[1] == attempt
    names = ("retry", "dead") if kind == "retry" else (kind, kind)  # a last Retry is dead
    return await tx.fetchrow(q.attempt_recorded, job_id, attempt, owner, *names) is not None


def claimed_jobs(columns: Sequence[Iterable[Any]], owner: str, lease_until: datetime) -> list[Job]:
    """The Jobs of a claim, built at C speed from its columns: id, queue, kind, payload, priority,
    run_at, attempt, max_attempts, dedupe_key, created_at, last_error (times as datetimes)."""
    repeat = itertools.repeat
    return list(map(Job, *columns[:6], repeat(JobState.PROCESSING), *columns[6:9], repeat(owner),
                    repeat(lease_until), columns[9], repeat(None), columns[10]))


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


def load_queries(package: str, filename: str) -> Queries:
    """The named queries of ``sql/<filename>`` beside ``package`` (comments dropped)."""
    text = importlib.resources.files(package).joinpath("sql").joinpath(filename).read_text("utf-8")
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


def migration_files(package: str, dialect: str, folder: str = "sql") -> dict[int, str]:
    """The dialect's migrations in ``folder`` beside ``package``, by number, as their text:
    ``<dialect>_<number>_*.sql``. Numbers are reserved by branches as they start, so they may
    have gaps: a database records the highest number it applied, and takes every higher one in
    order."""
    found = {}
    for entry in importlib.resources.files(package).joinpath(folder).iterdir():
        match = re.fullmatch(rf"{dialect}_(\d+)_\w+\.sql", entry.name)
        if match:
            found[int(match.group(1))] = entry.read_text("utf-8")
    return dict(sorted(found.items()))


# --- schema versions ----------------------------------------------------------------------------

#: ``PRAGMA user_version`` (SQLite) or ``thotto_schema.version`` (Postgres) of a database whose
#: schema is versioned per component (the table ``schema_versions``/``thotto_schema_versions``).
#: A lower version is a single-track one, of the migrations in ``thotto/store/sql/legacy``.
PER_COMPONENT = 100


class SchemaComponent(NamedTuple):
    """A part of the schema with its own numbered migrations: the job tables (``jobs``, this
    package's ``sql/``) or the tables of a product built on them (after the job tables)."""

    name: str
    migrations: dict[int, str]


class Legacy(NamedTuple):
    """The single-track migrations databases had before components. A database at one of their
    versions takes the rest of them, and is then at version 1 of every component (version 1 of
    each is what the last of them made), or at the versions ``ahead`` gives for its single-track
    version: a branch's single-track migration that became a component's later one (it was never
    in this track, so a database at another version lacks it and takes it as a component step).
    ``functions``: SQL functions (SQLite) and ``backfills`` (Postgres: a coroutine of the
    migration's :class:`Tx` run after that migration) some of them need."""

    migrations: dict[int, str]
    functions: dict[str, Callable[[Any], Any]] = {}
    backfills: dict[int, Callable[[Any], Awaitable[None]]] = {}
    ahead: dict[int, dict[str, int]] = {}


def legacy_steps(version: int, legacy: Legacy | None,
                 components: Sequence[SchemaComponent]) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """The legacy migrations a database at single-track ``version`` still needs, and the
    component versions it is at once they ran."""
    if legacy is None or version > max(legacy.migrations):
        raise SchemaError(
            f"The database has schema version {version}, which this store cannot upgrade: "
            + ("upgrade Thotto" if legacy else "open it once with Thotto's store (thotto.store.open_store)"))
    steps = [(number, text) for number, text in legacy.migrations.items() if number > version]
    ahead = legacy.ahead.get(version, {})
    return steps, {component.name: ahead.get(component.name, 1) for component in components}


def component_steps(found: dict[str, int],
                    components: Sequence[SchemaComponent]) -> list[tuple[str, int, str]]:
    """The migrations to run, in order: each component's above the version the database has of
    it (components in order, so a product's tables come after the job tables they refer to)."""
    steps = []
    for component in components:
        have, latest = found.get(component.name, 0), max(component.migrations)
        if have > latest:
            raise SchemaError(
                f"The database's {component.name} schema is version {have}, newer than this "
                f"Thotto understands ({latest}): upgrade Thotto, or restore a backup made for it")
        steps += [(component.name, number, text)
                  for number, text in component.migrations.items() if number > have]
    return steps


def newer_schema(version: int) -> SchemaError:
    return SchemaError(f"The database has schema version {version}, newer than this Thotto "
                       "understands: upgrade Thotto, or restore a backup made for this version")


# --- transactions -------------------------------------------------------------------------------


class UniqueViolation(Exception):
    """A dialect's Tx raises this for a unique constraint's refusal (the core says Conflict)."""


class Tx(abc.ABC):
    """One transaction of a dialect. ``sql`` is a query's text, or a tuple of statements run in
    order with the same arguments (the rows or row count are the last one's); rows are indexable
    by column position."""

    def __init__(self) -> None:
        self.earliest: datetime | None = None

    @abc.abstractmethod
    async def fetch(self, sql: str | tuple[str, ...], *args: Any) -> list[Any]: ...

    @abc.abstractmethod
    async def fetchrow(self, sql: str, *args: Any) -> Any: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    @abc.abstractmethod
    async def execute(self, sql: str | tuple[str, ...], *args: Any) -> int:
        """Run the statement(s); the row count of the last."""

    #: The driver's error for a statement the database refused (a failed migration).
    refused: type[Exception] | tuple[type[Exception], ...] = ()

    @abc.abstractmethod
    async def script(self, text: str) -> None:
        """Run a script of statements without parameters (a migration)."""

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


async def migrate(tx: Tx, q: Queries, components: Sequence[SchemaComponent],
                  legacy: Legacy | None) -> dict[str, int]:
    """Create or upgrade ``components`` to their latest version (legacy migrations first, for a
    database with a single-track version) in ``tx``; the component versions found before.
    SchemaError if the schema is newer than this code or a migration fails (the caller rolls
    ``tx`` back: nothing was changed). The dialect's queries: ``prepare_schema`` (makes the
    version tables, and on Postgres serialises migrations across processes), the versions' reads
    and writes."""
    await tx.execute(q.prepare_schema)
    version = await tx.fetchval(q.schema_version) or 0
    if version > PER_COMPONENT:
        raise newer_schema(version)
    found: dict[str, int] = {}
    if version == PER_COMPONENT:
        found = dict(await tx.fetch(q.component_versions))
    elif version:
        scripts, found = legacy_steps(version, legacy, components)
        for number, script in scripts:
            await _run_migration(tx, f"legacy {number}", script, legacy.backfills.get(number))
    for name, number, script in component_steps(found, components):
        await _run_migration(tx, f"{name} {number}", script)
        await tx.execute(q.set_component_version, name, number)
    if version != PER_COMPONENT:
        for name, number in found.items():  # the component versions a legacy database is at now
            await tx.execute(q.keep_component_version, name, number)
        await tx.execute(q.set_schema_version.format(version=PER_COMPONENT))
    return found


async def _run_migration(tx: Tx, which: str, script: str,
                         backfill: Callable[[Tx], Awaitable[None]] | None = None) -> None:
    try:
        await tx.script(script)
        if backfill is not None:
            await backfill(tx)
    except (tx.refused, UniqueViolation) as exc:
        raise SchemaError(f"Migration {which} failed (nothing was changed): {exc}") from exc


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
        if not self._wakeups:  # nobody listens (no ticker in this process): skip the copy
            return
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
_CAUSES = {cause.value: cause for cause in FailureCause}


class JobCore(abc.ABC):
    """The job store's cold paths over a dialect's transactions and named queries."""

    #: Short dialect name, e.g. ``"sqlite"`` or ``"postgres"``.
    name: str = "abstract"
    q: Queries

    def __init__(self, clock: NowFunction = utcnow):
        self.now = clock
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
        """Now, aware in UTC. The clock is trusted to be aware: this runs on every call, so it
        skips the checks that inputs get."""
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

    # --- working jobs: the rules here, the statements (hot paths) in the dialect ----------------

    async def claim(self, owner: str, limit: int, lease_seconds: float, *,
                    queues: Sequence[str] | None = None,
                    due_by: datetime | None = None) -> list[Job]:
        owner, limit, lease_seconds, names = check_claim(owner, limit, lease_seconds, queues)
        now = self._now()
        due = now if due_by is None else check_time(due_by, "due_by")
        if limit == 0 or names == []:
            await trio.lowlevel.checkpoint()
            return []
        return await self._claim_due(owner, limit, now, now + timedelta(seconds=lease_seconds),
                                     due, names)

    async def heartbeat(self, owner: str, job_ids: Sequence[int],
                        lease_seconds: float) -> list[int]:
        owner, ids, lease_seconds = check_heartbeat(owner, job_ids, lease_seconds)
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        lease_until = self._now() + timedelta(seconds=lease_seconds)
        return held_in_order(ids, await self._extend_leases(owner, ids, lease_until))

    async def settle(self, owner: str, outcomes: Sequence[Outcome]) -> list[SettleResult]:
        owner, checked = check_owner(owner), check_outcomes(outcomes)
        if not checked:
            await trio.lowlevel.checkpoint()
            return []
        return await self._apply_outcomes(owner, checked, self._now())

    async def next_due(self, queues: Sequence[str] | None = None) -> datetime | None:
        names = check_queues(queues)
        if names == []:
            await trio.lowlevel.checkpoint()
            return None
        return await self._earliest_due(names)

    @abc.abstractmethod
    async def _claim_due(self, owner: str, limit: int, now: datetime, lease_until: datetime,
                         due: datetime, queues: list[str] | None) -> list[Job]:
        """Claim up to ``limit`` jobs due by ``due`` of ``queues`` (None: all) but paused ones."""

    @abc.abstractmethod
    async def _extend_leases(self, owner: str, ids: list[int], lease_until: datetime) -> set[int]:
        """Extend the leases ``owner`` holds among ``ids``; the ids of those extended."""

    @abc.abstractmethod
    async def _apply_outcomes(self, owner: str, outcomes: list[Outcome],
                              now: datetime) -> list[SettleResult]:
        """Settle checked outcomes (at least one), see :meth:`Store.settle`."""

    @abc.abstractmethod
    async def _earliest_due(self, queues: list[str] | None) -> datetime | None:
        """The earliest run_at of a pending job of ``queues`` (None: all) but paused ones."""

    async def release_expired(self) -> ExpiredLeases:
        """See :meth:`Store.release_expired`: the dialect's ``release_expired`` query records
        each expired attempt and hands its job back, or dead-letters it on its last attempt,
        returning (id, new state) rows."""
        now = self._now()

        async def release(tx: Tx) -> ExpiredLeases:
            rows = await tx.fetch(self.q.release_expired, self._to_db(now), EXPIRED_ERROR)
            rows = sorted(map(tuple, rows))  # by id
            released = [row[0] for row in rows if row[1] == "pending"]
            tx.wake(now if released else None)
            dead = [row[0] for row in rows if row[1] == "dead"]
            return ExpiredLeases(released=released, dead=dead)

        return await self._write_tx(release)

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


__all__ = ["JobCore", "Tx", "Queries", "Feeds", "load_queries", "migration_files", "run_now",
           "SchemaComponent", "Legacy", "PER_COMPONENT", "migrate", "component_steps",
           "legacy_steps", "UniqueViolation", "check", "check_struct", "check_time", "check_ids",
           "check_queues", "check_owner", "check_claim", "check_heartbeat", "check_outcomes",
           "held_in_order", "outcome_row", "keyable", "KEY_SHIFT", "claimed_jobs",
           "settle_in_order", "not_found"]
