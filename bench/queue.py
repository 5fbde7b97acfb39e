"""End-to-end queue benchmark through the engine with a no-op handler.

* ``queue.enqueue.single|concurrent|batch``: enqueue through ``Engine`` (validation included).
* ``queue.drain``: jobs/s from "N jobs due" to "N outcomes stored", 8 poster workers.
* ``queue.lateness.p50|p99|max``: 200 jobs due at spread times 2–4 s ahead; start minus due time.
* ``memory.rss_1m_future_jobs``: process RSS with 1M jobs scheduled in the future and the engine
  running; ``queue.next_due.small|1m``: the cost of finding the next job with 10 and 1M pending
  (it must not grow with the number pending).
"""

from __future__ import annotations

import contextlib
import gc
import random
import resource
import statistics
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from bench.common import Result, Stopwatch
from bench.databases import fresh_postgres_database
from thotto.clock import SystemClock
from thotto.config import Settings
from thotto.engine import Engine, open_engine
from thotto.handlers import HandlerRegistry
from thotto.messages import utcnow

TARGETS = {
    "sqlite:queue.drain": (">=", 150_000),
    "postgres:queue.drain": (">=", 40_000),
    "queue.lateness.p99": ("<=", 2.0),
    "queue.lateness.max": ("<=", 5.0),
    "memory.rss_1m_future_jobs": ("<=", 150),
}
CALLERS = 50
BATCH = 1_000
WORKERS = 8


@dataclass
class Sizes:
    single: int
    concurrent: int
    batch_total: int
    drain: int
    lateness_jobs: int
    future_jobs: int

    @classmethod
    def pick(cls, quick: bool, jobs: int | None) -> "Sizes":
        if quick:
            return cls(200, 1_000, 5_000, jobs or 5_000, 50, 20_000)
        return cls(5_000, 50_000, 200_000, jobs or 200_000, 200, 1_000_000)


@contextlib.asynccontextmanager
async def bench_engine(kind: str, postgres_dsn: str | None, *, run_workers: bool = True) -> AsyncIterator[Engine]:
    """An engine on a fresh, empty database."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="thotto-q-"))
            settings = Settings(data_dir=directory, workers=WORKERS)
        else:
            settings = Settings(database_url=stack.enter_context(fresh_postgres_database(postgres_dsn)),
                                workers=WORKERS)
        async with open_engine(settings, clock=SystemClock(), run_workers=run_workers) as engine:
            yield engine


async def noop(ctx) -> None:
    pass


async def enqueue_rates(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    results = []
    async with bench_engine(kind, dsn, run_workers=False) as engine:
        with Stopwatch() as watch:
            for _ in range(sizes.single):
                await engine.enqueue("noop")
        results.append(_rate("queue.enqueue.single", kind, sizes.single, watch, callers=1))

        async def caller(count: int) -> None:
            for _ in range(count):
                await engine.enqueue("noop")

        with Stopwatch() as watch:
            async with trio.open_nursery() as nursery:
                for _ in range(CALLERS):
                    nursery.start_soon(caller, sizes.concurrent // CALLERS)
        results.append(_rate("queue.enqueue.concurrent", kind, sizes.concurrent, watch, callers=CALLERS))

        batches = [[engine.new_job("noop") for _ in range(BATCH)] for _ in range(sizes.batch_total // BATCH)]
        with Stopwatch() as watch:
            for batch in batches:
                await engine.enqueue_many(batch)
        results.append(_rate("queue.enqueue.batch", kind, sizes.batch_total, watch, batch=BATCH))
    return results


async def drain(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    """Enqueue N due jobs with no workers running, then time an engine emptying the queue
    (from opening it to the last outcome stored)."""
    registry = HandlerRegistry()
    registry.register("noop", noop)
    with tempfile.TemporaryDirectory(prefix="thotto-drain-") as directory, contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_postgres_database(dsn)) if kind == "postgres" else None
        settings = Settings(data_dir=directory, database_url=dsn, workers=WORKERS)
        async with open_engine(settings, clock=SystemClock(), run_workers=False) as engine:
            for start in range(0, sizes.drain, 10_000):
                count = min(10_000, sizes.drain - start)
                await engine.enqueue_many([engine.new_job("noop") for _ in range(count)])
        with Stopwatch() as watch:
            async with open_engine(settings, clock=SystemClock(), registry=registry) as engine:
                while engine.tree.pool.counts["completed"] < sizes.drain:
                    await trio.sleep(0.001)
    return [_rate("queue.drain", kind, sizes.drain, watch, workers=WORKERS)]


async def lateness(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    """Jobs due at random times 2–4 s ahead: how late does each start?"""
    late_ms: list[float] = []
    async with bench_engine(kind, dsn) as engine:
        async def measure(ctx) -> None:
            late_ms.append((utcnow() - ctx.job.run_at).total_seconds() * 1000)

        engine.register_handler("measure", measure)
        start = utcnow()
        dues = [start + timedelta(seconds=random.uniform(2, 4)) for _ in range(sizes.lateness_jobs)]
        for due in dues:
            await engine.schedule("measure", due)
        while len(late_ms) < sizes.lateness_jobs:
            await trio.sleep(0.05)
    late_ms.sort()
    quantiles = statistics.quantiles(late_ms, n=100, method="inclusive")
    params = {"jobs": sizes.lateness_jobs}
    return [
        Result("queue.lateness.p50", quantiles[49], "ms", kind, params),
        Result("queue.lateness.p99", quantiles[98], "ms", kind, params),
        Result("queue.lateness.max", late_ms[-1], "ms", kind, params),
    ]


async def memory(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    """RSS of a running engine with many future jobs pending, and the next-due lookup with few
    and with many pending."""
    async with bench_engine(kind, dsn) as engine:
        await engine.enqueue_many([engine.new_job("noop", run_at=_far(i)) for i in range(10)])
        small = await _time_next_due(engine)
        for start in range(0, sizes.future_jobs, 10_000):
            await engine.enqueue_many([engine.new_job("noop", run_at=_far(start + i)) for i in range(10_000)])
        big = await _time_next_due(engine)
        await trio.sleep(1)
        gc.collect()
        rss_mb = _current_rss_mb()
    params = {"pending": sizes.future_jobs}
    return [
        Result("memory.rss_1m_future_jobs", rss_mb, "MB", kind, params),
        Result("queue.next_due.small", small, "µs", kind, {"pending": 10}),
        Result("queue.next_due.1m", big, "µs", kind, params),
    ]


def _far(i: int) -> datetime:
    return utcnow() + timedelta(days=1, seconds=i)


async def _time_next_due(engine: Engine, rounds: int = 200) -> float:
    with Stopwatch() as watch:
        for _ in range(rounds):
            await engine.store.next_due()
    return watch.seconds / rounds * 1e6


def _current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(name: str, kind: str, count: int, watch: Stopwatch, **params) -> Result:
    rate = count / watch.seconds
    print(f"  {name:<28} {kind:<8} {rate:>12,.0f} jobs/s", flush=True)
    return Result(name, rate, "jobs/s", kind, {"jobs": count, **params})


async def run(kind: str, quick: bool, postgres_dsn: str | None, jobs: int | None = None) -> list[Result]:
    sizes = Sizes.pick(quick, jobs)
    results = await enqueue_rates(kind, sizes, postgres_dsn)
    results += await drain(kind, sizes, postgres_dsn)
    results += await lateness(kind, sizes, postgres_dsn)
    results += await memory(kind, sizes, postgres_dsn)
    for result in results[-6:]:
        print(f"  {result.name:<28} {kind:<8} {result.value:>12,.2f} {result.unit}", flush=True)
    return results
