"""Cache benchmark: L1 hits, L2 (Redis) reads single and batched, a stampede of concurrent
misses, and the database queries a cache saves on a Zipf(1.0) read workload.

The Zipf target (95% of database queries saved with 2k entries over 10k keys) cannot be met by
any cache at s = 1.0: even an ideal cache holding the 2,000 most popular keys answers only
H(2000)/H(10000) = 83.6% of reads. The result records that bound and the entries an ideal cache
would need for 95%.

Why: the cache sits in front of every analytics, community-rules and post-list read; its hit path
must cost next to nothing, L2 must keep up with several processes' misses, and a stampede must
not reach the database. The L2 figures run against a private redis-server this bench starts on a
free port and stops afterwards. The ``--store`` option does not apply. For the plot, the Zipf
workload also runs with LRU caches of other sizes (hit ratio against cache size, with the ideal
cache's bound).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import trio

from bench.common import Result, Stopwatch, free_port, median_of, progress, report
from thotto.cache import Cache, CacheConfig
from thotto.engine.aio import open_sidecar

# No absolute rates as targets (ops/s say more about the machine than about the cache); what
# does not depend on the machine is kept.
TARGETS = {
    "cache.stampede.loads": ("<=", 1),
    "cache.zipf.db_reduction": (">=", 95),
}
L2_TASKS = 50
MULTIGET_BATCH = 1_000
ZIPF_KEYS = 10_000
ZIPF_CACHE = 2_000
ZIPF_CACHE_SIZES = [250, 500, 1_000, 2_000, 4_000, 8_000]  # for the hit-ratio plot
STORES = (None,)  # store-independent


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"l1": 200_000, "l2": 5_000, "multiget": 50_000, "zipf": 50_000}
    return {"l1": 2_000_000, "l2": 50_000, "multiget": 500_000, "zipf": 500_000}


async def run(kind: str | None, quick: bool, postgres_dsn: str | None) -> list[Result]:
    sizes = _sizes(quick)
    progress("  cache: L1 reads, stampede, Zipf")
    results = [
        report(Result("cache.l1.get", median_of([await l1_reads(sizes["l1"]) for _ in range(3)]), "ops/s",
                      params={"keys": ZIPF_CACHE, "call": "await cache.get(key)"})),
        report(Result("cache.l1.peek", median_of([await l1_reads(sizes["l1"], sync=True) for _ in range(3)]),
                      "ops/s", params={"keys": ZIPF_CACHE, "call": "cache.peek(key) (sync)"})),
        report(Result("cache.stampede.loads", await stampede(), "loads",
                      params={"concurrent_misses": 1000, "where": "one process"})),
    ]
    reduction, bound = await zipf_reduction(sizes["zipf"])
    zipf = Result("cache.zipf.db_reduction", reduction, "%",
                  params={"keys": ZIPF_KEYS, "cache_entries": ZIPF_CACHE, "requests": sizes["zipf"],
                          "zipf_s": 1.0, "policy": "LRU", "ideal_cache_pct": round(bound, 1),
                          "ideal_entries_for_95pct": entries_for(95.0)})
    zipf.series["hit_ratio_by_size"] = [(entries, (await zipf_reduction(sizes["zipf"] // 5, entries))[0],
                                         zipf_upper_bound(ZIPF_KEYS, entries))
                                        for entries in ZIPF_CACHE_SIZES]
    results.append(report(zipf))
    if shutil.which("redis-server") is None:
        progress("  redis-server not found: L2 benches skipped")
        return results
    progress("  cache: L2 (a private redis-server)")
    with private_redis() as url:
        async with l2_caches(url) as (writer, reader, other):
            keys = [f"k{i}" for i in range(10_000)]
            value = {"user": 1, "hours": [9, 14, 20], "score": 0.75}
            await fill_l2(writer, keys, value)
            results.append(report(Result(
                "cache.l2.get", median_of([await l2_get(reader, keys, sizes["l2"], L2_TASKS) for _ in range(3)]),
                "ops/s", params={"tasks": L2_TASKS, "l1_entries": 1})))
            results.append(report(Result(
                "cache.l2.get.sequential", median_of([await l2_get(reader, keys, sizes["l2"] // 5, 1)
                                                      for _ in range(3)]),
                "ops/s", params={"tasks": 1, "l1_entries": 1})))
            results.append(report(Result(
                "cache.l2.multiget", median_of([await l2_multiget(reader, keys, sizes["multiget"])
                                                for _ in range(3)]),
                "keys/s", params={"batch": MULTIGET_BATCH})))
            results.append(report(Result(
                "cache.stampede.loads.two_caches", await stampede(reader, other, key="stampede"), "loads",
                params={"concurrent_misses": 1000, "where": "two caches sharing Redis"})))
    return results


# --- L1 --------------------------------------------------------------------------------------


async def _l1_cache() -> tuple[Cache, list[str]]:
    cache = Cache(CacheConfig(max_entries=ZIPF_CACHE, jitter=0.0))
    keys = [f"user:{i}:times" for i in range(ZIPF_CACHE)]
    for key in keys:
        await cache.set(key, {"best_hour": 14}, ttl=3600)
    rng = random.Random(1)
    return cache, [keys[rng.randrange(len(keys))] for _ in range(100_000)]


async def l1_reads(count: int, *, sync: bool = False) -> float:
    """L1 hits per second through ``await cache.get`` (or the synchronous ``cache.peek``)."""
    cache, sequence = await _l1_cache()
    rounds = max(1, count // len(sequence))
    if sync:
        peek = cache.peek
        with Stopwatch() as watch:
            for _ in range(rounds):
                for key in sequence:
                    peek(key)
    else:
        get = cache.get
        with Stopwatch() as watch:
            for _ in range(rounds):
                for key in sequence:
                    await get(key)
    assert cache.stats().misses == 0 and cache.l1.misses == 0
    return rounds * len(sequence) / watch.seconds


# --- stampede --------------------------------------------------------------------------------


async def stampede(*caches: Cache, key: str = "hot", readers: int = 1000, load_seconds: float = 0.05) -> int:
    """How many loads ``readers`` concurrent misses of one key make, spread over ``caches``."""
    caches = caches or (Cache(CacheConfig(jitter=0.0)),)
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await trio.sleep(load_seconds)
        return "value"

    async with trio.open_nursery() as nursery:
        for i in range(readers):
            nursery.start_soon(caches[i % len(caches)].get_or_load, key, loader)
    return loads


# --- Zipf --------------------------------------------------------------------------------------


def zipf_upper_bound(keys: int, cached: int, s: float = 1.0) -> float:
    """Hit ratio (%) of an ideal cache holding the ``cached`` most popular of ``keys``."""
    weights = [1 / (rank ** s) for rank in range(1, keys + 1)]
    return 100 * sum(weights[:cached]) / sum(weights)


def entries_for(percent: float, keys: int = ZIPF_KEYS, s: float = 1.0) -> int:
    """How many entries an ideal cache needs to answer ``percent`` of Zipf(s) reads."""
    weights = [1 / (rank ** s) for rank in range(1, keys + 1)]
    goal = sum(weights) * percent / 100
    running = 0.0
    for count, weight in enumerate(weights, 1):
        running += weight
        if running >= goal:
            return count
    return keys


async def zipf_reduction(requests: int, entries: int = ZIPF_CACHE) -> tuple[float, float]:
    """Database queries saved (%) against one query per request by an LRU cache of ``entries``,
    and the ideal cache's bound."""
    rng = random.Random(7)
    cumulative = list(itertools.accumulate(1 / rank for rank in range(1, ZIPF_KEYS + 1)))
    wanted = rng.choices(range(ZIPF_KEYS), cum_weights=cumulative, k=requests)
    cache = Cache(CacheConfig(max_entries=entries, max_bytes=None, jitter=0.0))
    queries = 0

    async def query() -> int:
        nonlocal queries
        queries += 1
        return 1

    for key in wanted:
        await cache.get_or_load(f"row:{key}", query, ttl=86400)
    return 100 * (1 - queries / requests), zipf_upper_bound(ZIPF_KEYS, entries)


# --- L2 ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port (no persistence); stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="thotto-bench-redis-") as directory:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@contextlib.asynccontextmanager
async def l2_caches(url: str) -> AsyncIterator[tuple[Cache, Cache, Cache]]:
    """A writer, a reader whose L1 holds one entry (so every read goes to L2), and a third
    cache; all running, on one sidecar."""
    async with open_sidecar("bench-cache") as sidecar, trio.open_nursery() as nursery:
        caches = (
            Cache(CacheConfig(redis_url=url, namespace="bench", jitter=0.0), sidecar=sidecar),
            Cache(CacheConfig(redis_url=url, namespace="bench", jitter=0.0, max_entries=1), sidecar=sidecar),
            Cache(CacheConfig(redis_url=url, namespace="bench", jitter=0.0), sidecar=sidecar),
        )
        for cache in caches:
            await nursery.start(cache.run)
        with trio.fail_after(10):
            while not all(cache.stats().l2 == "ok" for cache in caches):
                await trio.sleep(0.01)
        yield caches
        nursery.cancel_scope.cancel()


async def fill_l2(cache: Cache, keys: list[str], value: object) -> None:
    async with trio.open_nursery() as nursery:
        for start in range(0, len(keys), len(keys) // 20):
            async def writer(chunk: list[str]) -> None:
                for key in chunk:
                    await cache.set(key, value, ttl=3600)

            nursery.start_soon(writer, keys[start:start + len(keys) // 20])


async def l2_get(cache: Cache, keys: list[str], count: int, tasks: int) -> float:
    per_task = count // tasks
    before = cache.stats().l2_hits

    async def reader(offset: int) -> None:
        # Distinct keys in turn: the one-entry L1 never has the next one.
        for i in range(per_task):
            await cache.get(keys[(offset + i * tasks) % len(keys)])

    with Stopwatch() as watch:
        async with trio.open_nursery() as nursery:
            for offset in range(tasks):
                nursery.start_soon(reader, offset)
    hits = cache.stats().l2_hits - before
    assert hits >= per_task * tasks * 0.99, f"only {hits} L2 hits"
    return per_task * tasks / watch.seconds


async def l2_multiget(cache: Cache, keys: list[str], count: int) -> float:
    batches = max(1, count // MULTIGET_BATCH)
    with Stopwatch() as watch:
        for b in range(batches):
            start = (b * MULTIGET_BATCH) % len(keys)
            found = await cache.get_many(keys[start:start + MULTIGET_BATCH])
            assert len(found) == MULTIGET_BATCH
    return batches * MULTIGET_BATCH / watch.seconds
