"""Store micro-benchmark: enqueue (sequential, 50 concurrent callers, batch) and batched
claim + complete, straight against a Store adapter (no engine).

``store.enqueue.single`` and ``store.claim_complete.batch`` are shown as ratios to the raw loops
of bench/raw.py (``raw.insert.single``, ``raw.claim_complete.batch``), measured by this suite
just before them on the same store: what the adapter costs over the database itself.

Why: every job passes through these four operations; the engine can only be as fast as they are.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from bench import raw
from bench.common import Result, Stopwatch, progress, report
from bench.databases import fresh_postgres_database
from thotto.engine.jobs import Completed, NewJob
from thotto.store import Store, open_store

TARGETS: dict = {}  # the goals are on the engine's figures (bench/queue.py), as ratios
REFERENCES = {"store.enqueue.single": "raw.insert.single",
              "store.claim_complete.batch": "raw.claim_complete.batch"}
STORES = None  # the stores chosen with --store
PAYLOAD = b'{"post_id": 1}'
CALLERS = 50
BATCH = 1_000


@dataclass
class Sizes:
    single: int
    concurrent: int
    batch_total: int
    drain: int

    @classmethod
    def pick(cls, quick: bool) -> "Sizes":
        if quick:
            return cls(single=500, concurrent=2_000, batch_total=10_000, drain=10_000)
        return cls(single=10_000, concurrent=100_000, batch_total=500_000, drain=200_000)


@contextlib.asynccontextmanager
async def bench_store(kind: str, postgres_dsn: str | None) -> AsyncIterator[Store]:
    """A store on a fresh, empty database, deleted afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="thotto-bench-") as directory:
            async with open_store(f"{directory}/bench.db") as store:
                yield store
    else:
        with fresh_postgres_database(postgres_dsn) as dsn:
            async with open_store(dsn) as store:
                yield store


def job() -> NewJob:
    return NewJob(queue="bench", kind="noop", payload=PAYLOAD)


async def enqueue_single(store: Store, count: int) -> float:
    with Stopwatch() as watch:
        for _ in range(count):
            await store.enqueue(job())
    return count / watch.seconds


async def enqueue_concurrent(store: Store, count: int) -> float:
    per_caller = count // CALLERS

    async def caller() -> None:
        for _ in range(per_caller):
            await store.enqueue(job())

    with Stopwatch() as watch:
        async with trio.open_nursery() as nursery:
            for _ in range(CALLERS):
                nursery.start_soon(caller)
    return per_caller * CALLERS / watch.seconds


async def enqueue_batch(store: Store, count: int) -> float:
    batches = [[job() for _ in range(BATCH)] for _ in range(count // BATCH)]
    with Stopwatch() as watch:
        for batch in batches:
            await store.enqueue_many(batch)
    return len(batches) * BATCH / watch.seconds


async def claim_complete(store: Store, count: int) -> float:
    """Claim in batches of 1,000 and settle each batch as completed, until the queue is empty."""
    for start in range(0, count, 10_000):
        await store.enqueue_many([job() for _ in range(min(10_000, count - start))])
    done = 0
    with Stopwatch() as watch:
        while True:
            claimed = await store.claim("bench-worker", BATCH, 60.0, queues=["bench"])
            if not claimed:
                break
            await store.settle("bench-worker", [Completed(j.id, j.attempt) for j in claimed])
            done += len(claimed)
    return done / watch.seconds


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    """Run every store workload on a fresh database each; return the results."""
    sizes = Sizes.pick(quick)
    workloads = [
        ("store.enqueue.single", enqueue_single, sizes.single, {"callers": 1}),
        ("store.enqueue.concurrent", enqueue_concurrent, sizes.concurrent, {"callers": CALLERS}),
        ("store.enqueue.batch", enqueue_batch, sizes.batch_total, {"batch": BATCH}),
        ("store.claim_complete.batch", claim_complete, sizes.drain, {"batch": BATCH}),
    ]
    results = []
    references = {"store.enqueue.single": raw.insert_single,
                  "store.claim_complete.batch": raw.claim_complete}
    for name, workload, count, params in workloads:
        if name in references:
            progress(f"  {REFERENCES[name]}: {count:,} jobs, the reference")
            results.append(await references[name](kind, count, postgres_dsn))
        progress(f"  {name}: {count:,} jobs")
        async with bench_store(kind, postgres_dsn) as store:
            rate = await workload(store, count)
        results.append(report(Result(name, rate, "jobs/s", store=kind, params={"jobs": count, **params})))
    return results
