"""The cache with a real Redis (L2): read-through, typed values, L2 expiry, invalidation between
caches and between OS processes, the cross-process load lock, and Redis dying mid-run.

Two ``Cache`` objects in one test stand for two processes (each has its own origin, L1 and
singleflight); one test uses a real second process (tests/cache/peer.py). Tests about messages
between caches run in real time (a pub/sub message is not work a virtual clock can wait for);
tests about expiry run in virtual time with the thread-aware clock.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest
import trio

from thotto.cache import Cache, CacheConfig
from thotto.engine.aio import open_sidecar
from thotto.engine.clock import TrioClock

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def running_caches(url: str, namespace: str, count: int = 2, **config) -> AsyncIterator[list[Cache]]:
    """``count`` caches on one sidecar, each with its actor running and subscribed."""
    config.setdefault("jitter", 0.0)
    clock = config.pop("clock", None)
    async with open_sidecar() as sidecar, trio.open_nursery() as nursery:
        caches = [Cache(CacheConfig(redis_url=url, namespace=namespace, **config), sidecar=sidecar, clock=clock)
                  for _ in range(count)]
        for cache in caches:
            await nursery.start(cache.run)
        await wait_until(lambda: all(cache.stats().l2 == "ok" for cache in caches))
        yield caches
        nursery.cancel_scope.cancel()


async def wait_until(condition, timeout: float = 5.0, step: float = 0.002) -> float:
    """Poll ``condition`` in real time; returns the seconds it took."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(step)
    return trio.current_time() - start


async def test_read_through_l2_fills_the_other_caches_memory(redis_url, namespace):
    async with running_caches(redis_url, namespace) as (a, b):
        calls = []

        async def loader():
            calls.append(1)
            return {"best_hour": 14}

        assert await a.get_or_load("times:1", loader, ttl=60) == {"best_hour": 14}
        assert await b.get_or_load("times:1", loader, ttl=60) == {"best_hour": 14}
        assert calls == [1]  # b found it in L2
        assert b.peek("times:1") == {"best_hour": 14}  # and keeps it in memory
        assert b.stats().l2_hits == 1 and b.stats().loads == 0
        assert await b.get("absent") is None and b.stats().misses == 1
        assert await b.get_many(["times:1", "absent"]) == {"times:1": {"best_hour": 14}}


class Metrics(msgspec.Struct):
    user: int
    hours: list[int]


async def test_values_come_back_from_l2_as_the_type_asked_for(redis_url, namespace):
    async with running_caches(redis_url, namespace) as (a, b):
        await a.set("m", Metrics(7, [9, 14]))
        assert await b.get("m", type=Metrics) == Metrics(7, [9, 14])
        await a.set("n", Metrics(8, []))
        assert await b.get_many(["n"], type=Metrics) == {"n": Metrics(8, [])}
        untyped = await b.get_or_load("m2", lambda: Metrics(1, [2]))  # filled by b itself
        assert untyped == Metrics(1, [2])


async def test_l2_multiget_reads_many_keys_in_one_call(redis_url, namespace):
    async with running_caches(redis_url, namespace) as (a, b):
        for i in range(500):
            await a.set(f"k{i}", i)
        found = await b.get_many([f"k{i}" for i in range(600)])
        assert found == {f"k{i}": i for i in range(500)}
        assert len(b.l1) == 500


async def test_an_l2_entry_expires_with_its_ttl_in_virtual_time(redis_url, namespace, mock_clock):
    clock = TrioClock(datetime(2026, 3, 2, tzinfo=timezone.utc))
    async with running_caches(redis_url, namespace, clock=clock) as (a, b):
        await a.set("k", "v", ttl=60)
        written = trio.current_time()
        await trio.sleep_until(written + 20)
        assert await b.get("k") == "v"  # from L2, with 40 s left
        await trio.sleep_until(written + 60 - 1e-5)
        assert b.peek("k") == "v"
        await trio.sleep_until(written + 60 + 1e-5)  # wall-clock stamps have µs resolution
        assert b.peek("k") is None
        assert await b.get("k") is None  # L2's copy has expired too


async def test_a_write_evicts_the_other_caches_entry_within_100_ms(redis_url, namespace):
    async with running_caches(redis_url, namespace) as (a, b):
        await b.get_or_load("k", lambda: "old", ttl=600)
        await a.set("k", "new")
        assert await wait_until(lambda: b.peek("k") is None, timeout=0.1) < 0.1
        assert await b.get("k") == "new"

        await b.get_or_load("gone", lambda: 1, ttl=600)
        await a.delete("gone")
        await wait_until(lambda: b.peek("gone") is None, timeout=0.1)
        assert await b.get("gone") is None

        await b.get_or_load("u1:a", lambda: 1, tags=["user:1"])
        await b.get_or_load("u1:b", lambda: 2, tags=["user:1"])
        await b.get_or_load("u2:a", lambda: 3, tags=["user:2"])
        await a.invalidate_tags("user:1")
        await wait_until(lambda: b.peek("u1:a") is None and b.peek("u1:b") is None, timeout=0.1)
        assert b.peek("u2:a") == 3
        assert await b.get("u1:a") is None  # gone from L2 too
        assert b.stats().invalidations_received == 3

        await a.clear()
        await wait_until(lambda: len(b.l1) == 0, timeout=0.1)
        assert await b.get("u2:a") is None


async def test_concurrent_misses_in_two_caches_make_one_load_through_the_redis_lock(redis_url, namespace):
    async with running_caches(redis_url, namespace) as caches:
        calls = []

        async def loader():
            calls.append(1)
            await trio.sleep(0.2)
            return "value"

        results = []

        async def reader(cache: Cache) -> None:
            results.append(await cache.get_or_load("hot", loader, ttl=60))

        async with trio.open_nursery() as nursery:
            for cache in caches:
                for _ in range(500):
                    nursery.start_soon(reader, cache)
        assert calls == [1]
        assert results == ["value"] * 1000
        assert sum(cache.stats().lock_waits for cache in caches) == 1


async def test_invalidation_reaches_another_os_process_within_100_ms(redis_url, namespace):
    async with running_caches(redis_url, namespace, count=1) as (cache,):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.cache.peer", redis_url, namespace],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )
        peer = Peer(process)
        try:
            assert await peer.read() == "ready"
            # The peer writes: our memory copy goes within 100 ms.
            await cache.get_or_load("k", lambda: "mine", ttl=600)
            sent = trio.current_time()
            await peer.send("set k theirs")
            await wait_until(lambda: cache.peek("k") is None, timeout=0.1)
            assert trio.current_time() - sent < 0.1
            assert await peer.read() == "ok"
            assert await cache.get("k") == "theirs"

            # We write: the peer's memory copy goes too.
            assert await peer.ask("load j peer-value user:5") == "peer-value"
            assert await peer.ask("peek j") == "peer-value"
            await cache.invalidate_tags("user:5")
            await trio.sleep(0.1)
            assert await peer.ask("peek j") == "-"
            await cache.set("j", "ours")
            assert await peer.ask("get j") == "ours"
            await peer.send("quit")
        finally:
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0


class Peer:
    """Line-based conversation with tests/cache/peer.py."""

    def __init__(self, process: trio.Process):
        self.process = process
        self.buffer = b""

    async def send(self, line: str) -> None:
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def read(self) -> str:
        with trio.fail_after(15):
            while b"\n" not in self.buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise EOFError("the peer process ended")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    async def ask(self, line: str) -> str:
        await self.send(line)
        return await self.read()


async def test_redis_killed_mid_run_requests_keep_working_and_recovery_is_automatic(redis_server, namespace):
    async with running_caches(redis_server.url, namespace) as (a, b):
        loads = []

        async def loader():
            loads.append(1)
            return f"v{len(loads)}"

        assert await a.get_or_load("k", loader, ttl=600) == "v1"
        assert await b.get_or_load("k", loader, ttl=600) == "v1"  # from L2

        redis_server.kill()
        # Memory hits go on; misses are loaded; no request fails, none waits long.
        with trio.fail_after(3):
            assert await a.get_or_load("k", loader, ttl=600) == "v1"
            for i in range(20):
                assert await a.get_or_load(f"new{i}", loader, ttl=600) == f"v{len(loads)}"
            await a.set("s", 1)
            assert await a.get("s") == 1
            await a.delete("s")
            assert await b.get("nothing") is None
        await wait_until(lambda: a.stats().l2 == "degraded" and b.stats().l2 == "degraded")
        stats = a.stats()
        assert stats.l2_breaker in ("open", "half_open") and stats.l2_errors >= 1
        assert not stats.l2_subscribed or stats.l2_breaker != "closed"

        # While Redis is down, requests skip it at once (the breaker is open).
        started = trio.current_time()
        for i in range(100):
            await a.get_or_load(f"fast{i}", loader, ttl=600)
        assert trio.current_time() - started < 1.0

        redis_server.start()
        await wait_until(lambda: a.stats().l2 == "ok" and b.stats().l2 == "ok", timeout=15)
        # L2 and invalidation work again, with nobody having done anything.
        await a.set("after", "restart")
        assert await b.get("after") == "restart"
        await b.get_or_load("x", lambda: "old")
        await a.set("x", "new")
        await wait_until(lambda: b.peek("x") is None, timeout=0.5)


async def test_a_cache_whose_redis_is_down_at_start_starts_and_joins_later(redis_server, namespace):
    redis_server.kill()
    async with open_sidecar() as sidecar, trio.open_nursery() as nursery:
        cache = Cache(CacheConfig(redis_url=redis_server.url, namespace=namespace), sidecar=sidecar)
        with trio.fail_after(2):
            await nursery.start(cache.run)
        assert await cache.get_or_load("k", lambda: "loaded") == "loaded"
        assert cache.stats().l2 == "degraded"
        redis_server.start()
        await wait_until(lambda: cache.stats().l2 == "ok", timeout=15)
        await cache.set("j", 1)
        nursery.cancel_scope.cancel()
