"""Scale-out: 1, 2 and 4 worker processes on one Postgres draining one queue.

``scaleout.drain.N`` is jobs/s with N processes: the worker processes of the multi-process tests
(``tests/support/worker_process.py``, 8 workers each, handler ``record`` that appends one line per
run to a shared log) are started first and left idle; then M jobs are enqueued all due at one
instant T a little ahead, and the drain takes from T to the last run's end in the log. Every job
must have run exactly once and be ``completed`` in the store, or the bench fails.

Why: the design's answer to "more load than one process can take" is more processes on one
Postgres (SKIP LOCKED claims, LISTEN/NOTIFY wake-ups). The target is 4 processes ≥ 2.5× one; on a
machine with 2 cores, 4 CPU-bound processes cannot run at 4× — the figures say what they are.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import trio

from bench.common import Result, progress, report, stop_processes
from bench.databases import fresh_postgres_database
from thotto.messages import JobState, NewJob
from thotto.store import open_store

TARGETS = {"scaleout.speedup.4": (">=", 2.5)}
STORES = ("postgres",)
PROCESS_COUNTS = (1, 2, 4)
WORKERS_PER_PROCESS = 8
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60
DRAIN_TIMEOUT_SECONDS = 300
STOP_TIMEOUT_SECONDS = 30


def job_count(quick: bool) -> int:
    return 2_000 if quick else 60_000


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    count = job_count(quick)
    results = []
    for processes in PROCESS_COUNTS:
        progress(f"  scaleout: {processes} process(es) drain {count:,} jobs")
        rate = await drain_with(processes, count, postgres_dsn)
        results.append(report(Result(f"scaleout.drain.{processes}", rate, "jobs/s", kind,
                                     {"processes": processes, "jobs": count,
                                      "workers_per_process": WORKERS_PER_PROCESS})))
    one, four = results[0].value, results[-1].value
    results.append(report(Result("scaleout.speedup.4", four / one, "x", kind,
                                 {"processes": 4, "cores": os.cpu_count()})))
    return results


async def drain_with(processes: int, count: int, server_dsn: str | None) -> float:
    """Jobs/s for ``processes`` worker processes draining ``count`` jobs due at one instant."""
    with fresh_postgres_database(server_dsn) as dsn, tempfile.TemporaryDirectory(prefix="thotto-scale-") as tmp:
        log = RunLog(Path(tmp) / "runs.log")
        async with worker_processes(dsn, log.path, processes, Path(tmp) / "workers.err"), \
                open_store(dsn) as store:
            # Due after the enqueue has surely finished (about 100k jobs/s here), so every process
            # is idle and waiting when the jobs fall due together.
            due = datetime.now(timezone.utc) + timedelta(seconds=1.0 + count / 50_000)
            for start in range(0, count, 10_000):
                await store.enqueue_many([NewJob(kind="record", run_at=due)
                                          for _ in range(min(10_000, count - start))])
            if datetime.now(timezone.utc) >= due:
                raise RuntimeError("enqueueing took longer than the lead time; the drain would be wrong")
            with trio.fail_after(DRAIN_TIMEOUT_SECONDS):
                while log.runs < count:
                    await trio.sleep(0.1)
                    log.read_new()
                await _all_completed(store, count)
        log.check_exactly_once(count, processes)
        return count / (log.last_end - due.timestamp())


async def _all_completed(store, count: int) -> None:
    """The log line comes just before the outcome is stored: wait for the store to agree."""
    while True:
        counts = {(c.queue, c.state): c.count for c in await store.counts()}
        if counts.get(("default", JobState.COMPLETED), 0) >= count:
            return
        await trio.sleep(0.1)


class RunLog:
    """The worker processes' shared log (``job_id attempt owner start end`` per run), read
    incrementally so that polling it stays cheap."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.runs = 0
        self.last_end = 0.0
        self.per_job: collections.Counter[int] = collections.Counter()
        self.owners: set[str] = set()

    def read_new(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            job_id, _attempt, owner, _start, end = line.split()
            self.per_job[int(job_id)] += 1
            self.owners.add(owner)
            self.last_end = max(self.last_end, float(end))
            self.runs += 1

    def check_exactly_once(self, count: int, processes: int) -> None:
        if len(self.per_job) != count or set(self.per_job.values()) != {1}:
            raise RuntimeError(f"{len(self.per_job)} jobs ran, some more than once: the drain is not valid")
        if len(self.owners) != processes:
            progress(f"  note: only {len(self.owners)} of {processes} processes ran jobs")


@contextlib.asynccontextmanager
async def worker_processes(dsn: str, log: Path, count: int, errors: Path) -> AsyncIterator[None]:
    """``count`` worker processes, each ready (printed ``ready``) before the block starts; on
    exit each gets SIGINT, then SIGKILL after a deadline, and is always reaped. Their stderr
    goes to ``errors`` (its tail is shown if one fails to start)."""
    command = [sys.executable, "-m", "tests.support.worker_process", "--dsn", dsn, "--log", str(log),
               f"--workers={WORKERS_PER_PROCESS}"]
    started: list[trio.Process] = []
    with open(errors, "ab") as stderr:
        try:
            for _ in range(count):
                process = await trio.lowlevel.open_process(command, cwd=ROOT, stdout=subprocess.PIPE,
                                                           stderr=stderr)
                started.append(process)
            with trio.fail_after(START_TIMEOUT_SECONDS):
                for process in started:
                    if not await _ready(process):
                        tail = errors.read_text()[-2000:]
                        raise RuntimeError(f"a worker process exited before it was ready:\n{tail}")
            yield
        finally:
            await stop_processes(started, STOP_TIMEOUT_SECONDS)


async def _ready(process: trio.Process) -> bool:
    """Wait for the process's first line: True if it is ``ready``, False if it exited."""
    received = b""
    while b"\n" not in received:
        chunk = await process.stdout.receive_some()
        if not chunk:
            return False
        received += chunk
    return received.split(b"\n")[0].strip() == b"ready"
