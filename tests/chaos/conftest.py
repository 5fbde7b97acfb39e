"""Chaos fixtures: the sandbox as a child process, a Postgres cluster and a Redis of the test's
own (to stop, kill and restart), and :class:`~tests.chaos.harness.Chaos` worlds whose Thotto
processes are killed and reaped when the test ends, whatever happened.

Sizes: reduced by default (CI); full with ``THOTTO_CHAOS_FULL=1`` (``python -m tests.chaos
--full`` sets it). Tests read them through the ``sizes`` fixture.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.chaos.harness import Chaos, RedisServer, SandboxProcess
from tests.conftest import missing_service
from tests.support.postgres import PostgresServer, find_bindir

FULL = os.environ.get("THOTTO_CHAOS_FULL", "").lower() in ("1", "true", "yes")


class Sizes:
    """``sizes.pick(reduced, full)``: the reduced figure unless the full run was asked for."""

    full = FULL

    @staticmethod
    def pick(reduced, full):
        return full if FULL else reduced


@pytest.fixture
def sizes() -> Sizes:
    return Sizes()


@pytest.fixture
async def sandbox(tmp_path):
    """``thotto sandbox`` in a child process, with a durable record in tmp_path/sandbox."""
    server = SandboxProcess(tmp_path / "sandbox", tmp_path / "sandbox.log")
    try:
        await server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres():
    """A private Postgres cluster for this test alone, which it may stop and start."""
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
def own_redis(tmp_path):
    """A private redis-server for this test alone, which it may kill and restart."""
    if shutil.which("redis-server") is None:
        missing_service("Redis (redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def make_chaos(tmp_path, sandbox):
    """``make_chaos(database_url, **settings)``: a scenario's world; its processes die with it."""
    worlds: list[Chaos] = []

    def make(database_url: str | None = None, **settings) -> Chaos:
        url = database_url or str(tmp_path / "thotto" / "thotto.db")
        world = Chaos(tmp_path, sandbox, url, **settings)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        for process in world.processes:
            process.reap()
