"""Raw references: what the database itself does on Thotto's schema, with no Thotto in the way.

Thotto's figures are judged as ratios to these, measured in the same run (the machines here
differ by 3-4x from one day to the next, so an absolute figure says more about the machine):

* ``raw.insert.single``: single-row INSERTs into ``jobs``, each its own committed transaction,
  one caller. SQLite: plain ``sqlite3`` on one connection with the writer's pragmas (WAL,
  ``synchronous=NORMAL``); Postgres: one ``asyncpg`` connection in plain asyncio.
* ``raw.claim_complete.batch``: claim a batch of due jobs (``UPDATE ... RETURNING``; on Postgres
  through ``FOR UPDATE SKIP LOCKED``) and commit, then mark the batch completed and commit, until
  the queue is empty; batches of 100.
* ``raw.sleep_until.p50|p99|max`` (ms): lateness of bare ``trio.sleep_until`` calls, one task per
  due time, spread as the queue suite's lateness jobs: the floor under any Trio scheduler.

The schema is Thotto's own: a Thotto store creates (migrates) the database and is closed before
the raw loop opens it. The loops run in a worker thread, alone (nothing else runs meanwhile). The
throughput references are the median of RUNS runs, each on a fresh database (``runs`` in the
params): a single short run of a raw loop varied up to 2x within minutes on the shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import trio

from bench.common import Result, latency_results, report
from bench.databases import fresh_postgres_database
from thotto.store import open_store
from thotto.engine.store.sqlite import WRITER_PRAGMAS

CLAIM_BATCH = 100
PAYLOAD = b'{"post_id": 1}'
OWNER = "raw-worker"
LEASE = timedelta(seconds=60)
FILL_CHUNK = 10_000
RUNS = 3


@contextlib.asynccontextmanager
async def thotto_schema(kind: str, postgres_dsn: str | None) -> AsyncIterator[str]:
    """A fresh database (an SQLite path or a Postgres DSN) with Thotto's schema and no rows;
    deleted afterwards."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="thotto-raw-"))
            where = f"{directory}/raw.db"
        else:
            where = stack.enter_context(fresh_postgres_database(postgres_dsn))
        async with open_store(where):
            pass  # creates and migrates the schema, then closes
        yield where


async def insert_single(kind: str, count: int, postgres_dsn: str | None) -> Result:
    """``raw.insert.single`` (jobs/s)."""
    loops = _sqlite_insert_single, _postgres_insert_single
    runs = [await _on_fresh_schema(kind, postgres_dsn, *loops, count) for _ in range(RUNS)]
    return report(Result("raw.insert.single", statistics.median(runs), "jobs/s", kind,
                         {"jobs": count, "callers": 1, "runs": [round(run) for run in runs]}))


async def claim_complete(kind: str, count: int, postgres_dsn: str | None) -> Result:
    """``raw.claim_complete.batch`` (jobs/s): ``count`` due jobs claimed and completed."""
    loops = _sqlite_claim_complete, _postgres_claim_complete
    runs = [await _on_fresh_schema(kind, postgres_dsn, *loops, count) for _ in range(RUNS)]
    return report(Result("raw.claim_complete.batch", statistics.median(runs), "jobs/s", kind,
                         {"jobs": count, "batch": CLAIM_BATCH, "runs": [round(run) for run in runs]}))


async def _on_fresh_schema(kind: str, postgres_dsn: str | None, sqlite_loop, postgres_loop,
                           count: int) -> float:
    """One run of a raw loop (the SQLite one, or the asyncpg one in its own event loop) in a
    worker thread, on a fresh database."""
    async with thotto_schema(kind, postgres_dsn) as where:
        if kind == "sqlite":
            return await trio.to_thread.run_sync(sqlite_loop, where, count)
        return await trio.to_thread.run_sync(asyncio.run, postgres_loop(where, count))


async def sleep_until_floor(kind: str, count: int, ahead: tuple[float, float]) -> list[Result]:
    """``raw.sleep_until.p50|p99|max`` (ms): ``count`` tasks, each sleeping until its own due
    time ``ahead`` seconds away, measured as the engine's lateness is (wall clock at wake-up
    minus due time)."""
    late_ms: list[float] = []

    async def sleeper(offset: float, wall_start: float, trio_start: float) -> None:
        await trio.sleep_until(trio_start + offset)
        late_ms.append((time.time() - wall_start - offset) * 1000)

    async with trio.open_nursery() as nursery:
        wall_start, trio_start = time.time(), trio.current_time()
        for _ in range(count):
            nursery.start_soon(sleeper, random.uniform(*ahead), wall_start, trio_start)
    return [report(r) for r in latency_results("raw.sleep_until", late_ms, kind, {"jobs": count})]


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_INSERT = (
    "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at) "
    "VALUES ('bench', 'noop', ?, 0, ?, 3, NULL, ?)"
)
SQLITE_CLAIM = (
    "UPDATE jobs SET state = 'processing', lease_owner = ?1, lease_until = ?2, "
    "attempt = attempt + 1, started_at = ?3 WHERE id IN (SELECT id FROM jobs "
    "WHERE state = 'pending' AND run_at <= ?3 ORDER BY run_at, priority DESC, id LIMIT ?4) "
    "RETURNING id"
)
SQLITE_COMPLETE = (
    "UPDATE jobs SET state = 'completed', finished_at = ?1, lease_until = NULL "
    "WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'processing' AND lease_owner = ?3"
)


def _sqlite_connect(path: str) -> sqlite3.Connection:
    """Autocommit (each statement its own transaction), with Thotto's writer pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    return conn


def _now_us() -> int:
    return time.time_ns() // 1000


def _sqlite_insert_single(path: str, count: int) -> float:
    conn = _sqlite_connect(path)
    try:
        started = time.perf_counter()
        for _ in range(count):
            now = _now_us()
            conn.execute(SQLITE_INSERT, (PAYLOAD, now, now))
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


def _sqlite_claim_complete(path: str, count: int) -> float:
    conn = _sqlite_connect(path)
    try:
        now = _now_us()
        for start in range(0, count, FILL_CHUNK):
            rows = [(PAYLOAD, now, now)] * min(FILL_CHUNK, count - start)
            conn.execute("BEGIN")
            conn.executemany(SQLITE_INSERT, rows)
            conn.execute("COMMIT")
        lease_us = int(LEASE.total_seconds() * 1_000_000)
        done = 0
        started = time.perf_counter()
        while True:
            now = _now_us()
            ids = [row[0] for row in conn.execute(SQLITE_CLAIM, (OWNER, now + lease_us, now, CLAIM_BATCH))]
            if not ids:
                break
            conn.execute(SQLITE_COMPLETE, (_now_us(), json.dumps(ids), OWNER))
            done += len(ids)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    if done != count:
        raise RuntimeError(f"the raw SQLite loop completed {done} of {count} jobs")
    return done / elapsed


# --- Postgres ---------------------------------------------------------------------------------

PG_INSERT = (
    "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at) "
    "VALUES ('bench', 'noop', $1, 0, $2, 3, $2) RETURNING id"
)
PG_FILL = (
    "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at) "
    "SELECT 'bench', 'noop', $1, 0, $2, 3, $2 FROM generate_series(1, $3)"
)
PG_CLAIM = """
UPDATE jobs SET state = 'processing', attempt = attempt + 1, lease_owner = $1, lease_until = $2,
                started_at = $3
WHERE id = ANY(ARRAY(
    SELECT id FROM jobs WHERE state = 'pending' AND run_at <= $3
    ORDER BY run_at, priority DESC, id LIMIT $4
    FOR UPDATE SKIP LOCKED))
RETURNING id
"""
# The state is compared to an InitPlan value, as Thotto's store does: written plainly, once
# autovacuum has analysed the table the planner may scan the partial index jobs_lease whole for
# each batch, which would make the reference needlessly slow.
PG_COMPLETE = """
UPDATE jobs SET state = 'completed', finished_at = $1, lease_until = NULL
WHERE id = ANY($2::bigint[]) AND state = (SELECT 'processing'::text) AND lease_owner = $3
"""
# Thotto's store connects with these too (the same plans for the same statements).
PG_SETTINGS = {"jit": "off", "enable_bitmapscan": "off"}


async def _pg_connect(dsn: str):
    import asyncpg

    return await asyncpg.connect(dsn, server_settings=PG_SETTINGS)


async def _postgres_insert_single(dsn: str, count: int) -> float:
    conn = await _pg_connect(dsn)
    try:
        started = time.perf_counter()
        for _ in range(count):
            await conn.fetchval(PG_INSERT, PAYLOAD, datetime.now(timezone.utc))
        return count / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _postgres_claim_complete(dsn: str, count: int) -> float:
    conn = await _pg_connect(dsn)
    try:
        now = datetime.now(timezone.utc)
        for start in range(0, count, FILL_CHUNK):
            await conn.execute(PG_FILL, PAYLOAD, now, min(FILL_CHUNK, count - start))
        done = 0
        started = time.perf_counter()
        while True:
            now = datetime.now(timezone.utc)
            ids = [row[0] for row in await conn.fetch(PG_CLAIM, OWNER, now + LEASE, now, CLAIM_BATCH)]
            if not ids:
                break
            await conn.execute(PG_COMPLETE, datetime.now(timezone.utc), ids, OWNER)
            done += len(ids)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    if done != count:
        raise RuntimeError(f"the raw Postgres loop completed {done} of {count} jobs")
    return done / elapsed
