"""End-to-end queue benchmark through the engine with a no-op handler.

* ``queue.enqueue.single|concurrent|batch``: enqueue through ``Engine`` (validation included).
* ``queue.drain``: jobs/s from "N jobs due" to "N outcomes stored", 8 poster workers.
* ``queue.lateness.p50|p99|max``: 200 jobs due at spread times 2–4 s ahead; start minus due time.

Each is judged against a reference measured by this suite just before it, on the same store
(bench/raw.py): ``queue.enqueue.single`` against ``raw.insert.single`` (single-row commits, one
caller), ``queue.drain`` against ``raw.claim_complete.batch`` (the same number of due jobs,
batches of 100), and the lateness beside ``raw.sleep_until`` (bare Trio timers: the floor).

The memory figures (1M future jobs) are the ``memory`` suite (bench/memory.py).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import trio

from bench import raw
from bench.common import Result, Stopwatch, Target, latency_results, progress, report
from bench.databases import fresh_postgres_database
from thotto.app import App, open_app
from thotto.config import Settings
from thotto.engine.clock import SystemClock
from thotto.engine.handlers import HandlerRegistry
from thotto.engine.jobs import utcnow

TARGETS = {
    "sqlite:queue.drain": Target(">=", 0.5, of="raw.claim_complete.batch"),
    "sqlite:queue.enqueue.single": Target(">=", 0.6, of="raw.insert.single"),
    "postgres:queue.enqueue.single": Target(">=", 0.9, of="raw.insert.single"),
    "queue.lateness.p99": Target("<=", 2.0),
    "queue.lateness.max": Target("<=", 5.0),
}
REFERENCES = {
    "queue.drain": "raw.claim_complete.batch",
    "queue.lateness.p50": "raw.sleep_until.p50",
    "queue.lateness.p99": "raw.sleep_until.p99",
    "queue.lateness.max": "raw.sleep_until.max",
}
STORES = None  # the stores chosen with --store
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
    lateness_ahead: tuple[float, float]  # seconds: due times spread over this window

    @classmethod
    def pick(cls, quick: bool, jobs: int | None) -> "Sizes":
        if quick:
            return cls(200, 1_000, 5_000, jobs or 5_000, 50, (0.5, 1.5))
        return cls(5_000, 50_000, 200_000, jobs or 200_000, 200, (2.0, 4.0))


@contextlib.asynccontextmanager
async def bench_engine(kind: str, postgres_dsn: str | None, *, run_workers: bool = True) -> AsyncIterator[App]:
    """An engine on a fresh, empty database."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="thotto-q-"))
            settings = Settings(data_dir=directory, workers=WORKERS)
        else:
            settings = Settings(database_url=stack.enter_context(fresh_postgres_database(postgres_dsn)),
                                workers=WORKERS)
        async with open_app(settings, clock=SystemClock(), run_workers=run_workers) as app:
            yield app


async def noop(ctx) -> None:
    pass


async def enqueue_rates(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    progress(f"  raw.insert.single: {sizes.single:,} jobs, the reference")
    results = [await raw.insert_single(kind, sizes.single, dsn)]
    async with bench_engine(kind, dsn, run_workers=False) as app:
        with Stopwatch() as watch:
            for _ in range(sizes.single):
                await app.engine.enqueue("noop")
        results.append(_rate("queue.enqueue.single", kind, sizes.single, watch, callers=1))

        async def caller(count: int) -> None:
            for _ in range(count):
                await app.engine.enqueue("noop")

        with Stopwatch() as watch:
            async with trio.open_nursery() as nursery:
                for _ in range(CALLERS):
                    nursery.start_soon(caller, sizes.concurrent // CALLERS)
        results.append(_rate("queue.enqueue.concurrent", kind, sizes.concurrent, watch, callers=CALLERS))

        batches = [[app.engine.new_job("noop") for _ in range(BATCH)] for _ in range(sizes.batch_total // BATCH)]
        with Stopwatch() as watch:
            for batch in batches:
                await app.engine.enqueue_many(batch)
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
        async with open_app(settings, clock=SystemClock(), run_workers=False) as app:
            for start in range(0, sizes.drain, 10_000):
                count = min(10_000, sizes.drain - start)
                await app.engine.enqueue_many([app.engine.new_job("noop") for _ in range(count)])
        progress(f"  queue.drain: {sizes.drain:,} due jobs")
        completed_over_time: list[tuple[float, int]] = []  # (seconds, completed): the drain plot
        started = time.perf_counter()
        async with open_app(settings, clock=SystemClock(), registry=registry) as app:
            while (done := app.tree.pool.counts["completed"]) < sizes.drain:
                elapsed = time.perf_counter() - started
                if not completed_over_time or elapsed - completed_over_time[-1][0] >= 0.01:
                    completed_over_time.append((elapsed, done))
                await trio.sleep(0.001)
            # The last outcome is stored: the app's shutdown (~10 ms) is no part of the drain,
            # and the peers' figures stop at their last job too.
            seconds = time.perf_counter() - started
            completed_over_time.append((seconds, done))
    result = report(Result("queue.drain", sizes.drain / seconds, "jobs/s", kind,
                           {"jobs": sizes.drain, "workers": WORKERS}))
    result.series["completed_over_time"] = completed_over_time
    return [result]


async def lateness(kind: str, sizes: Sizes, dsn: str | None) -> list[Result]:
    """Jobs due at random times a few seconds ahead: how late does each start?"""
    late_ms: list[float] = []
    async with bench_engine(kind, dsn) as app:
        async def measure(ctx) -> None:
            late_ms.append((utcnow() - ctx.job.run_at).total_seconds() * 1000)

        app.engine.register_handler("measure", measure)
        start = utcnow()
        dues = [start + timedelta(seconds=random.uniform(*sizes.lateness_ahead)) for _ in range(sizes.lateness_jobs)]
        for due in dues:
            await app.engine.schedule("measure", due)
        while len(late_ms) < sizes.lateness_jobs:
            await trio.sleep(0.05)
    return [report(result) for result in latency_results("queue.lateness", late_ms, kind,
                                                         {"jobs": sizes.lateness_jobs})]


def _rate(name: str, kind: str, count: int, watch: Stopwatch, **params) -> Result:
    return report(Result(name, count / watch.seconds, "jobs/s", kind, {"jobs": count, **params}))


async def run(kind: str, quick: bool, postgres_dsn: str | None, jobs: int | None = None) -> list[Result]:
    sizes = Sizes.pick(quick, jobs)
    results = await enqueue_rates(kind, sizes, postgres_dsn)
    progress(f"  raw.claim_complete.batch: {sizes.drain:,} due jobs, the reference")
    results.append(await raw.claim_complete(kind, sizes.drain, postgres_dsn))
    results += await drain(kind, sizes, postgres_dsn)
    progress(f"  raw.sleep_until: {sizes.lateness_jobs} bare Trio timers {sizes.lateness_ahead} s ahead, "
             "the floor")
    results += await raw.sleep_until_floor(kind, sizes.lateness_jobs, sizes.lateness_ahead)
    progress(f"  queue.lateness: {sizes.lateness_jobs} jobs due {sizes.lateness_ahead} s ahead")
    results += await lateness(kind, sizes, postgres_dsn)
    return results
