"""Session-wide fixtures: private Postgres and Redis servers started from the machine's binaries.

Tests that need Postgres or Redis skip when the binaries are missing, except under ``CI=true``,
where they fail: CI must never pass by silently skipping the real-database tests.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.postgres import PostgresServer, find_bindir

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_service(what: str) -> None:
    """Skip the test, or fail it under CI=true."""
    message = f"{what} is not installed on this machine"
    if IN_CI:
        pytest.fail(f"{message}; CI must run every Postgres and Redis test (.ci/run installs them)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server():
    """A private Postgres cluster for this session (see tests/support/postgres.py)."""
    bindir = find_bindir()
    if bindir is None:
        missing_service("PostgreSQL (initdb/pg_ctl)")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server):
    """The DSN of a fresh, empty database on the session's private cluster."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_url(request):
    """``redis://`` URL of a private redis-server for this session (pytest-redis)."""
    if shutil.which("redis-server") is None:
        missing_service("Redis (redis-server)")
    process = request.getfixturevalue("redis_proc")
    return f"redis://{process.host}:{process.port}/0"


def pytest_collection_modifyitems(config, items):
    """Mark tests that use the server fixtures, so ``-m 'not postgres'`` works."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_server" in fixtures or "postgres_dsn" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in fixtures:
            item.add_marker(pytest.mark.redis)
