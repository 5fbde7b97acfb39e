"""The product's SQLite store: the job store (:mod:`thotto.engine.store.sqlite`: the file, its
threads, the hot paths) with the product's tables, queries (``sql/queries_sqlite.sql``) and
cold paths (:class:`thotto.store.core.CoreStore`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec

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
from thotto.engine.store.sqlite import JOBS, SqliteJobStore
from thotto.engine.store.sqlite import QUERIES as JOB_QUERIES

PRODUCT = SchemaComponent("product", migration_files("thotto.store", "sqlite"))
QUERIES = Queries({**JOB_QUERIES, **load_queries("thotto.store", "queries_sqlite.sql")})
#: The ``PRAGMA user_version`` of the database: versions are kept per component (schema_versions).
SCHEMA_VERSION = PER_COMPONENT


class _TitleOnly(msgspec.Struct):
    title: str


_TITLE_ONLY = msgspec.json.Decoder(_TitleOnly)


def _title_key_of_content(content: bytes) -> str:
    """The title key of a stored PostContent (legacy migration 5 recomputes keys in SQL)."""
    return title_key(_TITLE_ONLY.decode(content).title)


#: The single-track migrations before components (sql/legacy), for databases made by them.
#: A database at 10 was made by the web app's branch, whose migration 10 is product 0002 now.
LEGACY = Legacy(migration_files("thotto.store", "sqlite", "sql/legacy"),
                functions={"thotto_title_key": _title_key_of_content}, ahead={10: {"product": 2}})


class SqliteStore(CoreStore, SqliteJobStore):
    """The Store on one SQLite file (see :class:`SqliteJobStore` for how it runs)."""

    q = QUERIES
    components = (JOBS, PRODUCT)
    legacy = LEGACY


@contextlib.asynccontextmanager
async def open_sqlite_store(path: str, *, clock: NowFunction = utcnow) -> AsyncIterator[SqliteStore]:
    """Open (creating or migrating) the SQLite database at ``path``; close it on exit.

    Raises StoreLocked when another process (or another store in this process) has the file
    open, SchemaError when its schema is newer than this code, ConfigError for ``:memory:``.
    Exiting closes the store even when the body was cancelled.
    """
    store = await SqliteStore.open(path, clock=clock)
    try:
        yield store
    finally:
        await store.aclose()


__all__ = ["open_sqlite_store", "SqliteStore", "SCHEMA_VERSION", "PRODUCT", "QUERIES", "LEGACY"]
