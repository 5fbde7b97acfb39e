"""Fixtures for the store contract suite: one fresh store per test, on every adapter.

``store`` is parametrized over the adapters (ids ``sqlite`` and ``postgres``); every test in
``tests/store/test_contract*.py`` runs once on each. The store reads time from a :class:`FakeClock`
that the test moves by hand, so leases, due times and purges are checked exactly, without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import AsyncContextManager

import pytest

from thotto.engine.jobs import UTC, as_utc
from thotto.store import Store, open_store

#: Where every FakeClock starts: a fixed instant, so expected times are plain arithmetic.
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test drives: call it for "now" (aware, UTC); ``advance`` or ``set`` to move it.

    Stores may read it from another thread (the SQLite writer); reading one attribute is safe.
    """

    def __init__(self, start: datetime = T0):
        self._now = as_utc(start)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` and return the new now."""
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (aware; forwards or backwards) and return it."""
        self._now = as_utc(when)
        return self._now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request, tmp_path) -> str:
    """The URL of a fresh, empty database for the adapter named by the param."""
    if request.param == "sqlite":
        return str(tmp_path / "thotto.db")
    # Only the postgres param asks for a server, so sqlite runs need no Postgres at all.
    return request.getfixturevalue("postgres_dsn")


@pytest.fixture
def store_factory(store_url, clock) -> Callable[[], AsyncContextManager[Store]]:
    """Open another store on the same database and clock: ``async with store_factory() as s``."""

    def factory() -> AsyncContextManager[Store]:
        return open_store(store_url, clock=clock)

    return factory


@pytest.fixture
async def store(store_factory) -> AsyncIterator[Store]:
    """A fresh store on an empty database, closed after the test."""
    async with store_factory() as opened:
        yield opened

