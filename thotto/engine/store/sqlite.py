"""The SQLite job store: the embedded default (docs/architecture.md, "Storage").

The product's store (:class:`thotto.store.sqlite.SqliteStore`) is this one with the product's
tables. Layout of the dialect, top to bottom (what both dialects share is in
:mod:`thotto.engine.store.core`; the SQL is in ``sql/queries_sqlite.sql``):

* **Times**: INTEGER microseconds since the epoch (UTC) in the database; aware UTC datetimes out.
* **The writer**: one thread owns the one read-write ``sqlite3`` connection and applies *group
  commit*: it drains every queued request into one transaction and wakes all their callers with one
  ``run_sync_soon``. A request is a plain function of the connection.
* **The reader**: a second such thread on a read-only connection, for reads; WAL lets it read while
  the writer writes, so reads never wait behind a group commit.
* **The checkpointer**: a third thread copies the WAL into the database file, off the writer.
* **The lock**: one process per file (``fcntl.flock`` on ``<path>.lock``); a second open in the same
  process is refused too.
* **Schema**: each component's migrations (``sql/sqlite_0001_jobs.sql``..., then a product's),
  applied in order in one transaction on open (:func:`~thotto.engine.store.core.migrate`); the
  table ``schema_versions`` holds the version each component reached
  (:data:`~thotto.engine.store.core.PER_COMPONENT`).
* **SqliteJobStore**: the core's transactions run as functions of the connection on the writer or
  the reader; the hot paths' statements (enqueue, claim, heartbeat, settle, next_due) are this
  dialect's own code.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import operator
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import outcome
import trio

from thotto.engine.clock import tasks_runnable, wait_for_thread
from thotto.engine.errors import (
    ConfigError,
    StoreError,
    StoreLocked,
    StoreUnavailable,
)
from thotto.engine.errors import ValidationError
from thotto.engine.jobs import (
    UTC,
    Completed,
    EnqueueResult,
    Job,
    NewJob,
    Outcome,
    SettleResult,
    SettleStatus,
    utcnow,
    validated,
)
from thotto.engine.store.base import NowFunction, check_broadcast
from thotto.engine.store.core import (
    ATTEMPT,
    EPOCH,
    JOB_ID,
    KEY_SHIFT,
    ONE_US,
    SchemaComponent,
    JobCore,
    Legacy,
    Tx,
    UniqueViolation,
    check_time,
    claimed_jobs,
    keyable,
    load_queries,
    migration_files,
    migrate,
    outcome_row,
    run_now,
    settle_in_order,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The job tables' migrations, by number.
JOBS = SchemaComponent("jobs", migration_files("thotto.engine.store", "sqlite"))

#: The database's files and its lock are its owner's alone (thotto.files checks them at start).
OWNER_ONLY = 0o600
BUSY_TIMEOUT_MS = 5_000
WRITER_PRAGMAS = (
    "PRAGMA synchronous = NORMAL",  # WAL + NORMAL: durable across crashes of the process
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA cache_size = -65536",  # 64 MiB of page cache: the claim index and hot rows stay in it
    "PRAGMA temp_store = MEMORY",
    # The checkpointer thread copies the WAL into the database; this only bounds the WAL if it
    # falls behind (checkpointing in the writer cost 10-20% of claim and settle time here).
    "PRAGMA wal_autocheckpoint = 20000",
)
CHECKPOINT_PAUSE = 0.05  # seconds between checkpoints while writes keep coming

# --- times --------------------------------------------------------------------------------------


def _us(value: Any, field: str) -> int:
    """Microseconds since the epoch of an aware datetime; anything else is a ValidationError."""
    return (check_time(value, field) - EPOCH) // ONE_US


def _dt(us: int) -> datetime:
    """The aware UTC datetime of a stored microsecond count."""
    return EPOCH + ONE_US * us


# --- validation ----------------------------------------------------------------------------------

#: Shapes of jobs that passed validated(): bulk and repeated jobs share queue, kind, priority and
#: limits, so each shape is validated in full once (~3 µs) and then only looked up (~0.2 µs).
_VALID_JOB_SHAPES: set[tuple] = set()


def _job_row(job: Any, now: datetime, now_us: int) -> tuple[tuple, datetime]:
    """A validated job as an insert row, and its run_at (now when None)."""
    if type(job) is not NewJob:
        raise ValidationError(f"Expected NewJob, got {type(job).__name__}")
    shape = (job.queue, job.kind, job.priority, job.max_attempts, job.dedupe_key,
             type(job.payload), type(job.priority), type(job.max_attempts))
    if shape not in _VALID_JOB_SHAPES:
        validated(job)
        if len(_VALID_JOB_SHAPES) >= 10_000:
            _VALID_JOB_SHAPES.clear()
        _VALID_JOB_SHAPES.add(shape)
    run_at = job.run_at
    if run_at is None:
        run_at_us, run_at = now_us, now
    else:
        run_at_us, run_at = _us(run_at, "run_at"), run_at.astimezone(UTC)
    row = (job.queue, job.kind, job.payload, job.priority, run_at_us, job.max_attempts,
           job.dedupe_key, now_us)
    return row, run_at


# --- errors --------------------------------------------------------------------------------------

#: SQLite result codes meaning "the database cannot be used right now" (retrying may help).
_UNAVAILABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL",
                "SQLITE_PROTOCOL", "SQLITE_READONLY", "SQLITE_NOMEM"}


def _wrap(exc: sqlite3.Error) -> StoreError:
    """A Thotto error for a driver error, with the driver error as its cause."""
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    primary = "_".join(name.split("_")[:2])
    error_type = StoreUnavailable if primary in _UNAVAILABLE else StoreError
    error = error_type(f"SQLite failed ({name}): {exc}")
    error.__cause__ = exc
    return error


def _as_reply_error(exc: BaseException) -> BaseException:
    return _wrap(exc) if isinstance(exc, sqlite3.Error) else exc


# --- SQL -----------------------------------------------------------------------------------------
# The statements are named queries in sql/queries_sqlite.sql; the hot paths' are at its end (some
# are templates filled here).

QUERIES = load_queries("thotto.engine.store", "queries_sqlite.sql")
INSERT_COLUMNS = "queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at"
INSERT_JOB, INSERT_JOB_DEDUPED = QUERIES.insert_job, QUERIES.insert_job_deduped
LIVE_JOB_BY_KEY = QUERIES.live_job_by_key
INSERT_JSON, INSERT_JSON_SAME_TIMES = QUERIES.insert_json, QUERIES.insert_json_same_times
#: Rows per multi-row INSERT, for payloads that cannot travel as JSON text.
INSERT_CHUNKS = (256, 64, 16, 4, 1)
CLAIM_ROWS, CLAIM, HEARTBEAT = QUERIES.claim_rows, QUERIES.claim, QUERIES.heartbeat
COMPLETE_ALL, COMPLETE_MANY = QUERIES.complete_all, QUERIES.complete_many
NEXT_DUE = QUERIES.next_due


def _queue_filters(names: list[str] | None, paused: list[str], first: int = 1) -> str:
    """The filter for the queues ``names`` (None: every queue) but the ``paused`` ones, in a
    statement whose parameters from ?first on are the names, then the paused queues."""
    def numbers(start: int, count: int) -> str:
        return ", ".join(f"?{number}" for number in range(start, start + count))

    after = first + len(names or ())
    wanted = "" if names is None else f"AND queue IN ({numbers(first, len(names))}) "
    return wanted + (f"AND queue NOT IN ({numbers(after, len(paused))}) " if paused else "")


_INSERT_SQL = {
    size: f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * size)
    for size in INSERT_CHUNKS
}


_ENCODE = msgspec.json.Encoder().encode

# --- the process lock ----------------------------------------------------------------------------

_OPEN_IN_THIS_PROCESS: set[str] = set()


class _FileLock:
    """One process per database file: an exclusive ``flock`` on ``<path>.lock``, held until
    :meth:`release`. A second open of the same file in this process is refused as well."""

    def __init__(self, path: str):
        self.path = os.path.realpath(path)
        self.lock_path = self.path + ".lock"
        if self.path in _OPEN_IN_THIS_PROCESS:
            raise StoreLocked(
                f"The SQLite database {path} is already open in this process; open it once and "
                "share the store (one process, one store per file)"
            )
        self._fd = self._acquire(path)
        _OPEN_IN_THIS_PROCESS.add(self.path)

    def _acquire(self, path: str) -> int:
        try:
            os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, OWNER_ONLY)
        except OSError as exc:
            raise StoreUnavailable(f"Cannot create the lock file {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"Another process (pid {holder}) is using the SQLite database {path}: it holds "
                f"{self.lock_path}. Thotto runs one process per SQLite file; stop the other "
                "process, or use PostgreSQL to run several."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # only to name the holder in that message
        return fd

    def release(self) -> None:
        """Unlock (idempotent). The lock file stays: deleting it would race with a new opener."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
            _OPEN_IN_THIS_PROCESS.discard(self.path)


# --- opening and migrating ------------------------------------------------------------------------


def _create_private_file(path: str) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, so that SQLite, which writes
    it next, keeps that mode (and gives its WAL and SHM files the same)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, OWNER_ONLY))


def _connect_writer(path: str, components: Sequence[SchemaComponent],
                    legacy: Legacy | None) -> sqlite3.Connection:
    """The read-write connection, in WAL mode, with ``components`` migrated to their latest. A
    new database file is made 0600 first: SQLite gives its WAL and SHM files the same mode."""
    try:
        _create_private_file(path)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
    except (sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"Cannot open the SQLite database {path}: {exc}") from exc
    try:
        _prepare(conn, path)
        _migrate(conn, path, components, legacy)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        for pragma in WRITER_PRAGMAS:
            conn.execute(pragma)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable SQLite database: {exc}") from exc
    if mode.lower() != "wal":
        raise StoreError(f"Cannot put {path} in WAL mode (journal mode is {mode!r})")


def _migrate(conn: sqlite3.Connection, path: str, components: Sequence[SchemaComponent],
             legacy: Legacy | None) -> None:
    """Apply the migrations this database lacks (see :func:`core.migrate`) in one transaction."""
    for name, function in (legacy.functions if legacy else {}).items():
        conn.create_function(name, 1, function, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        run_now(migrate(_SqliteTx(conn), QUERIES, components, legacy))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect_reader(path: str) -> sqlite3.Connection:
    """A read-only connection (opened after the writer's, which made and migrated the file)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def _connect(path: str, components: Sequence[SchemaComponent],
             legacy: Legacy | None) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The writer's connection and the reader's."""
    writer = _connect_writer(path, components, legacy)
    try:
        return writer, _connect_reader(path)
    except sqlite3.Error as exc:
        writer.close()
        raise StoreUnavailable(f"Cannot open {path} for reading: {exc}") from exc


# --- the worker threads ---------------------------------------------------------------------------


class _Request:
    """One call: ``fn(conn)`` and the Trio task waiting for its result.

    ``task`` is cleared (on the Trio thread) when the caller is cancelled, so the reply is
    dropped. With ``wakes``, ``fn`` returns ``(result, run_at or None)`` and ``run_at`` feeds the
    wake-ups once the transaction commits. An ``urgent`` request (a claim: workers may be
    waiting for its jobs) runs and commits before the other requests of its round.
    """

    __slots__ = ("fn", "task", "wakes", "urgent", "reply", "wake")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], task: Any, wakes: bool, urgent: bool = False
    ):
        self.fn = fn
        self.task = task
        self.wakes = wakes
        self.urgent = urgent
        self.reply: outcome.Outcome | None = None
        self.wake: datetime | None = None


class _Batchable:
    """A write request the writer may run together with its neighbours of the same type.

    Calling it runs it alone; ``run_many`` runs several in one go (e.g. one INSERT for many
    single-job enqueues) and returns their results in order. If a batch fails, the round is run
    again with each request alone in its savepoint, so only the bad one fails.
    """

    __slots__ = ()

    def __call__(self, conn: sqlite3.Connection) -> Any:
        return type(self).run_many(conn, [self])[0]

    @classmethod
    def run_many(cls, conn: sqlite3.Connection, items: list[Any]) -> list[Any]:
        raise NotImplementedError


def _batch_at(group: list[_Request], start: int) -> list[_Request]:
    """The request at ``start`` and the batchable requests of the same type right after it."""
    kind = type(group[start].fn)
    end = start + 1
    if issubclass(kind, _Batchable):
        while end < len(group) and type(group[end].fn) is kind:
            end += 1
    return group[start:end]


def _stop(conn: sqlite3.Connection) -> None:
    """The request that stops a worker (it comes last: nothing is queued after it)."""


class _Worker:
    """A thread that owns one connection and runs requests in groups: the writer, or the reader.

    Each round it takes every queued request and runs them all in one transaction, then wakes
    every caller of the round with one ``run_sync_soon`` (a thread hand-off per round, not per
    request, is what makes this fast: ~50k reads/s against ~8k through ``trio.to_thread``).

    The writer (``begin="BEGIN IMMEDIATE"``, ``isolate=True``) is the group commit: requests run
    one after another without savepoints first; if one fails, the round is rolled back and run
    again with a ``SAVEPOINT`` around each request, so the failing one gets its exception and its
    neighbours still commit (failures are rare; savepoints would cost two statements per request
    on every round). After the commit it posts the round's earliest wake-up. The reader
    (``begin="BEGIN"``, read-only connection) gives each round one snapshot; a failing read
    only fails itself.

    Cancellation: a cancelled caller stops waiting at once; its write may still commit (Store
    writes are idempotent) and its reply is dropped. :meth:`stop` runs what is queued, closes
    the connection and ends the thread.
    """

    def __init__(
        self,
        name: str,
        conn: sqlite3.Connection,
        *,
        begin: str,
        isolate: bool,
        on_wake: Callable[[datetime], None] | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self._conn = conn
        self._begin = begin
        self._isolate = isolate
        self._on_wake = on_wake
        self._on_commit = on_commit
        self._token = trio.lowlevel.current_trio_token()
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        # Held by whichever thread is using the connection: the worker for each round, the
        # Trio thread for a write it runs itself (see call_here_if_alone).
        self._using = threading.Lock()
        # Calls waiting for the worker's reply (Trio thread only): while there are any, a
        # write has neighbours to commit with, whatever the queue shows at that instant.
        self._waiting = 0
        self._thread = threading.Thread(target=self._run, name=f"thotto-sqlite-{name}", daemon=True)
        self.closed = False
        self._thread.start()

    async def call(
        self, fn: Callable[[sqlite3.Connection], Any], wakes: bool = False, urgent: bool = False
    ) -> Any:
        """Run ``fn(conn)`` in the next round and return its result (or raise)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise StoreError("The SQLite store is closed")
        request = _Request(fn, trio.lowlevel.current_task(), wakes, urgent)
        self._queue.put(request)

        def abort(_: Any) -> trio.lowlevel.Abort:
            request.task = None  # the write may still commit; its reply will be dropped
            return trio.lowlevel.Abort.SUCCEEDED

        self._waiting += 1
        try:
            return await wait_for_thread(abort)
        finally:
            self._waiting -= 1

    async def call_here_if_alone(self, fn: Callable[[sqlite3.Connection], Any], wakes: bool) -> Any:
        """Like :meth:`call`, but run ``fn`` on the Trio thread, in a transaction of its own,
        when that is the faster way: no other Trio task is ready to run (so no neighbour to
        commit with, and nothing kept waiting for the few tens of µs a small write takes), no
        request is queued and the worker is between rounds. Otherwise the worker runs it.

        For one caller writing one row at a time, the two thread hand-offs of :meth:`call`
        (the worker woken, then Trio) cost ~90 µs on a 2-core machine, three times the commit
        itself; concurrent callers still reach the worker together and share its commits.
        """
        # With concurrent callers others are waiting on the worker: join them (cheapest test
        # first). Without the waiting count the last of 50 callers found the worker between
        # rounds and committed alone, once a round (2 % of writes, a sixth of their rate).
        if (self._waiting or self.closed or not self._queue.empty()
                or tasks_runnable()):
            return await self.call(fn, wakes)
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._using.acquire(blocking=False):
            return await self.call(fn, wakes)
        try:
            result = self._transaction_here(fn)
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc
        finally:
            self._using.release()
        if wakes:
            result, wake = result
            if wake is not None and self._on_wake is not None:
                self._on_wake(wake)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    def _transaction_here(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn`` alone in one transaction, on the calling thread (which holds ``_using``): the
        round of :meth:`_commit` for one request, without its bookkeeping (a fifth of a lone
        enqueue's time). A failure rolls back and raises."""
        conn = self._conn
        conn.execute(self._begin)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._abandon_transaction()
            raise
        if self._on_commit is not None:
            self._on_commit()
        return result

    async def stop(self) -> None:
        """Finish the queued requests, close the connection, end the thread. Call it shielded."""
        if not self.closed:
            self.closed = True
            request = _Request(_stop, trio.lowlevel.current_task(), False)
            self._queue.put(request)
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        await trio.to_thread.run_sync(self._thread.join)

    # -- in the worker thread --

    def _run(self) -> None:
        running = True
        while running:
            group = self._next_group()
            running = group[-1].fn is not _stop
            work = group if running else group[:-1]
            urgent = [request for request in work if request.urgent]
            if urgent and len(urgent) < len(work):
                # Claims first, committed and answered on their own: the workers start on the
                # claimed jobs while this thread writes the rest (queued requests are concurrent
                # calls, so any order of them is a valid one).
                self._serve(urgent)
                work = [request for request in work if not request.urgent]
            self._serve(work, None if running else group[-1])

    def _serve(self, work: list[_Request], stop: _Request | None = None) -> None:
        """Run ``work`` in one transaction and answer its callers (and ``stop``'s, after
        closing the connection)."""
        with self._using:
            try:
                self._commit(work)
            except BaseException as exc:  # a bug here must not kill the thread or strand callers
                log.exception("%s failed a group of %d requests", self._thread.name, len(work))
                self._fail(work, exc)
                self._abandon_transaction()
            if stop is not None:
                self._close(stop)
                work = [*work, stop]
        self._reply(work)

    def _next_group(self) -> list[_Request]:
        """Every queued request, waiting for the first one."""
        group = [self._queue.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                group.append(self._queue.get_nowait())
        return group

    def _abandon_transaction(self) -> None:
        """Roll back what a failed round left open, so the next round can BEGIN."""
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _close(self, stop: _Request) -> None:
        try:
            self._conn.close()
            stop.reply = outcome.Value(None)
        except BaseException as exc:  # reply anyway: aclose waits for this, shielded
            stop.reply = outcome.Error(_as_reply_error(exc))

    def _commit(self, group: list[_Request]) -> None:
        if not group:
            return
        if self._round(group, savepoints=False):
            return
        if len(group) == 1:  # its own rollback already isolated it
            return
        self._round(group, savepoints=True)

    def _round(self, group: list[_Request], savepoints: bool) -> bool:
        """Run the group in one transaction. False: a request failed without savepoints and the
        round was rolled back (run it again with savepoints)."""
        conn = self._conn
        try:
            conn.execute(self._begin)
        except sqlite3.Error as exc:
            self._fail(group, exc)
            return True
        start = 0
        while start < len(group):
            # With savepoints, each request runs alone: that is how a failure is isolated.
            batch = [group[start]] if savepoints else _batch_at(group, start)
            start += len(batch)
            if self._apply(conn, batch, savepoints):
                continue
            if not conn.in_transaction:  # SQLite rolled everything back itself (I/O, full)
                self._fail(group, batch[0].reply.error)
                return True
            if self._isolate and not savepoints:
                conn.execute("ROLLBACK")
                return len(group) == 1  # a lone request's error is final as it is
        return self._finish(conn, group)

    def _apply(self, conn: sqlite3.Connection, batch: list[_Request], savepoint: bool) -> bool:
        """Run one request, or a run of batchable ones together; False if it failed."""
        if savepoint:
            conn.execute("SAVEPOINT request")
        try:
            if len(batch) == 1:
                results = [batch[0].fn(conn)]
            else:
                results = type(batch[0].fn).run_many(conn, [request.fn for request in batch])
        except BaseException as exc:
            self._fail(batch, exc)
            if savepoint and conn.in_transaction:
                conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")
            return False
        if savepoint:
            conn.execute("RELEASE request")
        for request, result in zip(batch, results):
            if request.wakes:
                result, request.wake = result
            request.reply = outcome.Value(result)
        return True

    def _finish(self, conn: sqlite3.Connection, group: list[_Request]) -> bool:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._fail(group, exc)
        else:
            if self._on_commit is not None:
                self._on_commit()
        return True

    def _fail(self, group: list[_Request], exc: BaseException) -> None:
        error = _as_reply_error(exc)
        for request in group:
            request.reply = outcome.Error(error)
            request.wake = None

    def _reply(self, group: list[_Request]) -> None:
        wakes = [request.wake for request in group if request.wake is not None]
        try:
            self._token.run_sync_soon(self._deliver, group, min(wakes) if wakes else None)
        except trio.RunFinishedError:
            pass  # the Trio run ended: nobody is waiting any more
        except BaseException:  # never leave the thread: later callers would wait forever
            log.exception("%s could not wake %d callers", self._thread.name, len(group))

    # -- back on the Trio thread --

    def _deliver(self, group: list[_Request], wake: datetime | None) -> None:
        for request in group:
            task = request.task
            if task is not None:
                request.task = None
                trio.lowlevel.reschedule(task, request.reply)
        if wake is not None and self._on_wake is not None:
            self._on_wake(wake)


class _Checkpointer:
    """Copies the WAL back into the database file from its own thread and connection
    (``wal_checkpoint(PASSIVE)``: it never blocks the writer or the readers).

    The writer calls :meth:`poke` after each commit; the checkpointer runs at most every
    :data:`CHECKPOINT_PAUSE` seconds. :meth:`stop` closes its connection, which, as the last one
    open, checkpoints the whole WAL and removes it.
    """

    def __init__(self, path: str):
        self._path = path
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="thotto-sqlite-checkpointer", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        if not self._wanted.is_set():
            self._wanted.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:  # the writer's own autocheckpoint still bounds the WAL
            log.warning("SQLite checkpointer could not connect; the writer checkpoints instead",
                        exc_info=True)
            return
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    break
                self._wanted.clear()
                self._checkpoint(conn)
                # Let commits pile up (fewer, larger checkpoints), but wake at once to stop.
                self._stopping.wait(CHECKPOINT_PAUSE)
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # e.g. disk full: the next poke tries again
            log.warning("SQLite checkpoint failed", exc_info=True)

    async def stop(self) -> None:
        """Stop the thread and close its connection. Call it shielded, after the writer stopped."""
        self._stopping.set()
        self._wanted.set()
        await trio.to_thread.run_sync(self._thread.join)


# --- the store ------------------------------------------------------------------------------------


class _SqliteTx(Tx):
    """The core's transaction on a connection of the writer or the reader: plain calls that
    never suspend (the core's coroutine runs to its end with :func:`run_now`)."""

    refused = sqlite3.Error

    def __init__(self, conn: sqlite3.Connection):
        super().__init__()
        self._conn = conn

    async def fetch(self, sql: str | tuple[str, ...], *args: Any) -> list[Any]:
        return self._run(sql, args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return self._run(sql, args).fetchone()

    async def execute(self, sql: str | tuple[str, ...], *args: Any) -> int:
        return self._run(sql, args).rowcount

    async def script(self, text: str) -> None:
        # Statement by statement: executescript would commit the migration's transaction first.
        statement = ""
        for line in text.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self._conn.execute(statement)
                statement = ""
        self._conn.execute(statement)  # what follows the last ";" (comments, or a statement)

    def _run(self, sql: str | tuple[str, ...], args: tuple) -> sqlite3.Cursor:
        try:
            for statement in (sql,) if isinstance(sql, str) else sql:
                cursor = self._conn.execute(statement, args)
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from exc
        return cursor


@contextlib.asynccontextmanager
async def open_sqlite_job_store(path: str, *, clock: NowFunction = utcnow) -> AsyncIterator[SqliteJobStore]:
    """Open (creating or migrating) the job tables of the SQLite database at ``path``; close it
    on exit.

    Raises StoreLocked when another process (or another store in this process) has the file
    open, SchemaError when its schema is newer than this code, ConfigError for ``:memory:``.
    Exiting closes the store even when the body was cancelled; see :meth:`SqliteJobStore.aclose`.
    """
    store = await SqliteJobStore.open(path, clock=clock)
    try:
        yield store
    finally:
        await store.aclose()


class SqliteJobStore(JobCore):
    """The job store on one SQLite file: a writer thread (group commit) and a reader thread.

    Open it with :func:`open_sqlite_job_store` (or :func:`thotto.engine.store.open_job_store`),
    which closes it. Writes are queued to the writer thread, reads to the reader thread (a read-only
    connection: WAL lets it read while the writer writes). A cancelled call returns at once; a
    cancelled write may still commit (writes are idempotent). Must be used from the Trio run that
    opened it.
    """

    name = "sqlite"
    q = QUERIES
    #: The schema's parts, in order, and the single-track history before them (a product's).
    components: tuple[SchemaComponent, ...] = (JOBS,)
    legacy: Legacy | None = None

    def __init__(
        self,
        path: str,
        conns: tuple[sqlite3.Connection, sqlite3.Connection],
        lock: _FileLock,
        clock: NowFunction,
    ):
        super().__init__(clock)
        self.path = path
        self._lock = lock
        self._checkpointer = _Checkpointer(path)
        self._writer = _Worker(
            "writer", conns[0], begin="BEGIN IMMEDIATE", isolate=True,
            on_wake=self._feeds.wake, on_commit=self._checkpointer.poke,
        )
        self._reader = _Worker("reader", conns[1], begin="BEGIN", isolate=False)
        self._closed = False
        self._paused: frozenset[str] = frozenset()  # the paused_queues table (see claim)

    @classmethod
    async def open(cls, path: str, *, clock: NowFunction = utcnow) -> SqliteJobStore:
        """Lock, open and migrate ``path``; the caller must :meth:`aclose` the store.

        Cancellation is checked only on entry: once the file is locked, opening runs to the end
        (shielded), so a cancelled open never leaves a lock or a connection behind.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigError(
                f"SQLite path {path!r} is not a file path: Thotto needs a file on disk "
                "(WAL mode and the process lock need one), e.g. sqlite:///var/thotto.db"
            )
        lock = _FileLock(path)
        try:
            with trio.CancelScope(shield=True):  # do not leak the connections when cancelled
                conns = await trio.to_thread.run_sync(_connect, path, cls.components, cls.legacy)
        except BaseException:
            lock.release()
            raise
        store = cls(path, conns, lock, clock)
        try:
            with trio.CancelScope(shield=True):
                store._paused = frozenset(row.queue for row in await store.paused_queues())
        except BaseException:
            await store.aclose()
            raise
        return store

    async def aclose(self) -> None:
        """Finish queued writes, stop the writer thread, close every connection, release the
        file lock, and end open wake-up iterators. Idempotent; shielded, so it completes even
        when cancelled."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._reader.stop()
            await self._writer.stop()
            await self._checkpointer.stop()  # the last connection: it folds the WAL back in
            self._lock.release()
            self._feeds.close()

    # --- plumbing --------------------------------------------------------------------------------

    async def _write(
        self, fn: Callable[[sqlite3.Connection], Any], wakes: bool = False, urgent: bool = False
    ) -> Any:
        return await self._writer.call(fn, wakes, urgent)

    async def _read_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._reader.call(lambda conn: run_now(fn(_SqliteTx(conn))))

    async def _write_tx(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        def write(conn: sqlite3.Connection) -> tuple[T, datetime | None]:
            tx = _SqliteTx(conn)
            return run_now(fn(tx)), tx.earliest

        return await self._writer.call(write, True)

    @staticmethod
    def _to_db(when: datetime) -> int:
        return (when - EPOCH) // ONE_US

    @staticmethod
    def _from_db(value: int | None) -> datetime | None:
        return None if value is None else EPOCH + ONE_US * value

    @staticmethod
    def _json(value: Any) -> bytes:
        return _ENCODE(value)

    @staticmethod
    def _param(number: int) -> str:
        return f"?{number}"

    def _queue_pause_changed(self, queue: str, paused: bool) -> None:
        # Runs in the writer's transaction, so a claim built once the call returns (or woken by
        # its wake-up) sees it.
        self._paused = self._paused | {queue} if paused else self._paused - {queue}

    def _now_us(self) -> tuple[datetime, int]:
        """Now (aware, UTC) and as stored."""
        now = self._now()
        return now, (now - EPOCH) // ONE_US


    # --- the hot paths (per dialect: see docs/architecture.md, "Storage") --------------------

    async def enqueue(self, job: NewJob) -> EnqueueResult:
        now, now_us = self._now_us()
        row, run_at = _job_row(job, now, now_us)
        if row[6] is None:
            return await self._writer.call_here_if_alone(_InsertJob(row, run_at), True)
        return await self._writer.call_here_if_alone(
            lambda conn: _insert_one_keyed(conn, row, run_at), True)

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        now, now_us = self._now_us()
        rows, run_ats = [], []
        for job in jobs:
            row, run_at = _job_row(job, now, now_us)
            rows.append(row)
            run_ats.append(run_at)
        if not rows:
            await trio.lowlevel.checkpoint()
            return []
        keyed = any(row[6] is not None for row in rows)
        insert = _insert_keyed if keyed else _insert_plain
        return await self._write(lambda conn: insert(conn, rows, run_ats), wakes=True)


    # --- working jobs -----------------------------------------------------------------------------

    async def _claim_due(self, owner: str, limit: int, now: datetime, lease_until: datetime,
                         due: datetime, queues: list[str] | None) -> list[Job]:
        # Paused queues are left out by name: this process is the file's only one, so the set
        # it keeps is the set the table holds (nothing to read, nothing added while none is).
        paused = sorted(self._paused)
        filters = _queue_filters(queues, paused, 6)
        statements = CLAIM_ROWS.format(queues=filters), CLAIM.format(queues=filters)
        params = (owner, self._to_db(lease_until), self._to_db(now), self._to_db(due), limit,
                  *(queues or ()), *paused)
        document = await self._write(lambda conn: _claim(conn, statements, params), urgent=True)
        return _claimed_jobs(document, owner, lease_until)

    async def _extend_leases(self, owner: str, ids: list[int], lease_until: datetime) -> set[int]:
        params = (self._to_db(lease_until), _ENCODE(ids).decode(), owner)  # json_each: text
        return await self._write(lambda conn: {row[0] for row in conn.execute(HEARTBEAT, params)})

    async def _apply_outcomes(self, owner: str, outcomes: list[Outcome],
                              now: datetime) -> list[SettleResult]:
        now_us = self._to_db(now)
        if not _one_run_of_completions(outcomes):
            return await self._write(
                lambda conn: _settle(conn, owner, outcomes, now, now_us), wakes=True
            )
        # The usual batch: its statement's parameters and its results are made here, so the
        # writer (the drain's bottleneck) only runs the statement.
        ids = list(map(JOB_ID, outcomes))
        params = (now_us, _keys_json(ids, outcomes), owner)

        def complete(conn: sqlite3.Connection) -> tuple[list[SettleResult] | None, None]:
            if conn.execute(COMPLETE_ALL, (*params, len(ids))).rowcount == len(ids):
                return None, None
            return _complete_some(conn, owner, outcomes, params, now), None

        results = await self._write(complete, wakes=True)
        if results is None:
            return list(map(SettleResult, ids, itertools.repeat(SettleStatus.OK)))
        return results

    async def tidy(self) -> None:
        # PRAGMA optimize runs ANALYZE only on tables whose statistics it judges stale. Space
        # freed by purges is reused by later inserts (a VACUUM would block the writer).
        await self._write(lambda conn: conn.execute("PRAGMA optimize").fetchall())


    async def _earliest_due(self, queues: list[str] | None) -> datetime | None:
        paused = sorted(self._paused)
        sql = NEXT_DUE.format(queues=_queue_filters(queues, paused))
        params = (*(queues or ()), *paused)
        row = await self._reader.call(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None else _dt(row[0])

    # --- broadcasts -------------------------------------------------------------------------------

    async def broadcast(self, message: bytes) -> None:
        """See :meth:`Store.broadcast`: checked, then dropped (no other store has the file)."""
        check_broadcast(message)
        await trio.lowlevel.checkpoint()


# --- functions of the connection: jobs ------------------------------------------------------------


def _insert_plain(
    conn: sqlite3.Connection, rows: list[tuple], run_ats: list[datetime]
) -> tuple[list[EnqueueResult], datetime]:
    """Insert jobs without dedupe keys, many per statement. Inside the one writer's transaction
    a statement's rows get consecutive ids, so they follow from its lastrowid."""
    cursor = conn.cursor()
    texts = _payload_texts(rows)
    ids: list[int] = []
    for start, end in _shape_runs(rows) if texts else _chunks(len(rows)):
        if texts:
            _insert_json(cursor, rows[start:end], texts[start:end])
        else:
            cursor.execute(_INSERT_SQL[end - start], list(itertools.chain(*rows[start:end])))
        last = cursor.lastrowid
        ids.extend(range(last - (end - start) + 1, last + 1))
    return list(map(EnqueueResult, ids, itertools.repeat(True), run_ats)), min(run_ats)


def _insert_json(cursor: sqlite3.Cursor, rows: list[tuple], texts: list[str]) -> None:
    """Insert rows that share queue, kind, priority and max_attempts with one statement."""
    first = rows[0]
    shared = (first[0], first[1], first[3], first[5])
    if len(set(map(_TIMES, rows))) == 1:
        cursor.execute(INSERT_JSON_SAME_TIMES, (*shared, *_TIMES(first), _ENCODE(texts).decode()))
    else:  # e.g. single enqueues coalesced by the writer: each has its own times
        triples = list(zip(texts, map(_RUN_AT, rows), map(_CREATED_AT, rows)))
        cursor.execute(INSERT_JSON, (*shared, _ENCODE(triples).decode()))


def _payload_texts(rows: list[tuple]) -> list[str] | None:
    """The payloads as text, or None if one is not UTF-8 or holds a NUL (SQLite's JSON and text
    functions would not carry it intact)."""
    try:
        texts = [row[2].decode() for row in rows]
    except UnicodeDecodeError:
        return None
    return None if "\x00" in "".join(texts) else texts


_SHAPE = operator.itemgetter(0, 1, 3, 5)  # queue, kind, priority, max_attempts
_RUN_AT = operator.itemgetter(4)
_CREATED_AT = operator.itemgetter(7)
_TIMES = operator.itemgetter(4, 7)  # run_at, created_at


def _shape_runs(rows: list[tuple]) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of rows sharing queue, kind, priority and max_attempts."""
    if len(set(map(_SHAPE, rows))) == 1:  # the usual bulk batch: one run, found at C speed
        yield 0, len(rows)
        return
    start, shape = 0, _SHAPE(rows[0])
    for index in range(1, len(rows)):
        if _SHAPE(rows[index]) != shape:
            yield start, index
            start, shape = index, _SHAPE(rows[index])
    yield start, len(rows)


def _chunks(count: int) -> Iterator[tuple[int, int]]:
    """(start, end) of chunks whose sizes are in INSERT_CHUNKS (few distinct statements)."""
    start = 0
    while start < count:
        size = next(size for size in INSERT_CHUNKS if size <= count - start)
        yield start, start + size
        start += size


class _InsertJob(_Batchable):
    """One enqueue without a dedupe key. Concurrent enqueues reach the writer together; one bulk
    INSERT for all of them costs a third of one INSERT each."""

    __slots__ = ("row", "run_at")

    def __init__(self, row: tuple, run_at: datetime):
        self.row = row
        self.run_at = run_at

    def __call__(self, conn: sqlite3.Connection) -> tuple[EnqueueResult, datetime]:
        job_id = conn.execute(INSERT_JOB, self.row).lastrowid
        return EnqueueResult(job_id, True, self.run_at), self.run_at

    @classmethod
    def run_many(
        cls, conn: sqlite3.Connection, items: list[_InsertJob]
    ) -> list[tuple[EnqueueResult, datetime]]:
        rows = [item.row for item in items]
        results, _ = _insert_plain(conn, rows, [item.run_at for item in items])
        return [(result, result.run_at) for result in results]


def _insert_one_keyed(
    conn: sqlite3.Connection, row: tuple, run_at: datetime
) -> tuple[EnqueueResult, datetime | None]:
    (result,), wake = _insert_keyed(conn, [row], [run_at])
    return result, wake


def _insert_keyed(
    conn: sqlite3.Connection, rows: list[tuple], run_ats: list[datetime]
) -> tuple[list[EnqueueResult], datetime | None]:
    """Insert jobs one by one, returning the live job of a taken dedupe key instead."""
    results = []
    for row, run_at in zip(rows, run_ats):
        if row[6] is None:
            results.append(EnqueueResult(conn.execute(INSERT_JOB, row).lastrowid, True, run_at))
            continue
        cursor = conn.execute(INSERT_JOB_DEDUPED, row)
        if cursor.rowcount == 1:
            results.append(EnqueueResult(cursor.lastrowid, True, run_at))
        else:
            job_id, existing_us = conn.execute(LIVE_JOB_BY_KEY, (row[0], row[6])).fetchone()
            results.append(EnqueueResult(job_id, False, _dt(existing_us)))
    created = [result.run_at for result in results if result.created]
    return results, min(created) if created else None


def _claim(conn: sqlite3.Connection, statements: tuple[str, str], params: tuple) -> str:
    """Claim on the writer: the claimed jobs as a JSON document (see CLAIM_ROWS)."""
    rows_sql, claim_sql = statements
    (document,) = conn.execute(rows_sql, params).fetchone()
    if document != "[]":
        conn.execute(claim_sql, params)
    return document


_DECODE = msgspec.json.Decoder().decode


def _claimed_jobs(document: str, owner: str, lease_until: datetime) -> list[Job]:
    """The Job records of a claim's JSON document, built on the Trio side (off the writer)."""
    columns = list(zip(*_DECODE(document)))
    if not columns:
        return []
    # Each distinct time converted once: the jobs of a claim share many of them.
    time = {us: EPOCH + ONE_US * us for us in {*columns[5], *columns[9]}}.__getitem__
    columns[3], columns[5], columns[9] = (map(bytes.fromhex, columns[3]), map(time, columns[5]),
                                          map(time, columns[9]))
    return claimed_jobs(columns, owner, lease_until)


def _settle(
    conn: sqlite3.Connection, owner: str, outcomes: list[Outcome], now: datetime, now_us: int
) -> tuple[list[SettleResult], datetime | None]:
    """Apply a batch that is not one run of completions (those take a shorter way:
    :meth:`SqliteJobStore._apply_outcomes`). Outcomes of distinct jobs do not depend on their
    order: the completions go in one UPDATE, the rest one by one. A batch naming a job twice is
    applied one by one, in order, so that the repeat sees the first."""
    distinct = len(set(map(JOB_ID, outcomes))) == len(outcomes)
    completions = [item for item in outcomes if distinct and type(item) is Completed
                   and keyable([item.job_id], [item.attempt])]
    done = {result.job_id: result for result in
            (_complete_many(conn, owner, completions, now, now_us) if completions else ())}
    tx = _SqliteTx(conn)
    rest = iter(_in_order(tx, owner, [item for item in outcomes if item.job_id not in done], now))
    results = [done[item.job_id] if item.job_id in done else next(rest) for item in outcomes]
    return results, tx.earliest


def _in_order(tx: _SqliteTx, owner: str, outcomes: list[Outcome],
              now: datetime) -> list[SettleResult]:
    rows = list(map(outcome_row, outcomes))
    statuses = run_now(settle_in_order(tx, QUERIES, SqliteJobStore._to_db, owner, rows, now))
    return list(map(SettleResult, map(JOB_ID, outcomes), statuses))


def _one_run_of_completions(outcomes: list[Outcome]) -> bool:
    """Whether the batch is completions of distinct jobs, each with its key (the usual batch
    of a worker), checked with C-level passes."""
    if not outcomes or set(map(type, outcomes)) != {Completed}:
        return False
    ids = list(map(JOB_ID, outcomes))
    return len(set(ids)) == len(ids) and keyable(ids, list(map(ATTEMPT, outcomes)))


def _complete_many(
    conn: sqlite3.Connection, owner: str, run: list[Completed], now: datetime, now_us: int
) -> list[SettleResult]:
    """Complete held jobs with one UPDATE and no history row."""
    ids = list(map(JOB_ID, run))
    params = (now_us, _keys_json(ids, run), owner)
    if conn.execute(COMPLETE_ALL, (*params, len(run))).rowcount == len(run):
        return list(map(SettleResult, ids, itertools.repeat(SettleStatus.OK)))
    return _complete_some(conn, owner, run, params, now)


def _keys_json(ids: list[int], run: list[Completed]) -> str:
    """The keys id * 2**20 + attempt of a run of completions, as JSON text (json_each)."""
    shifted = map(operator.mul, ids, itertools.repeat(KEY_SHIFT))
    return _ENCODE(list(map(operator.add, shifted, map(ATTEMPT, run)))).decode()


def _complete_some(conn: sqlite3.Connection, owner: str, run: list[Completed], params: tuple,
                   now: datetime) -> list[SettleResult]:
    """Complete those of the run that are held (COMPLETE_ALL changed nothing) and sort the rest
    into ALREADY and LEASE_LOST."""
    done_ids = {row[0] for row in conn.execute(COMPLETE_MANY, params)}
    unheld = [item for item in run if item.job_id not in done_ids]
    rest = iter(_in_order(_SqliteTx(conn), owner, unheld, now))
    return [SettleResult(item.job_id, SettleStatus.OK) if item.job_id in done_ids else next(rest)
            for item in run]


__all__ = ["open_sqlite_job_store", "SqliteJobStore", "JOBS", "QUERIES"]
