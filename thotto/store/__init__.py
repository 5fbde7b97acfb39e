"""Storage adapters behind one protocol (:class:`thotto.store.base.Store`).

``open_store(url)`` picks the adapter from the URL: ``sqlite:///path/to/thotto.db`` (or a bare
file path) for the embedded default, ``postgresql://user@host/db`` for several processes sharing
the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from thotto.engine.jobs import utcnow
from thotto.engine.store.base import NowFunction
from thotto.store.base import Store
from thotto.engine.store import POSTGRES_SCHEMES, sqlite_path

if TYPE_CHECKING:
    from thotto.engine.aio import Sidecar


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


__all__ = ["open_store", "Store", "sqlite_file", "sqlite_path", "POSTGRES_SCHEMES"]
