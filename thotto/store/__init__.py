"""Storage adapters behind one protocol (:class:`thotto.store.base.Store`).

``open_store(url)`` picks the adapter from the URL: ``sqlite:///path/to/thotto.db`` (or a bare
file path) for the embedded default, ``postgresql://user@host/db`` for several processes sharing
the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from thotto.engine.errors import ConfigError
from thotto.engine.jobs import utcnow
from thotto.engine.store.base import NowFunction
from thotto.store.base import Store

if TYPE_CHECKING:
    from thotto.engine.aio import Sidecar

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


@contextlib.asynccontextmanager
async def open_store(url: str, *, clock: NowFunction = utcnow, sidecar: "Sidecar | None" = None) -> AsyncIterator[Store]:
    """Open the store at ``url`` and close it on exit (also when cancelled).

    Creates the database schema or migrates it to the current version on open. Postgres runs
    on ``sidecar`` (the process's asyncio thread) when given, else on a sidecar of its own.
    """
    if url.startswith(POSTGRES_SCHEMES):
        from thotto.store.postgres import open_postgres_store

        async with open_postgres_store(url, clock=clock, sidecar=sidecar) as store:
            yield store
    else:
        from thotto.store.sqlite import open_sqlite_store

        async with open_sqlite_store(sqlite_path(url), clock=clock) as store:
            yield store


def sqlite_file(url: str) -> str | None:
    """The SQLite database file the URL names; None for a Postgres URL."""
    return None if url.startswith(POSTGRES_SCHEMES) else sqlite_path(url)


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///...`` URL (or of a bare path)."""
    if url.startswith("sqlite:///"):
        # sqlite:///rel/path → rel/path; sqlite:////abs/path → /abs/path (as SQLAlchemy reads them)
        return url[len("sqlite:///") :]
    if "://" in url:
        raise ConfigError(
            f"Unknown database URL {url!r}: use sqlite:///path/to/thotto.db, a file path, "
            "or postgresql://user@host:port/dbname"
        )
    return url


__all__ = ["open_store", "Store", "sqlite_file", "sqlite_path"]
