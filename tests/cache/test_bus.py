"""Invalidations without Redis: caches sharing a Postgres store tell each other over its
broadcasts (LISTEN/NOTIFY), also when Redis is configured but down; a lost broadcast empties L1;
``l1_ttl`` bounds how long any process keeps an entry in memory.

Two ``Cache`` objects, each with its own store on one database, stand for two processes (each
store has its own listening connection, and a store never hears its own broadcasts).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio

from tests.cache.conftest import free_port
from tests.cache.test_redis import running_caches, wait_until
from tests.store.test_postgres_specific import sql, wait_for_listeners
from thotto.cache import Cache, CacheConfig
from thotto.store.postgres import open_postgres_store

pytestmark = pytest.mark.postgres


@contextlib.asynccontextmanager
async def caches_on_one_database(dsn: str, count: int = 2, **config) -> AsyncIterator[list[Cache]]:
    config.setdefault("jitter", 0.0)
    async with contextlib.AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        caches = []
        for _ in range(count):
            store = await stack.enter_async_context(open_postgres_store(dsn))
            cache = Cache(CacheConfig(**config), bus=store)
            await nursery.start(cache.run)
            caches.append(cache)
        yield caches
        nursery.cancel_scope.cancel()


async def test_deletes_and_tag_invalidations_reach_the_other_process_without_redis(postgres_dsn):
    async with caches_on_one_database(postgres_dsn) as (a, b):
        await b.get_or_load("k", lambda: "old", ttl=600)
        await b.get_or_load("u1:a", lambda: 1, ttl=600, tags=["user:1"])
        await b.get_or_load("u2:a", lambda: 2, ttl=600, tags=["user:2"])
        await a.delete("k")
        await wait_until(lambda: b.peek("k") is None, timeout=1)
        await a.invalidate_tags("user:1")
        await wait_until(lambda: b.peek("u1:a") is None, timeout=1)
        assert b.peek("u2:a") == 2
        await a.clear()
        await wait_until(lambda: len(b.l1) == 0, timeout=1)
        assert b.stats().invalidations_received == 3


async def test_a_fill_is_not_announced_without_redis(postgres_dsn):
    async with caches_on_one_database(postgres_dsn) as (a, b):
        await b.get_or_load("k", lambda: "b's", ttl=600)
        await a.set("k", "a's")
        # A broadcast sent after the set: once it has arrived, an announced set would have too.
        await a.delete("other")
        await wait_until(lambda: b.stats().invalidations_received == 1, timeout=1)
        assert b.peek("k") == "b's"


async def test_a_lost_broadcast_empties_memory(postgres_dsn):
    async with caches_on_one_database(postgres_dsn) as (a, b):
        await b.get_or_load("k", lambda: "old", ttl=600)
        await sql(postgres_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND application_name = 'thotto-listener'")
        await wait_until(lambda: b.peek("k") is None, timeout=5)
        await wait_for_listeners(postgres_dsn, 2)
        await b.get_or_load("j", lambda: "new", ttl=600)
        await a.delete("j")
        await wait_until(lambda: b.peek("j") is None, timeout=1)


async def test_invalidations_travel_over_the_store_while_redis_is_down(postgres_dsn):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with caches_on_one_database(postgres_dsn, redis_url=dead_redis) as (a, b):
        await b.get_or_load("u1:a", lambda: 1, ttl=600, tags=["user:1"])
        await a.invalidate_tags("user:1")
        await wait_until(lambda: b.peek("u1:a") is None, timeout=1)


async def test_l1_ttl_bounds_the_memory_copy(autojump_clock):
    cache = Cache(CacheConfig(jitter=0.0))
    await cache.set("token", "alice", ttl=60, l1_ttl=0.5)
    await trio.sleep(0.4)
    assert cache.peek("token") == "alice"
    await trio.sleep(0.2)
    assert cache.peek("token") is None


async def test_l1_ttl_travels_with_the_value_through_redis(redis_url, namespace):
    async with running_caches(redis_url, namespace) as (a, b):
        await a.set("token", "alice", ttl=60, l1_ttl=0.3)
        assert await b.get("token") == "alice"  # from L2, kept in b's memory...
        assert b.peek("token") == "alice"
        await wait_until(lambda: b.peek("token") is None, timeout=0.6)  # ...for 0.3 s only
        assert await b.get("token") == "alice"  # L2 still has it for its whole TTL


async def test_a_store_that_cannot_broadcast_never_fails_an_invalidation(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        cache = Cache(CacheConfig(jitter=0.0), bus=store)
        await cache.get_or_load("u1:a", lambda: 1, ttl=600, tags=["user:1"])
    # The store is closed now: the broadcast fails, the invalidation here still happens.
    await cache.invalidate_tags("user:1")
    await cache.delete("k")
    assert cache.peek("u1:a") is None
    assert cache.stats().bus_errors == 2


async def test_a_process_that_reaches_redis_deletes_what_a_process_that_could_not_invalidated(
        postgres_dsn, redis_url, namespace):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with contextlib.AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stores = [await stack.enter_async_context(open_postgres_store(postgres_dsn)) for _ in range(2)]
        cut_off = Cache(CacheConfig(redis_url=dead_redis, namespace=namespace), bus=stores[0])
        connected = Cache(CacheConfig(redis_url=redis_url, namespace=namespace), bus=stores[1])
        for cache in (cut_off, connected):
            await nursery.start(cache.run)
        await wait_until(lambda: connected.stats().l2 == "ok")
        await connected.set("token:abc", "alice", ttl=600, tags=["user:1"])
        await cut_off.invalidate_tags("user:1")  # its Redis fails: over the store
        await wait_until(lambda: connected.peek("token:abc") is None, timeout=1)
        # L2 no longer has it either, so it cannot come back into anyone's memory from there.
        with trio.fail_after(1):
            while await connected.get("token:abc") is not None:
                connected.l1.clear()
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
