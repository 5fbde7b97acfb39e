"""The cache in memory only (no Redis), in virtual time: expiry, LRU and byte bounds, tags, TTL
classes and jitter, singleflight, stale-while-revalidate, serve-stale-on-error, telemetry."""

from __future__ import annotations

import math

import msgspec
import pytest
import trio
import trio.testing

import actors
from thotto.cache import Cache, CacheConfig, LocalCache


def memory_cache(**config) -> Cache:
    config.setdefault("jitter", 0.0)
    return Cache(CacheConfig(**config))


class Loader:
    """Counts calls; returns the next value of ``values`` (or raises it if it is an exception)."""

    def __init__(self, *values, delay: float = 0.0):
        self.values = list(values) or ["v"]
        self.calls = 0
        self.delay = delay

    async def __call__(self):
        self.calls += 1
        if self.delay:
            await trio.sleep(self.delay)
        value = self.values[min(self.calls, len(self.values)) - 1]
        if isinstance(value, BaseException):
            raise value
        return value


async def test_set_get_delete_and_exact_ttl_expiry(autojump_clock):
    cache = memory_cache()
    await cache.set("a", {"x": 1}, ttl=10)
    written = trio.current_time()
    assert await cache.get("a") == {"x": 1}
    assert cache.peek("a") == {"x": 1}
    await trio.sleep_until(written + 10 - 1e-6)
    assert await cache.get("a") == {"x": 1}
    await trio.sleep_until(written + 10)
    assert await cache.get("a") is None
    assert await cache.get("a", default="d") == "d"

    await cache.set("b", 2)
    await cache.delete("b")
    assert cache.peek("b") is None
    stats = cache.stats()
    assert stats.evictions_manual == 1
    assert stats.l2 == "off"


async def test_the_sweeper_drops_expired_entries_as_ttl_evictions(autojump_clock):
    cache = memory_cache(sweep_interval_seconds=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for i in range(10):
            await cache.set(f"k{i}", i, ttl=5 + i)
        await trio.sleep(5.5)
        assert len(cache.l1) == 9  # the sweep at 5 s dropped k0
        await trio.sleep(10)
        stats = cache.stats()
        assert stats.keys == 0 and stats.evictions_ttl == 10 and stats.bytes == 0
        nursery.cancel_scope.cancel()


async def test_lru_bound_evicts_the_least_recently_used(autojump_clock):
    cache = memory_cache(max_entries=3)
    for key in "abc":
        await cache.set(key, key)
    assert await cache.get("a") == "a"  # a is now the most recent
    await cache.set("d", "d")
    assert cache.peek("b") is None
    assert [cache.peek(key) for key in "acd"] == ["a", "c", "d"]
    assert cache.stats().evictions_lru == 1


async def test_byte_bound_and_byte_estimate(autojump_clock):
    cache = memory_cache(max_entries=1000, max_bytes=5_000)
    for i in range(100):
        await cache.set(f"k{i}", "x" * 500)
    stats = cache.stats()
    assert stats.bytes <= 5_000
    # Each entry: 503 bytes of msgpack, a 3-byte key and 200 of overhead; 7 fit in 5,000.
    assert stats.keys == 7 and stats.bytes == 7 * 706
    assert stats.evictions_lru == 100 - stats.keys


async def test_ttl_classes_and_their_defaults(autojump_clock):
    cache = memory_cache()
    assert cache.config.ttl_classes == {"user_metrics": 3600.0, "community": 21600.0, "post_list": 300.0}
    await cache.set("metrics", 1, ttl_class="user_metrics")
    await cache.set("rules", 2, ttl_class="community")
    await cache.set("posts", 3, ttl_class="post_list")
    await cache.set("plain", 4)  # default_ttl_seconds = 300
    await trio.sleep(300)
    assert [cache.peek(k) for k in ("metrics", "rules", "posts", "plain")] == [1, 2, None, None]
    await trio.sleep(3300)
    assert [cache.peek(k) for k in ("metrics", "rules")] == [None, 2]
    await trio.sleep(21600 - 3600)
    assert cache.peek("rules") is None
    with pytest.raises(ValueError, match="Unknown TTL class 'nope'; known: community, post_list"):
        await cache.set("x", 1, ttl_class="nope")
    custom = memory_cache(ttl_classes={"hot": 1.0})
    await custom.set("h", 1, ttl_class="hot")
    await trio.sleep(1)
    assert custom.peek("h") is None


async def test_jitter_shortens_each_ttl_by_up_to_the_given_share(autojump_clock):
    cache = Cache(CacheConfig(jitter=0.2))
    now = trio.current_time()
    for i in range(200):
        await cache.set(f"k{i}", i, ttl=100)
    lives = [entry.fresh_until - now for entry in cache.l1.data.values()]
    assert all(80 < life <= 100 for life in lives)
    assert max(lives) - min(lives) > 10  # actually spread


async def test_tags_invalidate_every_entry_they_mark(autojump_clock):
    cache = memory_cache()
    await cache.set("u1:times", 1, tags=["user:1"])
    await cache.set("u1:stats", 2, tags=["user:1", "stats"])
    await cache.set("u2:stats", 3, tags=["user:2", "stats"])
    await cache.invalidate_tags("user:1")
    assert [cache.peek(k) for k in ("u1:times", "u1:stats", "u2:stats")] == [None, None, 3]
    await cache.invalidate_tags("stats")
    assert cache.peek("u2:stats") is None
    assert cache.l1.tags == {}
    await cache.clear()
    assert cache.stats().evictions_manual == 3


async def test_get_or_load_loads_once_and_then_hits(autojump_clock):
    cache = memory_cache()
    loader = Loader("v1", "v2", delay=0.5)
    assert await cache.get_or_load("k", loader, ttl=60) == "v1"
    assert await cache.get_or_load("k", loader, ttl=60) == "v1"
    assert loader.calls == 1
    await trio.sleep(60)
    assert await cache.get_or_load("k", loader, ttl=60) == "v2"
    stats = cache.stats()
    assert (stats.loads, stats.l1_hits, stats.misses) == (2, 1, 2)
    assert stats.load_seconds_total == 1.0 and stats.load_seconds_max == 0.5
    assert cache.get_or_load  # plain functions work as loaders too
    assert await cache.get_or_load("sync", lambda: 42) == 42


async def test_a_thousand_concurrent_misses_make_exactly_one_load(autojump_clock):
    cache = memory_cache()
    loader = Loader("value", delay=1.0)
    results = []

    async def reader() -> None:
        results.append(await cache.get_or_load("hot", loader, ttl=60))

    async with trio.open_nursery() as nursery:
        for _ in range(1000):
            nursery.start_soon(reader)
    assert loader.calls == 1
    assert results == ["value"] * 1000
    stats = cache.stats()
    assert stats.loads == 1 and stats.coalesced == 999


async def test_a_loader_error_reaches_every_waiter_and_nothing_is_stored(autojump_clock):
    cache = memory_cache()
    loader = Loader(RuntimeError("db down"), "fine", delay=1.0)
    errors = []

    async def reader() -> None:
        try:
            await cache.get_or_load("k", loader)
        except RuntimeError as error:
            errors.append(str(error))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(reader)
    assert errors == ["db down"] * 10 and loader.calls == 1
    assert await cache.get_or_load("k", loader) == "fine"
    assert cache.stats().load_errors == 1


async def test_when_the_loading_caller_is_cancelled_a_waiter_loads_instead(autojump_clock):
    cache = memory_cache()
    loader = Loader("first", "second", delay=2.0)
    got = []

    async def waiter() -> None:
        got.append(await cache.get_or_load("k", loader))

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(1.0):
            async with trio.open_nursery() as inner:
                inner.start_soon(cache.get_or_load, "k", loader)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(waiter)
                await trio.sleep_forever()
    assert got == ["second"] and loader.calls == 2


async def test_stale_while_revalidate_serves_old_values_during_one_refresh(autojump_clock):
    cache = memory_cache()
    loader = Loader("v1", "v2", delay=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert await cache.get_or_load("k", loader, ttl=10, stale_while_revalidate=5) == "v1"
        await trio.sleep(12)  # stale, inside the 5 s window
        assert await cache.get_or_load("k", loader, ttl=10) == "v1"
        assert await cache.get_or_load("k", loader, ttl=10) == "v1"  # refresh already running
        await trio.sleep(1.5)  # the refresh took 1 s
        assert loader.calls == 2
        assert await cache.get_or_load("k", loader, ttl=10) == "v2"
        stats = cache.stats()
        assert stats.stale_hits == 2 and stats.loads == 2
        # Past the window a stale entry is a plain miss (waits for the load).
        await trio.sleep(10 + 5)
        loader.values.append("v3")
        assert await cache.get_or_load("k", loader, ttl=10) == "v3"
        nursery.cancel_scope.cancel()


async def test_stale_while_revalidate_without_the_actor_loads_in_line(autojump_clock):
    cache = memory_cache(stale_while_revalidate_seconds=5)
    loader = Loader("v1", "v2")
    await cache.get_or_load("k", loader, ttl=10)
    await trio.sleep(11)
    assert await cache.get_or_load("k", loader, ttl=10) == "v2"


async def test_serve_stale_on_error_answers_with_the_expired_value(autojump_clock):
    cache = memory_cache(serve_stale_on_error_seconds=60)
    loader = Loader("v1", RuntimeError("api down"), RuntimeError("api down"), "v2")
    assert await cache.get_or_load("k", loader, ttl=10) == "v1"
    await trio.sleep(30)
    assert await cache.get_or_load("k", loader, ttl=10) == "v1"  # loader failed: stale
    assert cache.stats().stale_on_error == 1
    await trio.sleep(41)  # past 10 + 60: the entry is gone
    with pytest.raises(RuntimeError, match="api down"):
        await cache.get_or_load("k", loader, ttl=10)
    assert await cache.get_or_load("k", loader, ttl=10) == "v2"


async def test_a_delete_during_a_load_keeps_the_loaded_value_out_of_memory(autojump_clock):
    cache = memory_cache()
    loader = Loader("old", "new", delay=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.get_or_load, "k", loader)
        await trio.sleep(0.5)
        await cache.delete("k")  # the data changed while we were reading it
    assert cache.peek("k") is None
    assert await cache.get_or_load("k", loader) == "new"


async def test_get_many_reads_memory_and_counts(autojump_clock):
    cache = memory_cache()
    await cache.set("a", 1)
    await cache.set("b", 2)
    assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    stats = cache.stats()
    assert stats.l1_hits == 2 and stats.misses == 1
    assert math.isclose(stats.hit_ratio, 2 / 3)
    assert msgspec.json.decode(msgspec.json.encode(stats))["keys"] == 2


async def test_the_actor_starts_and_stops_under_a_supervisor(autojump_clock):
    cache = memory_cache()
    async with actors.open_supervisor(
        [actors.ChildSpec("cache", cache.run, wants_context=True)], name="test"
    ) as supervisor:
        await cache.set("k", 1)
        assert cache.peek("k") == 1
        supervisor.stop()
    assert cache.peek("k") == 1  # memory survives the actor


def test_local_cache_expire_skips_overwritten_entries():
    # Plain data structure, no Trio needed for put/expire with explicit times.
    l1 = LocalCache(max_entries=10)
    l1.put("k", 1, fresh_until=5.0)
    l1.put("k", 2, fresh_until=50.0)
    assert l1.expire(10.0) == 0 and l1.data["k"].value == 2
    assert l1.expire(50.0) == 1 and not l1.data
    with pytest.raises(ValueError):
        LocalCache(max_entries=0)


def test_config_from_settings():
    from thotto.config import load_settings

    settings = load_settings(environ={"THOTTO_CACHE_TTL_POST_LIST_SECONDS": "60", "THOTTO_CACHE_MAX_MB": "0",
                                      "THOTTO_REDIS_URL": "redis://127.0.0.1:6379/2"})
    config = CacheConfig.from_settings(settings, jitter=0.0)
    assert config.ttl_classes == {"user_metrics": 3600.0, "community": 21600.0, "post_list": 60.0}
    assert config.max_bytes is None and config.redis_url == "redis://127.0.0.1:6379/2"
    assert config.jitter == 0.0 and config.max_entries == 10_000
    with pytest.raises(ValueError):
        CacheConfig(ttl_classes={"bad": 0})
