"""Store contract: the schema both stores share since migration 11, and the named queries of
both dialects (runs on every adapter)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import asyncpg

from tests.store.test_contract import LEASE, held_job
from thotto.aio import open_sidecar
from thotto.messages import AttemptOutcome, Retry
from thotto.store.core import load_queries

CORE = Path(__file__).parents[2] / "thotto" / "store" / "core.py"


def test_both_dialects_name_every_query_the_core_runs():
    used = set(re.findall(r"self\.q\.(\w+)", CORE.read_text()))
    assert len(used) > 50
    for dialect in ("sqlite", "postgres"):
        assert used <= set(load_queries(f"queries_{dialect}.sql")), dialect


async def _as_schema_9(url: str) -> None:
    """Take the database back to schema 9: before migration 11 gave things one name."""
    if not url.startswith("postgresql://"):
        db = sqlite3.connect(url)
        db.execute("ALTER TABLE job_attempts RENAME TO attempts")
        db.execute("PRAGMA user_version = 9")
        db.close()
        return

    async def downgrade():
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE jobs RENAME COLUMN lease_owner TO owner;"
                               "UPDATE thotto_schema SET version = 9")
        finally:
            await conn.close()

    async with open_sidecar("test-downgrade") as sidecar:
        await sidecar.run(downgrade)


async def _schema(url: str) -> list[str]:
    """The tables' and indexes' definitions, comparable between two databases of one dialect."""
    if not url.startswith("postgresql://"):
        db = sqlite3.connect(url)
        rows = db.execute("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name").fetchall()
        columns = [(table, *column[1:3]) for _, table, _ in rows
                   for column in db.execute(f"PRAGMA table_info('{table}')")]
        db.close()
        return sorted(map(str, rows + columns))

    async def read():
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' UNION ALL "
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            return sorted(str(tuple(row)) for row in rows)
        finally:
            await conn.close()

    async with open_sidecar("test-schema") as sidecar:
        return await sidecar.run(read)


async def test_a_database_at_schema_9_migrates_with_its_jobs_and_attempts(store_factory, store_url,
                                                                          clock):
    async with store_factory() as store:
        running = await held_job(store)
        failed = await held_job(store)
        await store.settle("w1", [Retry(failed.id, failed.attempt, clock(), "boom")])
    fresh = await _schema(store_url)
    await _as_schema_9(store_url)
    assert await _schema(store_url) != fresh
    async with store_factory() as store:
        job = await store.get_job(running.id)
        assert (job.lease_owner, job.lease_until) == ("w1", running.lease_until)
        (attempt,) = await store.attempts(failed.id)
        assert (attempt.owner, attempt.outcome, attempt.error) == ("w1", AttemptOutcome.RETRY,
                                                                  "boom")
        clock.advance(LEASE + 1)
        assert (await store.release_expired()).released == [running.id]
    assert await _schema(store_url) == fresh
