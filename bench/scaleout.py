"""Scale-out: 1, 2 and 4 worker processes on one Postgres draining one queue, each process on a
fixed CPU budget.

``scaleout.drain.N`` is jobs/s with N processes: the worker processes of the multi-process tests
(``tests/support/worker_process.py``, 8 workers each, handler ``record`` that appends one line per
run to a shared log) are started first and left idle; then M jobs are enqueued all due at one
instant T a little ahead, and the drain takes from T to the last run's end in the log. Every job
must have run exactly once and be ``completed`` in the store, or the bench fails.

Each worker process runs in a control group of its own capped at 0.2 of a core (bench/cgroups.py)
while Postgres runs unthrottled: on a 2-core machine shared with others, N unthrottled processes
get whatever cores are free, and the curve would measure the machine. With the cap, N processes
have N budgets; ``scaleout.drain.4`` is judged as a ratio to ``scaleout.drain.1`` (target ≥ 3.2x).

``scaleout.cpu_per_1k.N``: CPU seconds per 1,000 jobs of all processes together during the drain:
the worker processes (/proc/PID/stat) and the Postgres backends serving the bench database
(their pids from pg_stat_activity, read in /proc when the server runs on this machine). Target:
at 4 processes at most 1.25x the figure at 1 (more processes must not make each job dearer).

If no quota can be set (not root, no writable cpu cgroup), the bench says so
(``scaleout.cpu_quota`` = 0 with the reason) and reports the CPU cost alone, with the drain rates
as ``scaleout.unthrottled.drain.N`` (no target: they depend on the free cores).

Why: the design's answer to "more load than one process can take" is more processes on one
Postgres (SKIP LOCKED claims, LISTEN/NOTIFY wake-ups).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import trio

from bench.cgroups import CpuQuota, QuotaUnavailable, open_cpu_quota, process_cpu_seconds
from bench.common import Result, Target, progress, report, stop_processes
from bench.databases import fresh_postgres_database
from thotto.engine.jobs import NewJob
from thotto.store import open_store

TARGETS = {
    "scaleout.drain.4": Target(">=", 3.2, of="scaleout.drain.1"),
    "scaleout.cpu_per_1k.4": Target("<=", 1.25, of="scaleout.cpu_per_1k.1"),
}
REFERENCES = {"scaleout.drain.2": "scaleout.drain.1", "scaleout.cpu_per_1k.2": "scaleout.cpu_per_1k.1",
              "scaleout.unthrottled.drain.2": "scaleout.unthrottled.drain.1",
              "scaleout.unthrottled.drain.4": "scaleout.unthrottled.drain.1"}
STORES = ("postgres",)
PROCESS_COUNTS = (1, 2, 4)
WORKERS_PER_PROCESS = 8
CORES_PER_PROCESS = 0.2
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 120  # four processes importing Thotto on 0.2 of a core each
DRAIN_TIMEOUT_SECONDS = 300
STOP_TIMEOUT_SECONDS = 30
SNAPSHOT_LEAD = 0.3  # seconds before the jobs' due time when the CPU counters are read


def job_count(quick: bool) -> int:
    return 2_000 if quick else 60_000


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    count = job_count(quick)
    try:
        with open_cpu_quota(CORES_PER_PROCESS) as quota:
            return await measure_all(kind, count, postgres_dsn, quota)
    except QuotaUnavailable as unavailable:
        progress(f"  scaleout: no CPU quota ({unavailable}); reporting the CPU cost alone")
        return await measure_all(kind, count, postgres_dsn, None, note=str(unavailable))


async def measure_all(kind: str, count: int, postgres_dsn: str | None, quota: CpuQuota | None,
                      note: str | None = None) -> list[Result]:
    cores = quota.cores if quota else 0
    results = [report(Result("scaleout.cpu_quota", cores, "cores/process", kind,
                             {"note": note or "one cgroup per worker process; Postgres unthrottled"}))]
    drain_name = "scaleout.drain" if quota else "scaleout.unthrottled.drain"
    for processes in PROCESS_COUNTS:
        progress(f"  scaleout: {processes} process(es) drain {count:,} jobs"
                 + (f", {cores} of a core each" if quota else ""))
        drained = await drain_with(processes, count, postgres_dsn, quota)
        params = {"processes": processes, "jobs": count, "workers_per_process": WORKERS_PER_PROCESS,
                  "cpu_quota": cores or None}
        results.append(report(Result(f"{drain_name}.{processes}", drained.rate, "jobs/s", kind, params)))
        results.append(report(Result(f"scaleout.cpu_per_1k.{processes}", drained.cpu_per_1k(count),
                                     "CPU s", kind, {**params, **drained.cpu_params()})))
    return results


@dataclass
class Drained:
    """What one drain measured: its rate, and the CPU seconds its processes used (Postgres's None
    when its processes are not on this machine); ``throttled``: how long the quota held the
    worker processes back (None without a quota)."""

    rate: float
    workers_cpu: float
    postgres_cpu: float | None
    backends: int
    throttled: float | None

    def cpu_per_1k(self, count: int) -> float:
        return (self.workers_cpu + (self.postgres_cpu or 0.0)) / count * 1000

    def cpu_params(self) -> dict:
        return {"workers_cpu_s": round(self.workers_cpu, 3),
                "postgres_cpu_s": None if self.postgres_cpu is None else round(self.postgres_cpu, 3),
                "postgres_backends": self.backends,
                "throttled_s": None if self.throttled is None else round(self.throttled, 3)}


async def drain_with(processes: int, count: int, server_dsn: str | None,
                     quota: CpuQuota | None) -> Drained:
    """``processes`` worker processes draining ``count`` jobs due at one instant: the rate and the
    CPU used from just before that instant to the last outcome stored."""
    with fresh_postgres_database(server_dsn) as dsn, tempfile.TemporaryDirectory(prefix="thotto-scale-") as tmp:
        log = RunLog(Path(tmp) / "runs.log")
        async with worker_processes(dsn, log.path, processes, Path(tmp) / "workers.err", quota) as pids:
            due = await enqueue_due_together(dsn, count)
            # Just before the jobs fall due, so that idle time counts as little as can be; the
            # bench's own store is closed by now: every backend of the database is a worker's.
            await trio.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds() - SNAPSHOT_LEAD))
            before = await cpu_snapshot(dsn, pids)
            throttled_before = quota.throttled_seconds() if quota else None
            if datetime.now(timezone.utc) >= due:
                raise RuntimeError("enqueueing took longer than the lead time; the drain would be wrong")
            with trio.fail_after(DRAIN_TIMEOUT_SECONDS):
                while log.runs < count:
                    await trio.sleep(0.1)
                    log.read_new()
                await _all_completed(dsn, count)
            after = await cpu_snapshot(dsn, pids)
            throttled = quota.throttled_seconds() - throttled_before if quota else None
        log.check_exactly_once(count, processes)
        return Drained(count / (log.last_end - due.timestamp()), *_cpu_used(before, after), throttled)


async def enqueue_due_together(dsn: str, count: int) -> datetime:
    """Enqueue ``count`` jobs all due at one instant a little ahead; that instant. The store is
    closed on return."""
    async with open_store(dsn) as store:
        # Due after the enqueue has surely finished (about 100k jobs/s here) and the CPU snapshot
        # is taken, so every process is idle and waiting when the jobs fall due together.
        due = datetime.now(timezone.utc) + timedelta(seconds=2.0 + count / 50_000)
        for start in range(0, count, 10_000):
            await store.enqueue_many([NewJob(kind="record", run_at=due)
                                      for _ in range(min(10_000, count - start))])
    return due


async def cpu_snapshot(dsn: str, worker_pids: list[int]) -> dict[tuple[str, int], float | None]:
    """CPU seconds so far of each worker process and each Postgres backend serving ``dsn``
    (other than the one asking)."""
    backends = await trio.to_thread.run_sync(asyncio.run, _fetch(
        dsn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()"))
    snapshot = {("worker", pid): process_cpu_seconds(pid) for pid in worker_pids}
    snapshot.update({("postgres", row[0]): process_cpu_seconds(row[0]) for row in backends})
    return snapshot


def _cpu_used(before: dict, after: dict) -> tuple[float, float | None, int]:
    """(workers' CPU seconds, Postgres backends' or None if not visible here, backends seen).
    A backend that appeared during the drain counts from zero."""
    workers = sum((after[key] or 0.0) - (before.get(key) or 0.0) for key in after if key[0] == "worker")
    backends = [key for key in after if key[0] == "postgres"]
    if any(after[key] is None for key in backends):
        return workers, None, len(backends)  # the server is not on this machine
    postgres = sum(after[key] - (before.get(key) or 0.0) for key in backends)
    return workers, postgres, len(backends)


async def _fetch(dsn: str, sql: str) -> list:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def _all_completed(dsn: str, count: int) -> None:
    """The log line comes just before the outcome is stored: wait for the store to agree."""
    sql = "SELECT count(*) FROM jobs WHERE queue = 'default' AND state = 'completed'"
    while (await trio.to_thread.run_sync(asyncio.run, _fetch(dsn, sql)))[0][0] < count:
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
async def worker_processes(dsn: str, log: Path, count: int, errors: Path,
                           quota: CpuQuota | None) -> AsyncIterator[list[int]]:
    """``count`` worker processes (their pids), each under ``quota`` from its start and ready
    (printed ``ready``) before the block starts; on exit each gets SIGINT, then SIGKILL after a
    deadline, and is always reaped. Their stderr goes to ``errors`` (its tail is shown if one
    fails to start)."""
    command = [sys.executable, "-m", "tests.support.worker_process", "--dsn", dsn, "--log", str(log),
               f"--workers={WORKERS_PER_PROCESS}"]
    started: list[trio.Process] = []
    with open(errors, "ab") as stderr:
        try:
            for _ in range(count):
                process = await trio.lowlevel.open_process(command, cwd=ROOT, stdout=subprocess.PIPE,
                                                           stderr=stderr)
                started.append(process)
                if quota is not None:
                    quota.add(process.pid)
            with trio.fail_after(START_TIMEOUT_SECONDS):
                for process in started:
                    if not await _ready(process):
                        tail = errors.read_text()[-2000:]
                        raise RuntimeError(f"a worker process exited before it was ready:\n{tail}")
            yield [process.pid for process in started]
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
