"""Memory: what a running engine costs with 1M jobs scheduled in the future.

* ``memory.rss_baseline``: RSS of a fresh process running the engine with 10 future jobs.
* ``memory.rss_1m_future_jobs``: RSS of that process after it scheduled 1M jobs a day or more
  ahead (through ``engine.enqueue_many``, 10k per call), after a garbage collection.
* ``queue.next_due.small|1m``: the cost of finding the next due job with 10 and with 1M pending;
  it must not grow with the number pending (the ticker asks it after every claim).

Why: future jobs live in the store, not in memory; a user with a year of posts scheduled must not
need a bigger machine. The figures come from a child process (``python -m bench.memory``) so that
what earlier suites allocated in the bench process does not count.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from datetime import datetime, timedelta

import trio

from bench.common import Result, Stopwatch, progress, report
from bench.queue import bench_engine
from thotto.app import App
from thotto.engine.jobs import utcnow

TARGETS = {"memory.rss_1m_future_jobs": ("<=", 150)}
STORES = None  # the stores chosen with --store
CHILD_TIMEOUT_SECONDS = 900


def future_jobs(quick: bool) -> int:
    return 20_000 if quick else 1_000_000


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    """Measure in a child process on a fresh database; parse its one JSON line."""
    count = future_jobs(quick)
    progress(f"  memory: a child process schedules {count:,} future jobs")
    command = [sys.executable, "-m", "bench.memory", "--store", kind, "--jobs", str(count)]
    if postgres_dsn:
        command += ["--postgres-dsn", postgres_dsn]
    with trio.fail_after(CHILD_TIMEOUT_SECONDS):  # cancelling run_process kills and reaps the child
        finished = await trio.run_process(command, capture_stdout=True, check=True)
    figures = json.loads(finished.stdout.decode().strip().splitlines()[-1])
    return [
        report(Result("memory.rss_baseline", figures["baseline_mb"], "MB", kind, {"pending": 10})),
        report(Result("memory.rss_1m_future_jobs", figures["loaded_mb"], "MB", kind, {"pending": count})),
        report(Result("queue.next_due.small", figures["next_due_small_us"], "µs", kind, {"pending": 10})),
        report(Result("queue.next_due.1m", figures["next_due_big_us"], "µs", kind, {"pending": count})),
    ]


async def measure(kind: str, count: int, postgres_dsn: str | None) -> dict[str, float]:
    """In the child: RSS and next-due cost with 10, then ``count``, future jobs pending."""
    async with bench_engine(kind, postgres_dsn) as app:
        await app.engine.enqueue_many([app.engine.new_job("noop", run_at=_far(i)) for i in range(10)])
        await trio.sleep(0.5)
        gc.collect()
        baseline = current_rss_mb()
        small = await _time_next_due(app)
        for start in range(0, count, 10_000):
            await app.engine.enqueue_many([app.engine.new_job("noop", run_at=_far(start + i))
                                       for i in range(min(10_000, count - start))])
        big = await _time_next_due(app)
        await trio.sleep(1)  # let the ticker settle on the new next-due time
        gc.collect()
        loaded = current_rss_mb()
    return {"baseline_mb": baseline, "loaded_mb": loaded, "next_due_small_us": small,
            "next_due_big_us": big}


def _far(i: int) -> datetime:
    return utcnow() + timedelta(days=1, seconds=i)


async def _time_next_due(app: App, rounds: int = 200) -> float:
    with Stopwatch() as watch:
        for _ in range(rounds):
            await app.store.next_due()
    return watch.seconds / rounds * 1e6


def current_rss_mb() -> float:
    """This process's resident set now (not its peak), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child_main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--store", required=True, choices=["sqlite", "postgres"])
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--postgres-dsn")
    args = parser.parse_args()
    figures = trio.run(measure, args.store, args.jobs, args.postgres_dsn)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    child_main()
