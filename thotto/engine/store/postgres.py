"""The Postgres job store: asyncpg on the asyncio sidecar, for several processes sharing the work.

The product's store (:class:`thotto.store.postgres.PostgresStore`) is this one with the
product's tables. What both dialects share is in :mod:`thotto.engine.store.core`, with this
dialect's SQL in ``sql/queries_postgres.sql``: here are the connections (pool, listener), the
core's transactions on them and the hot paths' statements.

Every store call is one hop to the sidecar (:mod:`thotto.aio`) and, on the hot paths, one SQL
statement, so it commits on its own without BEGIN/COMMIT round trips:

* claims are one ``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED))``, so
  processes never hold the same job;
* settles and batch enqueues pass columns as arrays (``unnest``), or as one scalar when a column
  is the same for the whole batch: one statement per batch;
* concurrent single ``enqueue`` calls are coalesced into one multi-row insert per hop (group
  commit, :class:`thotto.aio.Coalescer`), each caller still getting its own result;
* wake-ups: every write that may make a job due sooner runs ``pg_notify('thotto_wakeup', ...)``
  with the earliest run_at in its own transaction; each store LISTENs on a dedicated connection
  (reconnected if it drops), skips its own notifications and wakes its own iterators directly.

"Now" is always the store's clock, passed as a parameter: SQL ``now()`` never decides a job's or a
record's time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import itertools
import logging
import operator
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import msgspec
import outcome
import trio

from thotto.engine.aio import Coalescer, Sidecar, SidecarClosed, open_sidecar
from thotto.engine.errors import StoreError, StoreUnavailable, ThottoError
from thotto.engine.jobs import (
    UTC,
    EnqueueResult,
    Job,
    NewJob,
    Outcome,
    SettleResult,
    SettleStatus,
    as_utc,
    utcnow,
    validated,
    validated_jobs,
)
from thotto.engine.store.base import NowFunction, check_broadcast
from thotto.engine.store.core import (
    EPOCH,
    KEY_SHIFT,
    ONE_US,
    SchemaComponent,
    JobCore,
    Legacy,
    Tx,
    UniqueViolation,
    claimed_jobs,
    keyable,
    load_queries,
    migration_files,
    migrate as migrate_schema,
    outcome_row,
    settle_in_order,
)

log = logging.getLogger("thotto.store.postgres")

T = TypeVar("T")

#: The job tables' migrations, by number.
JOBS = SchemaComponent("jobs", migration_files("thotto.engine.store", "postgres"))
WAKEUP_CHANNEL = "thotto_wakeup"
#: Store.broadcast's channel: "<instance> <base64 message>".
BROADCAST_CHANNEL = "thotto_broadcast"
DEADLOCK_RETRIES = 3
_REQUEUES = frozenset({"retry", "deferred", "released"})

# --- SQL of the hot paths -----------------------------------------------------------------------
# The statements are in sql/queries_postgres.sql ("hot paths"); some are templates filled here.

QUERIES = load_queries("thotto.engine.store", "queries_postgres.sql")


# Wake-ups ride in the statement that makes jobs due: a MATERIALIZED CTE runs pg_notify exactly
# once, joined to the statement's input so it cannot be skipped; the notification is delivered at
# commit, with the write. (A statement trigger with a transition table would catch every write,
# but copies every inserted or claimed row for it.) The payload, computed by the store, is
# "<store instance> <earliest run_at in microseconds since the epoch>".
def _notify_cte(param: int) -> str:
    return f"n AS MATERIALIZED (SELECT pg_notify('{WAKEUP_CHANNEL}', ${param}::text))"


SQL_NOTIFY = QUERIES.notify

# Without dedupe keys: a plain INSERT ... SELECT. A column whose values are all equal in the batch
# (often queue, kind, priority, max_attempts, and run_at/created_at when "now") is sent as one
# scalar instead of an array: array elements cost 0.3-1.5 µs each to encode and decode here, as
# much as inserting the row. RETURNING yields rows in insertion order, which is the scan order of
# unnest (or generate_series), i.e. input order.
_INSERT_COLUMNS = (
    ("queue", "text"),
    ("kind", "text"),
    ("payload", "bytea"),
    ("priority", "int"),
    ("run_at", "timestamptz"),
    ("max_attempts", "int"),
    ("created_at", "timestamptz"),
)


@functools.lru_cache(maxsize=None)
def _insert_sql(scalar: tuple[bool, ...]) -> str:
    """The insert statement for a batch whose columns are scalars (True) or arrays (False).

    Parameters: one per column in ``_INSERT_COLUMNS`` order, then the row count if every column
    is a scalar, then the NOTIFY payload.
    """
    values, arrays, names = [], [], []
    number = 0
    for (name, type_), is_scalar in zip(_INSERT_COLUMNS, scalar, strict=True):
        number += 1
        if is_scalar:
            values.append(f"${number}::{type_}")
        else:
            values.append(f"t.{name}")
            arrays.append(f"${number}::{type_}[]")
            names.append(name)
    if arrays:
        source = f"unnest({', '.join(arrays)}) AS t({', '.join(names)})"
    else:
        number += 1
        source = f"generate_series(1, ${number}::int) AS t"
    return f"""
WITH {_notify_cte(number + 1)}
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at)
SELECT {', '.join(values)} FROM {source} CROSS JOIN n
RETURNING id
"""


SQL_INSERT_JOBS_DEDUPE = QUERIES.insert_jobs_dedupe
SQL_FIND_LIVE_BY_KEY = QUERIES.find_live_by_key
SQL_NEXT_DUE = QUERIES.next_due.format(queues="")
SQL_NEXT_DUE_QUEUES = QUERIES.next_due.format(queues="AND queue = ANY($1::text[])")
SQL_CLAIM = QUERIES.claim.format(queues="")
SQL_CLAIM_QUEUES = QUERIES.claim.format(queues="AND queue = ANY($6::text[])")
SQL_HEARTBEAT = QUERIES.heartbeat
SQL_SETTLE = QUERIES.settle.format(notify="", join="")
SQL_SETTLE_NOTIFY = QUERIES.settle.format(notify=_notify_cte(9) + ",", join="CROSS JOIN n")
SQL_COMPLETE = QUERIES.complete
SQL_COMPLETED_ALREADY = QUERIES.completed_already

#: How long the enqueue flusher keeps its pool connection after the last enqueue, waiting for the
#: next: a caller enqueueing in a loop then skips a checkout per call (~60 µs of a ~500 µs insert)
#: while holding one connection of the pool, and only that long.
ENQUEUE_LINGER_SECONDS = 0.05

# --- errors ----------------------------------------------------------------------------------

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg says "connection is closed" / "connection was closed in the middle of operation"
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, without user or password, for messages."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "<unparseable DSN>"
    return f"{host}:{port}{parts.path or '/'}"


# --- small helpers -----------------------------------------------------------------------------


def _claimed_jobs(columns: Any, owner: str, lease_until: datetime) -> list[Job]:
    """The Job records of a claim's row of column arrays (see the claim query), in claim order
    (the arrays come from a sorted subquery, which Postgres keeps in practice but does not
    promise: checked, and sorted if ever needed)."""
    if columns[0] is None:
        return []
    jobs = claimed_jobs(columns, owner, lease_until)
    order = list(zip(columns[5], map(operator.neg, columns[4]), columns[0]))
    if not all(map(operator.le, order, itertools.islice(order, 1, None))):
        jobs.sort(key=lambda job: (job.run_at, -job.priority, job.id))
    return jobs


class _JobColumns:
    """Jobs to insert as columns (the statement takes one array per column)."""

    __slots__ = ("queue", "kind", "payload", "priority", "run_at", "max_attempts", "dedupe_key",
                 "created_at")  # fmt: skip

    def __init__(self, *columns: Any):
        (self.queue, self.kind, self.payload, self.priority, self.run_at, self.max_attempts,
         self.dedupe_key, self.created_at) = columns  # fmt: skip

    @classmethod
    def of_jobs(cls, jobs: Sequence[NewJob], now: datetime) -> _JobColumns:
        """Validated jobs enqueued together at ``now``."""
        run_at = [
            now if job.run_at is None
            else job.run_at if job.run_at.tzinfo is UTC else as_utc(job.run_at)
            for job in jobs
        ]  # fmt: skip
        return cls(
            [job.queue for job in jobs],
            [job.kind for job in jobs],
            [job.payload for job in jobs],
            [job.priority for job in jobs],
            run_at,
            [job.max_attempts for job in jobs],
            [job.dedupe_key for job in jobs],
            now,
        )

    @classmethod
    def of_rows(cls, rows: list[tuple[Any, ...]]) -> _JobColumns:
        """Rows as single enqueues build them, each with its own created_at."""
        columns = [list(column) for column in zip(*rows)]
        created_at = columns[7]
        if created_at.count(created_at[0]) == len(created_at):
            columns[7] = created_at[0]
        return cls(*columns)

    def insert_statement(self) -> tuple[str, list[Any]]:
        """The statement (see :func:`_insert_sql`) and its arguments, less the NOTIFY payload."""
        columns = (self.queue, self.kind, self.payload, self.priority, self.run_at,
                   self.max_attempts, self.created_at)  # fmt: skip
        count = len(self.run_at)
        scalar = []
        args: list[Any] = []
        for column in columns:
            if not isinstance(column, list):
                scalar.append(True)
                args.append(column)
            elif column.count(column[0]) == count:
                scalar.append(True)
                args.append(column[0])
            else:
                scalar.append(False)
                args.append(column)
        if all(scalar):
            args.append(count)
        return _insert_sql(tuple(scalar)), args


def _affected(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3`` (0 for ``CREATE TABLE``)."""
    count = status.split()[-1]
    return int(count) if count.isdigit() else 0


# --- the store -----------------------------------------------------------------------------------


class _PostgresTx(Tx):
    """The core's transaction on a pooled connection (on the sidecar's loop)."""

    refused = asyncpg.PostgresError

    def __init__(self, conn: asyncpg.Connection):
        super().__init__()
        self._conn = conn

    async def fetch(self, sql: str | tuple[str, ...], *args: Any) -> list[Any]:
        return await self._run(sql, args, self._conn.fetch)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str | tuple[str, ...], *args: Any) -> int:
        return _affected(await self._run(sql, args, self._conn.execute))

    async def script(self, text: str) -> None:
        await self._conn.execute(text)

    async def _run(self, sql: str | tuple[str, ...], args: tuple, last: Callable[..., Any]) -> Any:
        """The statements in order, the last one by ``last``; a unique constraint's refusal is
        a UniqueViolation."""
        *before, final = (sql,) if isinstance(sql, str) else sql
        try:
            for statement in before:
                await self._conn.execute(statement, *args)
            return await last(final, *args)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc


class PostgresJobStore(JobCore):
    """The job store on Postgres (asyncpg via the asyncio sidecar).

    Open it with :func:`open_postgres_job_store`, which also closes it: background tasks stop, the
    pool and the listener connection close, and a sidecar it started is stopped; closing is
    shielded from cancellation and idempotent.
    """

    name = "postgres"
    q = QUERIES
    #: The schema's parts, in order, and the single-track history before them (a product's).
    components: tuple[SchemaComponent, ...] = (JOBS,)
    legacy: Legacy | None = None
    #: The tables ``tidy`` vacuums.
    tables: tuple[str, ...] = ("jobs", "job_attempts")

    def __init__(
        self,
        dsn: str,
        *,
        sidecar: Sidecar,
        clock: NowFunction = utcnow,
        pool_size: int = 10,
        enqueue_flushers: int = 1,
    ):
        super().__init__(clock)
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self._sidecar = sidecar
        self._pool_size = pool_size
        self._instance = uuid.uuid4().hex
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._job_shapes: set[tuple[Any, ...]] = set()
        self._listen_task: asyncio.Task[None] | None = None
        self._closed = False
        self._close_done: trio.Event | None = None
        # Concurrent single enqueues share one multi-row insert per hop (group commit).
        self._enqueuer: Coalescer[tuple[Any, ...], EnqueueResult] = Coalescer(
            sidecar,
            self._insert_rows,
            max_flushes=enqueue_flushers,
            retry_singly=lambda error: not _is_unavailable(error),
            on_results=self._wake_for_enqueued,
            session=self._checkout,
            alive=lambda conn: not conn.is_closed(),
            linger=ENQUEUE_LINGER_SECONDS,
        )

    # --- plumbing -----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One hop to the sidecar, with driver errors wrapped in thotto.errors."""
        if self._closed:
            raise StoreUnavailable("The Postgres store is closed")
        for retry in range(DEADLOCK_RETRIES, -1, -1):
            try:
                return await self._sidecar.run(fn, *args)
            except SidecarClosed as exc:
                raise StoreUnavailable(f"The Postgres store is closed: {exc}") from exc
            except ThottoError:
                raise
            except asyncpg.DeadlockDetectedError as exc:
                # Two batches locking shared rows in different orders (a heartbeat and a settle
                # of one owner, say): Postgres aborted this one's transaction, so it is clean to
                # run again.
                if not retry:
                    raise self._wrap(exc) from exc
                log.info("Deadlock detected in %s; retrying", getattr(fn, "__name__", fn))
            except Exception as exc:
                raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def _wrap(self, exc: BaseException) -> StoreError:
        """The StoreError for a driver error (StoreUnavailable when the database is out of
        reach); a new instance of a Thotto error (callers may share the original)."""
        if isinstance(exc, SidecarClosed):
            return StoreUnavailable(f"The Postgres store is closed: {exc}")
        if isinstance(exc, ThottoError):
            try:
                return type(exc)(str(exc))  # type: ignore[return-value]
            except TypeError:
                return StoreError(str(exc))
        if _is_unavailable(exc):
            return StoreUnavailable(
                f"Postgres at {self._where} is unavailable ({type(exc).__name__}: {exc}); "
                "the operation may be retried"
            )
        return StoreError(f"Postgres error ({type(exc).__name__}): {exc}")

    def _wake_from_loop(self, when: datetime | None) -> None:
        """Loop thread: wake this store's iterators. Queued to Trio before the reply of the call
        that made the write, so a caller sees its wake-up as soon as its call returns."""
        if when is not None:
            self._sidecar.run_in_trio(self._dispatch_wake, when)

    def _payload(self, when: datetime) -> str:
        """The NOTIFY payload announcing ``when``: this store's instance and the time in µs."""
        return f"{self._instance} {(when - EPOCH) // ONE_US}"

    def _dispatch_wake(self, when: datetime) -> None:
        self._feeds.wake(when)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        assert self._pool is not None
        return await self._pool.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        assert self._pool is not None
        return await self._pool.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        assert self._pool is not None
        return await self._pool.fetchval(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> str:
        assert self._pool is not None
        return await self._pool.execute(sql, *args)

    # --- lifecycle ----------------------------------------------------------------------

    def _connect_kwargs(self, application_name: str = "thotto") -> dict[str, Any]:
        return {
            "timeout": 10,
            # Room for every shape of batch insert (see _insert_sql) besides the rest.
            "statement_cache_size": 300,
            "server_settings": {
                "application_name": application_name,
                # JIT compiling a batch statement costs more than it saves here.
                "jit": "off",
                # With stale statistics (a queue table grows from empty in seconds) the planner
                # picks bitmap scans that read and sort every due job to claim a thousand; the
                # ordered index scans our statements are written for are always fine.
                "enable_bitmapscan": "off",
            },
        }

    async def _open_in_loop(self) -> None:
        """Loop thread: create the pool, migrate, connect the listener."""
        kwargs = self._connect_kwargs()
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=min(2, self._pool_size),
            max_size=self._pool_size,
            reset=_keep_session,
            **kwargs,
        )
        try:
            await pool  # connects min_size connections; cancellable
            async with pool.acquire() as conn:
                await migrate(conn, self.components, self.legacy)
            self._listener = await self._connect_listener()
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._listen_task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _connect_listener(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, **self._connect_kwargs("thotto-listener"))
        try:
            await conn.add_listener(WAKEUP_CHANNEL, self._on_notify)
            await conn.add_listener(BROADCAST_CHANNEL, self._on_broadcast)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """Loop thread: a NOTIFY from some store's write; skip our own (woken directly)."""
        instance, _, micros = payload.partition(" ")
        if instance == self._instance:
            return
        try:
            when = EPOCH + timedelta(microseconds=int(micros))
        except ValueError:
            log.warning("Ignoring malformed wake-up notification %r", payload)
            return
        self._sidecar.run_in_trio(self._dispatch_wake, when)

    async def _listen_forever(self) -> None:
        """Loop thread: keep the LISTEN connection alive; reconnect (with backoff) when it drops.

        Notifications sent while it was down are lost, so after reconnecting it wakes the
        iterators with the earliest pending run_at, which covers them.
        """
        delay = 0.05
        while True:
            conn = self._listener
            try:
                if conn is None or conn.is_closed():
                    self._listener = None
                    conn = self._listener = await self._connect_listener()
                    due = await conn.fetchval("SELECT min(run_at) FROM jobs WHERE state = 'pending'")
                    log.info("Reconnected the wake-up listener to %s", self._where)
                    self._wake_from_loop(due)
                    # Broadcasts sent while it was down are lost: say so.
                    self._sidecar.run_in_trio(self._feeds.deliver, None)
                delay = 0.05
                await _wait_closed(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the loop retries
                log.warning("Wake-up listener on %s failed (%s); retrying in %.2fs", self._where,
                            exc, delay)
                if conn is not None:
                    conn.terminate()
                self._listener = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _close_in_loop(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 2)
            listener.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            await _close_pool(pool)

    async def _open(self) -> None:
        try:
            await self._sidecar.run(self._open_in_loop)
        except ThottoError:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"Cannot open the Postgres store at {self._where}: {type(exc).__name__}: {exc}. "
                "Check that the server is running and the URL (host, port, database, user) is "
                "right."
            ) from exc

    async def aclose(self) -> None:
        """Stop background tasks, end wake-up iterators, close the listener and the pool.

        Idempotent; shielded, so it completes when the caller is cancelled. A sidecar opened by
        :func:`open_postgres_store` is stopped by it after this.
        """
        with trio.CancelScope(shield=True):
            if self._close_done is not None:
                await self._close_done.wait()
                return
            self._close_done = trio.Event()
            self._closed = True
            try:
                await self._enqueuer.aclose()
                self._feeds.close()
                if self._sidecar.running:
                    with contextlib.suppress(SidecarClosed):
                        await self._sidecar.run(self._close_in_loop)
            finally:
                self._close_done.set()


    # --- the core's transactions -------------------------------------------------------------

    async def _read_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._run(self._in_transaction, fn, False)

    async def _write_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._run(self._in_transaction, fn, True)

    async def _in_transaction(self, fn: Callable[[Tx], Awaitable[T]], write: bool) -> T:
        """Loop thread: ``fn`` in one transaction (a read sees one snapshot); a write's wake-up
        is announced in it (NOTIFY, delivered at commit) and to this store's own iterators."""
        assert self._pool is not None
        isolation = "read_committed" if write else "repeatable_read"
        async with self._pool.acquire() as conn:
            tx = _PostgresTx(conn)
            async with conn.transaction(isolation=isolation, readonly=not write):
                result = await fn(tx)
                if tx.earliest is not None:
                    await conn.execute(SQL_NOTIFY, self._payload(tx.earliest))
        self._wake_from_loop(tx.earliest)
        return result

    @staticmethod
    def _to_db(when: datetime) -> datetime:
        return when

    @staticmethod
    def _from_db(value: datetime | None) -> datetime | None:
        return value

    @staticmethod
    def _json(value: Any) -> str:
        return msgspec.json.encode(value).decode()

    @staticmethod
    def _param(number: int) -> str:
        return f"${number}"

    # --- the hot paths (per dialect: see docs/architecture.md, "Storage") ---------------------

    # --- enqueueing -----------------------------------------------------------------------

    def _validated_job(self, job: NewJob) -> NewJob:
        """validated(job), skipping the full check for a shape of job seen before.

        Hot callers enqueue the same queue/kind/limits over and over; as in
        :func:`~thotto.messages.validated_jobs`, each distinct shape is validated fully once (a
        few µs), then only the per-job checks remain.
        """
        if type(job) is not NewJob:
            return validated(job)
        shape = (job.queue, job.kind, job.priority, job.max_attempts, job.dedupe_key,
                 type(job.payload), job.run_at is None or job.run_at.tzinfo is not None)  # fmt: skip
        if shape not in self._job_shapes:
            job = validated(job)
            if len(self._job_shapes) >= 4096:
                self._job_shapes.clear()
            self._job_shapes.add(shape)
        return job

    async def enqueue(self, job: NewJob) -> EnqueueResult:
        job = self._validated_job(job)
        now = self.now()
        run_at = now if job.run_at is None else as_utc(job.run_at)
        row = (job.queue, job.kind, job.payload, job.priority, run_at, job.max_attempts,
               job.dedupe_key, now)  # fmt: skip
        if self._closed:
            raise StoreUnavailable("The Postgres store is closed")
        try:
            result = await self._enqueuer.submit(row)
        except SidecarClosed as exc:
            raise StoreUnavailable(f"The Postgres store is closed: {exc}") from exc
        if isinstance(result, outcome.Error):
            raise self._wrap(result.error) from result.error
        return result.unwrap()

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        jobs = list(jobs)
        if not jobs:
            await trio.lowlevel.checkpoint()
            return []
        validated_jobs(jobs)
        return await self._run(self._insert_jobs, _JobColumns.of_jobs(jobs, self.now()))

    def _checkout(self) -> Any:
        """Loop thread: a pool connection for the enqueue flusher, kept while it lingers."""
        assert self._pool is not None
        return self._pool.acquire()

    async def _insert_rows(self, rows: list[tuple[Any, ...]], conn: asyncpg.Connection) -> list[EnqueueResult]:
        """Loop thread: the group commit of single enqueues (rows as built by enqueue), on the
        flusher's connection. Its wake-up is announced in Trio with the replies (see
        _wake_for_enqueued)."""
        return await self._insert_jobs_on(conn, _JobColumns.of_rows(rows), wake_here=False)

    def _wake_for_enqueued(self, results: list[outcome.Outcome[EnqueueResult]]) -> None:
        """Trio thread: wake this store's iterators for the jobs a group commit of single
        enqueues created, in the hand-off that brings their replies (a separate one from the
        loop cost a second thread wake-up per enqueue). Runs before the callers resume, so a
        caller sees its wake-up as soon as its call returns, and also for cancelled callers."""
        created = [result.value.run_at for result in results
                   if isinstance(result, outcome.Value) and result.value.created]
        if created:
            self._feeds.wake(min(created))

    async def _insert_jobs(
        self, cols: _JobColumns, conn: asyncpg.Connection | None = None
    ) -> list[EnqueueResult]:
        """Loop thread: insert jobs in one statement; results in input order."""
        if conn is None:
            assert self._pool is not None
            async with self._pool.acquire() as acquired:
                return await self._insert_jobs_on(acquired, cols)
        return await self._insert_jobs_on(conn, cols)

    async def _insert_jobs_on(
        self, conn: asyncpg.Connection, cols: _JobColumns, *, wake_here: bool = True
    ) -> list[EnqueueResult]:
        """Loop thread: insert jobs in one statement (its NOTIFY wakes other processes); this
        store's iterators are woken from here, or by the caller when not ``wake_here``."""
        run_ats = cols.run_at
        head = (cols.queue, cols.kind, cols.payload, cols.priority, run_ats, cols.max_attempts)
        # Jobs deduplicated away make the announcement early, never late.
        payload = self._payload(min(run_ats))
        if cols.dedupe_key.count(None) == len(run_ats):
            sql, args = cols.insert_statement()
            ids = await conn.fetch(sql, *args, payload)
            if wake_here:
                self._wake_from_loop(min(run_ats))
            return [EnqueueResult(r[0], True, run_at) for r, run_at in zip(ids, run_ats)]
        created_at = cols.created_at
        if isinstance(created_at, datetime):
            created_at = [created_at] * len(run_ats)
        records = await conn.fetch(SQL_INSERT_JOBS_DEDUPE, *head, cols.dedupe_key, created_at,
                                   payload)  # fmt: skip
        results: list[EnqueueResult] = []
        created_by_key: dict[tuple[str, str], EnqueueResult] = {}
        earliest = None
        for queue, dedupe_key, record in zip(cols.queue, cols.dedupe_key, records):
            key = (queue, dedupe_key)
            if record["created"]:
                result = EnqueueResult(record["id"], True, record["run_at"])
                if dedupe_key is not None:
                    created_by_key[key] = result
                if earliest is None or result.run_at < earliest:
                    earliest = result.run_at
            elif record["existing_id"] is not None:
                result = EnqueueResult(record["existing_id"], False, record["existing_run_at"])
            elif key in created_by_key:
                first = created_by_key[key]
                result = EnqueueResult(first.job_id, False, first.run_at)
            else:
                # A live job with this key committed after our snapshot: look it up afresh.
                found = await conn.fetchrow(SQL_FIND_LIVE_BY_KEY, *key)
                if found is None:
                    raise StoreError(
                        f"Enqueue of a job with dedupe key {dedupe_key!r} in queue {queue!r} "
                        "lost a race with a concurrent writer; retry it"
                    )
                result = EnqueueResult(found[0], False, found[1])
            results.append(result)
        if wake_here:
            self._wake_from_loop(earliest)
        return results

    # --- working jobs ---------------------------------------------------------------------

    async def _claim_due(self, owner: str, limit: int, now: datetime, lease_until: datetime,
                         due: datetime, queues: list[str] | None) -> list[Job]:
        args = [due, limit, owner, lease_until, now, *([] if queues is None else [queues])]
        sql = SQL_CLAIM if queues is None else SQL_CLAIM_QUEUES
        return _claimed_jobs(await self._run(self._fetchrow, sql, *args), owner, lease_until)

    async def _extend_leases(self, owner: str, ids: list[int], lease_until: datetime) -> set[int]:
        records = await self._run(self._fetch, SQL_HEARTBEAT, owner, ids, lease_until)
        return {record[0] for record in records}

    async def _apply_outcomes(self, owner: str, outcomes: list[Outcome],
                              now: datetime) -> list[SettleResult]:
        rows = list(map(outcome_row, outcomes))
        statuses = await self._run(self._settle_in_loop, owner, now, rows)
        return [SettleResult(row[0], status) for row, status in zip(rows, statuses)]

    async def _settle_in_loop(
        self, owner: str, now: datetime, rows: list[tuple[Any, ...]]
    ) -> list[SettleStatus]:
        if len({row[0] for row in rows}) < len(rows):
            # The same job twice in one batch: one by one, in order, in one transaction, so a
            # repeat sees the first (ALREADY) as it would in two calls.
            return await self._in_transaction(
                lambda tx: settle_in_order(tx, QUERIES, self._to_db, owner, rows, now), True)
        statuses, wake = await self._settle_rows(owner, now, rows)
        self._wake_from_loop(wake)
        return statuses

    async def _settle_rows(
        self, owner: str, now: datetime, rows: list[tuple[Any, ...]]
    ) -> tuple[list[SettleStatus], datetime | None]:
        """Loop thread: settle outcomes of distinct jobs in one statement."""
        db = self._pool
        assert db is not None
        ids = [row[0] for row in rows]
        attempts = [row[1] for row in rows]
        if all(row[2] == "completed" for row in rows) and keyable(ids, attempts):
            keys = [job_id * KEY_SHIFT + attempt for job_id, attempt in zip(ids, attempts)]
            count, applied = await db.fetchrow(SQL_COMPLETE, owner, now, ids, keys)
            if count == len(rows):
                return [SettleStatus.OK] * len(rows), None
            done = set(applied or ())
            statuses = [SettleStatus.OK if job_id in done else SettleStatus.LEASE_LOST
                        for job_id in ids]
            for (ord_,) in await db.fetch(SQL_COMPLETED_ALREADY, owner, ids, attempts):
                if statuses[ord_ - 1] is SettleStatus.LEASE_LOST:
                    statuses[ord_ - 1] = SettleStatus.ALREADY
            return statuses, None
        columns = [list(column) for column in zip(*rows)]
        # Announce the earliest time these outcomes could make due; if some do not apply (lease
        # lost) the wake-up is merely early, which costs a listener one look.
        earliest = min(
            (now if row[2] == "released" else row[3] for row in rows if row[2] in _REQUEUES),
            default=None,
        )
        if earliest is None:
            records = await db.fetch(SQL_SETTLE, owner, now, *columns)
        else:
            records = await db.fetch(SQL_SETTLE_NOTIFY, owner, now, *columns,
                                     self._payload(earliest))  # fmt: skip
        statuses = [SettleStatus.LEASE_LOST] * len(rows)
        wake = None
        for ord_, status, when in records:
            statuses[ord_ - 1] = SettleStatus(status)
            if when is not None and (wake is None or when < wake):
                wake = when
        return statuses, wake

    async def tidy(self) -> None:
        # Plain VACUUM never blocks reads or writes; after a purge it makes the dead rows'
        # space reusable and refreshes statistics sooner than autovacuum would.
        for table in self.tables:
            await self._run(self._execute, f"VACUUM (ANALYZE) {table}")

    async def _earliest_due(self, queues: list[str] | None) -> datetime | None:
        # Written as the claim index's own order with LIMIT 1, so the plan is an index scan
        # whatever the statistics said when asyncpg prepared it: a plan cached while the table
        # was tiny (a seq scan) would otherwise read every pending row once it has grown.
        if queues is None:
            return await self._run(self._fetchval, SQL_NEXT_DUE)
        return await self._run(self._fetchval, SQL_NEXT_DUE_QUEUES, queues)

    # --- broadcasts ------------------------------------------------------------------------

    async def broadcast(self, message: bytes) -> None:
        payload = f"{self._instance} {base64.b64encode(check_broadcast(message)).decode()}"
        await self._run(self._execute, "SELECT pg_notify($1, $2)", BROADCAST_CHANNEL, payload)

    def _on_broadcast(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """Loop thread: another store's broadcast (our own are skipped)."""
        instance, _, encoded = payload.partition(" ")
        if instance == self._instance:
            return
        try:
            message = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            log.warning("Ignoring a malformed broadcast %r", payload[:100])
            return
        self._sidecar.run_in_trio(self._feeds.deliver, message)


# --- module helpers ------------------------------------------------------------------------------


async def migrate(conn: asyncpg.Connection, components: Sequence[SchemaComponent] = (JOBS,),
                  legacy: Legacy | None = None) -> dict[str, int]:
    """Create or upgrade ``components`` in one transaction (see :func:`core.migrate`); return
    the component versions found before."""
    async with conn.transaction():
        return await migrate_schema(_PostgresTx(conn), QUERIES, components, legacy)


async def _wait_closed(conn: asyncpg.Connection, ping_every: float = 10.0) -> None:
    """Loop thread: return when ``conn`` closes; ping it now and then to notice a dead peer."""
    closed = asyncio.get_running_loop().create_future()

    def on_close(_conn: Any) -> None:
        if not closed.done():
            closed.set_result(None)

    conn.add_termination_listener(on_close)
    try:
        while not closed.done() and not conn.is_closed():
            try:
                await asyncio.wait_for(asyncio.shield(closed), ping_every)
            except asyncio.TimeoutError:
                await conn.execute("SELECT 1", timeout=5)
    finally:
        conn.remove_termination_listener(on_close)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo. The store keeps no session state (no SET, cursors,
    session advisory locks or LISTEN on pooled connections; an open transaction is rolled back by
    asyncpg itself), so asyncpg's default reset query would only cost a round trip per call."""


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), 5)
    except BaseException:
        pool.terminate()
        raise


@contextlib.asynccontextmanager
async def open_postgres_job_store(
    dsn: str,
    *,
    clock: NowFunction = utcnow,
    sidecar: Sidecar | None = None,
    pool_size: int = 10,
    store_class: type[PostgresJobStore] | None = None,
) -> AsyncIterator[PostgresJobStore]:
    """Open the Postgres job store (or ``store_class``, one built on it) at ``dsn``
    (``postgresql://user@host:port/dbname``).

    Creates or migrates the schema, opens an asyncpg pool of up to ``pool_size`` connections and
    a LISTEN connection, on ``sidecar`` if given (shared, e.g. with the Redis client) or on a
    sidecar of its own. On exit (also by cancellation) everything it opened is closed.
    StoreUnavailable if the server cannot be reached; SchemaError if its schema is too new.
    """
    async with contextlib.AsyncExitStack() as stack:
        if sidecar is None:
            sidecar = await stack.enter_async_context(open_sidecar("thotto-postgres"))
        store = (store_class or PostgresJobStore)(dsn, sidecar=sidecar, clock=clock,
                                                  pool_size=pool_size)
        try:
            await store._open()
            yield store
        finally:
            await store.aclose()


__all__ = ["PostgresJobStore", "open_postgres_job_store", "migrate", "describe_dsn", "JOBS",
           "QUERIES"]
