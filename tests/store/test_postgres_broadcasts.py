"""Broadcasts between Postgres stores (LISTEN/NOTIFY): what the cache's invalidations ride on when
there is no Redis."""

from __future__ import annotations

import contextlib

import pytest
import trio

from tests.store.test_postgres_specific import sql, wait_for_listeners
from thotto.store.postgres import open_postgres_store

pytestmark = pytest.mark.postgres


async def next_message(messages, seconds: float = 10):
    with trio.fail_after(seconds):
        return await messages.__anext__()


async def test_a_broadcast_reaches_every_other_store_in_order(postgres_dsn):
    async with (open_postgres_store(postgres_dsn) as sender, open_postgres_store(postgres_dsn) as a,
                open_postgres_store(postgres_dsn) as b,
                contextlib.aclosing(a.broadcasts()) as heard_by_a,
                contextlib.aclosing(b.broadcasts()) as heard_by_b):
        for message in (b"first", b"\x00\xffbinary", b"third"):
            await sender.broadcast(message)
        for heard in (heard_by_a, heard_by_b):
            assert [await next_message(heard) for _ in range(3)] == [b"first", b"\x00\xffbinary", b"third"]


async def test_a_listener_that_reconnects_says_broadcasts_may_have_been_missed(postgres_dsn):
    async with (open_postgres_store(postgres_dsn) as sender, open_postgres_store(postgres_dsn) as listener,
                contextlib.aclosing(listener.broadcasts()) as heard):
        killed = await sql(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'thotto-listener'",
        )
        assert killed, "no LISTEN connection found"
        assert await next_message(heard) is None
        await wait_for_listeners(postgres_dsn, 2)
        await sender.broadcast(b"after")
        assert await next_message(heard) == b"after"
