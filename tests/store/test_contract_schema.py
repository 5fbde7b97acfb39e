"""Store contract: the schema both stores share since migration 11, and the named queries of
both dialects (runs on every adapter)."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.store.conftest import T0
from tests.store.test_contract import LEASE, held_job, new_post
from tests.store.test_contract_titles import UNDO_PRODUCT_2
from thotto.engine.aio import open_sidecar
from thotto.engine.jobs import AttemptOutcome, NewJob, Retry
from thotto.scheduler.records import NewUser, PostContent, PostStatus
from thotto.store import postgres as postgres_store
from thotto.store import sqlite as sqlite_store
from thotto.store import open_store
from thotto.engine.store import open_job_store
from thotto.engine.store.core import EPOCH
from thotto.store.postgres import LEGACY as LEGACY_POSTGRES
from thotto.store.sqlite import LEGACY as LEGACY_SQLITE
from thotto.engine.store.core import load_queries

STORE = Path(__file__).parents[2] / "thotto" / "store"


def queries_used(core: Path) -> set[str]:
    return set(re.findall(r"\bq\.(\w+)", core.read_text()))


def test_both_dialects_name_every_query_the_cores_run():
    jobs = queries_used(STORE.parent / "engine" / "store" / "core.py")
    product = queries_used(STORE / "core.py")
    assert len(jobs) > 15 and len(product) > 50
    for dialect in ("sqlite", "postgres"):
        job_queries = set(load_queries("thotto.engine.store", f"queries_{dialect}.sql"))
        product_queries = set(load_queries("thotto.store", f"queries_{dialect}.sql"))
        assert jobs <= job_queries, dialect
        assert product <= job_queries | product_queries, dialect


async def _as_schema_9(url: str) -> None:
    """Take the database back to schema 9: before migration 11 gave things one name, and
    without the web app's tables (product 0002)."""
    if not url.startswith("postgresql://"):
        db = sqlite3.connect(url)
        for statement in UNDO_PRODUCT_2:
            db.execute(statement)
        db.execute("ALTER TABLE job_attempts RENAME TO attempts")
        db.execute("PRAGMA user_version = 9")
        db.close()
        return

    async def downgrade():
        conn = await asyncpg.connect(url)
        try:
            for statement in UNDO_PRODUCT_2:
                await conn.execute(statement)
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
        # name, type, not null, default, primary key (not the position)
        columns = [(table, *column[1:6]) for _, table, _ in rows
                   for column in db.execute(f"PRAGMA table_info('{table}')")]
        indexes = [(index, *column) for kind, index, _ in rows if kind == "index"
                   for column in db.execute(f"PRAGMA index_xinfo('{index}')")]
        db.close()
        return sorted(map(str, rows + columns + indexes))

    async def read():
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT table_name, column_name, concat_ws(' ', data_type, is_nullable, "
                "column_default, is_identity) FROM information_schema.columns "
                "WHERE table_schema = 'public' UNION ALL "
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "UNION ALL SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace")
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


# --- a database the single-track (legacy) migrations made --------------------------------------

#: The single-track versions databases in the field may have when components came: 9 (main),
#: 10 (the web app's branch: its migration 10 is product 0002 now) and 11 (migration 11 alone).
LEGACY_VERSIONS = (9, 10, 11)
WEB_SESSIONS = {"sqlite": sqlite_store.PRODUCT.migrations[2],
                "postgres": postgres_store.PRODUCT.migrations[2]}
SESSION_HASH, CSRF, PASSWORD_HASH = "s" * 64, "c" * 43, "$argon2id$" + "x" * 40


def _legacy_scripts(migrations: dict[int, str], at: int, dialect: str) -> list[tuple[int, str]]:
    """The migrations a database at single-track version ``at`` had run, in order."""
    scripts = [(number, script) for number, script in migrations.items() if number <= at]
    if at == 10:
        scripts.append((10, WEB_SESSIONS[dialect]))
    return scripts


async def _legacy_database(store_url: str, request, tmp_path, at: int) -> str:
    """A new database of the store's dialect made by the single-track migrations up to ``at``,
    holding a user, an account, a post with its job, one failed attempt of it and, at 10, the
    user's password, time zone and a signed-in browser."""
    content = msgspec.json.encode(PostContent(subreddit="thotto_test", title="Hello", text="x"))
    if not store_url.startswith("postgresql://"):
        path = str(tmp_path / "legacy.db")
        db = sqlite3.connect(path)
        for name, function in LEGACY_SQLITE.functions.items():
            db.create_function(name, 1, function)
        for _, script in _legacy_scripts(LEGACY_SQLITE.migrations, at, "sqlite"):
            db.executescript(script)
        us = (T0 - EPOCH) // timedelta(microseconds=1)
        attempts = "job_attempts" if at >= 11 else "attempts"
        db.executescript(f"""
            INSERT INTO users (id, name, tier, role, created_at) VALUES (1, 'alice', 'free', 'user', {us});
            INSERT INTO accounts (id, user_id, reddit_username, refresh_token_encrypted, created_at)
                VALUES (1, 1, 'alice_r', x'00', {us});
            INSERT INTO jobs (id, queue, kind, payload, run_at, max_attempts, created_at, attempt)
                VALUES (1, 'posts', 'reddit.submit', '{{"post_id":1}}', {us}, 3, {us}, 1);
            INSERT INTO {attempts} (job_id, attempt, owner, started_at, finished_at, outcome, error)
                VALUES (1, 1, 'w1', {us}, {us}, 'retry', 'boom');
            INSERT INTO posts (id, user_id, account_id, job_id, subreddit, title_key, content,
                               scheduled_for, created_at, updated_at)
                VALUES (1, 1, 1, 1, 'thotto_test', 'hello', '{content.decode()}', {us}, {us}, {us});
            PRAGMA user_version = {at};""")
        if at == 10:
            db.executescript(f"""
                UPDATE users SET password_hash = '{PASSWORD_HASH}', time_zone = 'Europe/Berlin';
                INSERT INTO web_sessions VALUES ('{SESSION_HASH}', 1, '{CSRF}', {us}, {us},
                                                 {us + 86_400_000_000});""")
        db.close()
        return path
    dsn = request.getfixturevalue("postgres_server").create_database()

    async def make():
        conn = await asyncpg.connect(dsn)
        try:
            for number, script in _legacy_scripts(LEGACY_POSTGRES.migrations, at, "postgres"):
                await conn.execute(script)
                if number in LEGACY_POSTGRES.backfills:
                    await LEGACY_POSTGRES.backfills[number](conn)
            await conn.execute(
                "CREATE TABLE thotto_schema (id integer PRIMARY KEY CHECK (id = 1), "
                "version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now());"
                f"INSERT INTO thotto_schema (id, version) VALUES (1, {at})")
            await conn.execute("INSERT INTO users (id, name, tier, role, created_at) "
                               "VALUES (1, 'alice', 'free', 'user', $1)", T0)
            await conn.execute("INSERT INTO accounts (id, user_id, reddit_username, "
                               "refresh_token_encrypted, created_at) VALUES (1, 1, 'alice_r', "
                               "'\\x00', $1)", T0)
            await conn.execute("INSERT INTO jobs (id, queue, kind, payload, run_at, max_attempts, "
                               "created_at, attempt) VALUES (1, 'posts', 'reddit.submit', "
                               "'{\"post_id\":1}', $1, 3, $1, 1)", T0)
            await conn.execute("INSERT INTO job_attempts (job_id, attempt, owner, started_at, "
                               "finished_at, outcome, error) VALUES (1, 1, 'w1', $1, $1, 'retry', "
                               "'boom')", T0)
            await conn.execute("INSERT INTO posts (id, user_id, account_id, job_id, subreddit, "
                               "title, title_key, content, scheduled_for, created_at, updated_at) "
                               "VALUES (1, 1, 1, 1, 'thotto_test', 'Hello', 'hello', $2::jsonb, "
                               "$1, $1, $1)", T0, content.decode())
            if at == 10:
                await conn.execute("UPDATE users SET password_hash = $1, time_zone = 'Europe/Berlin'",
                                   PASSWORD_HASH)
                await conn.execute("INSERT INTO web_sessions VALUES ($1, 1, $2, $3, $3, $4)",
                                   SESSION_HASH, CSRF, T0, T0 + timedelta(days=1))
            for table in ("users", "accounts", "jobs", "posts"):  # as if the ids were drawn
                await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1)")
        finally:
            await conn.close()

    async with open_sidecar("test-legacy") as sidecar:
        await sidecar.run(make)
    return dsn


@pytest.mark.parametrize("at", LEGACY_VERSIONS)
async def test_a_database_the_legacy_migrations_made_comes_out_as_a_fresh_one_with_its_data(
        store_factory, store_url, clock, request, tmp_path, at):
    async with store_factory():
        pass
    fresh = await _schema(store_url)
    legacy = await _legacy_database(store_url, request, tmp_path, at)
    async with open_store(legacy, clock=clock) as store:
        post = await store.get_post(1)
        assert (post.content.title, post.status, post.account_id) == ("Hello", PostStatus.SCHEDULED, 1)
        assert [(a.owner, a.error) for a in await store.attempts(1)] == [("w1", "boom")]
        assert [p.id for p in await store.find_recent_posts(1, "thotto_test", "HELLO", T0)] == [1]
        (job,) = await store.claim("w2", 10, LEASE)
        assert (job.id, job.attempt, job.lease_owner) == (1, 2, "w2")
        later = await store.create_posts([new_post(await store.get_account(1), T0)])
        assert later[0].id == 2 and later[0].job_id == 2
        session = await store.get_session(SESSION_HASH)
        if at == 10:  # the web app's data came along
            assert (await store.get_user(1)).time_zone == "Europe/Berlin"
            assert await store.get_password_hash(1) == PASSWORD_HASH
            assert (session.user.id, session.csrf_token) == (1, CSRF)
        else:  # the web app's tables were made, empty
            assert (await store.get_user(1)).time_zone == "UTC"
            assert await store.get_password_hash(1) is None and session is None
        await store.create_session("t" * 64, 1, CSRF, T0 + timedelta(days=1))
        assert [a.id for a in await store.list_accounts(1)] == [1]
    assert await _schema(legacy) == fresh


async def test_the_job_store_alone_makes_only_the_job_tables_and_shares_them(store_url, clock):
    async with open_job_store(store_url, clock=clock) as jobs:
        job_id = (await jobs.enqueue(NewJob(queue="q", kind="k"))).job_id
        assert not hasattr(jobs, "create_user")
    tables = {line.split("'")[1] for line in await _schema(store_url)}
    assert {"jobs", "job_attempts", "paused_queues"} <= tables and "posts" not in tables
    async with open_store(store_url, clock=clock) as store:  # the product adds its tables
        assert (await store.get_job(job_id)).kind == "k"
        await store.create_user(NewUser(name="alice"))
    async with open_job_store(store_url, clock=clock) as jobs:  # and the job store still opens it
        assert [c.count for c in await jobs.counts()] == [1]
