"""The product's Postgres store: the job store (:mod:`thotto.engine.store.postgres`: the pool, the
listener, the hot paths) with the product's tables, queries (``sql/queries_postgres.sql``) and
cold paths (:class:`thotto.store.core.CoreStore`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg

from thotto.engine.jobs import utcnow
from thotto.scheduler.records import title_key
from thotto.engine.store.base import NowFunction
from thotto.store.core import CoreStore
from thotto.engine.store.core import (
    PER_COMPONENT,
    SchemaComponent,
    Legacy,
    Queries,
    load_queries,
    migration_files,
)
from thotto.engine.store.postgres import JOBS, PostgresJobStore, open_postgres_job_store
from thotto.engine.store.postgres import QUERIES as JOB_QUERIES

if TYPE_CHECKING:
    from thotto.engine.aio import Sidecar

PRODUCT = SchemaComponent("product", migration_files("thotto.store", "postgres"))
QUERIES = Queries({**JOB_QUERIES, **load_queries("thotto.store", "queries_postgres.sql")})
#: The version ``thotto_schema`` holds: versions are kept per component (see migrate).
SCHEMA_VERSION = PER_COMPONENT
#: Rows per statement when a migration backfills a column computed in Python.
BACKFILL_BATCH = 5000


async def _backfill_title_keys(conn: asyncpg.Connection) -> None:
    """Legacy migration 5: compute every post's title key (in batches, by id), then require it."""
    last_id = 0
    while True:
        rows = await conn.fetch(
            "SELECT id, title FROM posts WHERE id > $1 ORDER BY id LIMIT $2", last_id, BACKFILL_BATCH
        )
        if not rows:
            break
        await conn.execute(
            "UPDATE posts SET title_key = t.key FROM unnest($1::bigint[], $2::text[]) AS t(id, key) "
            "WHERE posts.id = t.id",
            [row["id"] for row in rows], [title_key(row["title"]) for row in rows],
        )  # fmt: skip
        last_id = rows[-1]["id"]
    await conn.execute("ALTER TABLE posts ALTER COLUMN title_key SET NOT NULL")


#: The single-track migrations before components (sql/legacy), for databases made by them, with
#: the steps in Python that follow some of them (what SQL alone cannot compute).
#: A database at 10 was made by the web app's branch, whose migration 10 is product 0002 now.
LEGACY = Legacy(migration_files("thotto.store", "postgres", "sql/legacy"),
                backfills={5: _backfill_title_keys}, ahead={10: {"product": 2}})


class PostgresStore(CoreStore, PostgresJobStore):
    """The Store on Postgres (see :class:`PostgresJobStore` for how it runs)."""

    q = QUERIES
    components = (JOBS, PRODUCT)
    legacy = LEGACY
    tables = ("jobs", "job_attempts", "posts", "media", "media_chunks")


@contextlib.asynccontextmanager
async def open_postgres_store(dsn: str, *, clock: NowFunction = utcnow, sidecar: "Sidecar | None" = None,
                              pool_size: int = 10) -> AsyncIterator[PostgresStore]:
    """Open the Postgres store at ``dsn`` (``postgresql://user@host:port/dbname``).

    Creates or migrates the schema, opens an asyncpg pool of up to ``pool_size`` connections and
    a LISTEN connection, on ``sidecar`` if given (shared, e.g. with the Redis client) or on a
    sidecar of its own. On exit (also by cancellation) everything it opened is closed.
    StoreUnavailable if the server cannot be reached; SchemaError if its schema is too new.
    """
    async with open_postgres_job_store(dsn, clock=clock, sidecar=sidecar, pool_size=pool_size,
                                       store_class=PostgresStore) as store:
        yield store


__all__ = ["PostgresStore", "open_postgres_store", "SCHEMA_VERSION", "PRODUCT", "QUERIES",
           "LEGACY"]
