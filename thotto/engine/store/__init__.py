"""The job engine's store: jobs, their attempt history and paused queues, on SQLite or Postgres.

``base.py`` is the JobStore protocol, the one contract both dialects keep; ``core.py`` is what
they share, written once (validation, record mapping, the state-change rules, the cold-path
queries, migrations), with the SQL as named queries in ``sql/``; ``sqlite.py`` and
``postgres.py`` are the dialects, holding only what a benchmark keeps per dialect. The
product's store (:mod:`thotto.store`) extends it with its own tables.

``open_job_store(url)`` picks the dialect from the URL as :func:`thotto.store.open_store` does;
importing this package loads neither sqlite3 nor asyncpg.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from thotto.engine.errors import ConfigError
from thotto.engine.jobs import utcnow
from thotto.engine.store.base import NowFunction

if TYPE_CHECKING:
    from thotto.engine.aio import Sidecar

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


@contextlib.asynccontextmanager
async def open_job_store(url: str, *, clock: NowFunction = utcnow,
                         sidecar: "Sidecar | None" = None) -> AsyncIterator[Any]:
    """Open the job tables of the database at ``url`` (creating or migrating them) and close
    the store on exit (also when cancelled). A database the product made works too: its job
    tables are the same."""
    if url.startswith(POSTGRES_SCHEMES):
        from thotto.engine.store.postgres import open_postgres_job_store

        async with open_postgres_job_store(url, clock=clock, sidecar=sidecar) as store:
            yield store
    else:
        from thotto.engine.store.sqlite import open_sqlite_job_store

        async with open_sqlite_job_store(sqlite_path(url), clock=clock) as store:
            yield store


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


__all__ = ["open_job_store", "sqlite_path", "POSTGRES_SCHEMES"]
