"""Store contract: duplicate detection compares titles as a person would (``title_key``: NFKC,
case folding, whitespace collapsed), the same on every adapter, for new, edited and follow-up
posts, and for posts stored before the key existed (the migration recomputes it)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import asyncpg
import msgspec
import pytest

from tests.store.test_contract import make_account, new_post, schedule
from thotto.engine.aio import open_sidecar
from thotto.scheduler.records import PostContent, title_key

SUBREDDIT = "thotto_test"

# (stored title, title looked up): the same post to a reader.
SAME = [
    pytest.param("Ｔｈｅ  Title", "the title", id="fullwidth-and-double-space"),
    pytest.param("straße", "STRASSE", id="sharp-s"),
    pytest.param("tab\tseparated", "TAB separated", id="tab"),
    pytest.param("no\u00a0break\u3000space", "no break space", id="nbsp-and-ideographic-space"),
    pytest.param("  padded\n", "padded", id="surrounding-whitespace"),
    pytest.param("zero\u200bwidth", "zerowidth", id="zero-width-space"),
    pytest.param("ﬁnal ①", "final 1", id="compatibility-forms"),
]
# Titles a reader tells apart.
DIFFERENT = [
    pytest.param("the title", "the titles", id="plural"),
    pytest.param("new post", "newpost", id="space-matters"),
    pytest.param("résumé", "resume", id="accents-matter"),
]


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


async def found_ids(store, account, title: str, since) -> list[int]:
    return [post.id for post in await store.find_recent_posts(account.id, SUBREDDIT, title, since)]


@pytest.mark.parametrize(("stored", "asked"), SAME)
async def test_titles_that_read_the_same_are_duplicates(store, clock, stored, asked):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60), title=stored)
    assert await found_ids(store, account, asked, clock()) == [post.id]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
async def test_titles_that_read_differently_are_not(store, clock, stored, asked):
    account = await make_account(store)
    await schedule(store, account, clock() + seconds(60), title=stored)
    assert await found_ids(store, account, asked, clock()) == []


async def test_an_edited_title_is_found_by_its_new_key_only(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60), title="Old title")
    edited = PostContent(subreddit=SUBREDDIT, title="Ｎｅｗ\u00a0TITLE", text="body")
    await store.update_post(post.id, account.user_id, content=edited)
    assert await found_ids(store, account, "new title", clock()) == [post.id]
    assert await found_ids(store, account, "old title", clock()) == []


async def test_a_follow_up_carries_the_key(store, clock):
    account = await make_account(store)
    first = await schedule(store, account, clock() + seconds(60), title="Weekly  Ｑ&Ａ")
    follow_up, created = await store.create_follow_up(
        first.id, new_post(account, clock() + seconds(7 * 86400), title="Weekly  Ｑ&Ａ")
    )
    assert created
    found = await found_ids(store, account, "weekly q&a", clock())
    assert sorted(found) == sorted([first.id, follow_up.id])


# --- posts stored before the key: the migration recomputes it --------------------------------


# What the migrations after 5 made, undone (newest first), so that a database can be taken back
# to schema 4. A migration added after 5 adds its undo here: one statement for both stores, or
# {"sqlite": ..., "postgres": ...} where they differ.
# What product migration 0002 (the web app's; single-track 10 on its branch) made, undone.
UNDO_PRODUCT_2 = ["DROP TABLE IF EXISTS sign_in_failures", "DROP TABLE IF EXISTS web_sessions",
                  "DROP TABLE IF EXISTS password_links", "ALTER TABLE users DROP COLUMN time_zone",
                  "ALTER TABLE users DROP COLUMN password_hash",
                  "ALTER TABLE accounts DROP COLUMN unlinked_at"]
UNDO_AFTER_5 = [*UNDO_PRODUCT_2,
                {"sqlite": "ALTER TABLE job_attempts RENAME TO attempts",  # 11
                 "postgres": "ALTER TABLE jobs RENAME COLUMN lease_owner TO owner"},
                "DROP TABLE IF EXISTS post_media", "DROP TABLE IF EXISTS media_chunks",
                "DROP TABLE IF EXISTS media", "DROP INDEX IF EXISTS jobs_dead",
                "ALTER TABLE jobs DROP COLUMN failure_cause", "DROP TABLE IF EXISTS paused_queues",
                "ALTER TABLE users DROP COLUMN removed_at",
                "DROP TABLE IF EXISTS link_requests"]


def undo_after_5(dialect: str) -> list[str]:
    return [step if isinstance(step, str) else step[dialect] for step in UNDO_AFTER_5]


def _as_sqlite_schema_4(path: str) -> None:
    """What schema 4 held: keys only case-folded."""
    db = sqlite3.connect(path)
    with db:
        for statement in undo_after_5("sqlite"):
            db.execute(statement)
        for post_id, content in db.execute("SELECT id, content FROM posts").fetchall():
            title = msgspec.json.decode(content, type=PostContent).title
            db.execute("UPDATE posts SET title_key = ? WHERE id = ?", (title.casefold(), post_id))
    db.execute("PRAGMA user_version = 4")
    db.close()


async def _as_postgres_schema_4(dsn: str) -> None:
    """What schema 4 held: no key column, an index on lower(title)."""

    async def downgrade():
        conn = await asyncpg.connect(dsn)
        try:
            for statement in undo_after_5("postgres"):
                await conn.execute(statement)
            await conn.execute(
                "ALTER TABLE posts DROP COLUMN title_key;"
                "CREATE INDEX posts_account_title ON posts (account_id, lower(subreddit), lower(title));"
                "UPDATE thotto_schema SET version = 4"
            )
        finally:
            await conn.close()

    async with open_sidecar("test-downgrade") as sidecar:
        await sidecar.run(downgrade)


async def test_posts_stored_before_the_key_are_found_after_migrating(store_factory, store_url, clock):
    async with store_factory() as store:
        account = await make_account(store)
        wide = await schedule(store, account, clock() + seconds(60), title="Ｔｈｅ  Title")
        sharp = await schedule(store, account, clock() + seconds(60), title="straße")
    if store_url.startswith("postgresql://"):
        await _as_postgres_schema_4(store_url)
    else:
        _as_sqlite_schema_4(store_url)
    async with store_factory() as store:
        assert await found_ids(store, account, "the title", clock()) == [wide.id]
        assert await found_ids(store, account, "STRASSE", clock()) == [sharp.id]
        later = await schedule(store, account, clock() + seconds(90), title="THE TITLE")
        assert await found_ids(store, account, "the\ttitle", clock()) == [wide.id, later.id]


def test_the_key_is_bounded_for_any_title():
    """NFKC expands some characters 18-fold; the key still fits an index entry, and different
    long titles keep different keys."""
    long_one, other = "ﷺ" * 300, "ﷺ" * 299 + "x"
    assert len(title_key(long_one).encode()) <= 1000
    assert title_key(long_one) != title_key(other)


async def test_the_look_up_uses_the_title_key_index(store, store_url, clock):
    account = await make_account(store)
    await schedule(store, account, clock() + seconds(60), title="Indexed")
    if store_url.startswith("postgresql://"):
        plan = await _postgres_plan(store_url, account.id)
        assert "posts_account_title_key" in plan, plan
    else:
        from thotto.store.sqlite import QUERIES

        db = sqlite3.connect(f"file:{store_url}?mode=ro", uri=True)
        rows = db.execute(f"EXPLAIN QUERY PLAN {QUERIES.recent_posts}",
                          (account.id, SUBREDDIT, "indexed", 0))
        plan = " ".join(row[-1] for row in rows)
        db.close()
        assert "INDEX posts_account_title" in plan, plan


async def _postgres_plan(dsn: str, account_id: int) -> str:
    """The plan of find_recent_posts' predicate, with sequential scans ruled out (a table of a
    few rows would be scanned whatever its indexes)."""

    async def explain():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET enable_seqscan = off")
            rows = await conn.fetch(
                "EXPLAIN SELECT id FROM posts p WHERE p.account_id = $1 "
                "AND lower(p.subreddit) = lower($2) AND p.title_key = $3",
                account_id, SUBREDDIT, "indexed",
            )
            return " ".join(row[0] for row in rows)
        finally:
            await conn.close()

    async with open_sidecar("test-plan") as sidecar:
        return await sidecar.run(explain)
