"""Several Thotto processes on one Postgres database share the work (real OS processes)."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from thotto.engine.jobs import JobState, NewJob
from thotto.store import open_store

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Start and stop worker processes that log every run to one shared file."""

    def __init__(self, dsn: str, log: Path):
        self.dsn, self.log = dsn, log
        self.processes: list[subprocess.Popen] = []

    def start(self, **options) -> subprocess.Popen:
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.worker_process", "--dsn", self.dsn,
             "--log", str(self.log), *flags],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        assert process.stdout.readline().strip() == "ready"
        self.processes.append(process)
        return process

    def runs(self) -> list[tuple[int, int, str, float, float]]:
        if not self.log.exists():
            return []
        # Only whole lines: a reader can see another process's write half done (O_APPEND makes
        # writers atomic to each other, not to readers).
        text = self.log.read_text()
        rows = [line.split() for line in text[:text.rfind("\n") + 1].splitlines()]
        return [(int(j), int(a), owner, float(s), float(e)) for j, a, owner, s, e in rows]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def workers(postgres_dsn, tmp_path):
    group = Workers(postgres_dsn, tmp_path / "runs.log")
    yield group
    group.stop_all()


async def wait_until(condition, timeout: float, poll: float = 0.05) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(poll)


def now() -> datetime:
    return datetime.now(timezone.utc)


async def test_two_processes_share_a_queue_and_run_each_job_once(workers, postgres_dsn):
    # Jobs of 2 ms: long enough that one process cannot drain the queue before the other
    # starts claiming, short enough to finish in about a second.
    workers.start(slow_seconds=0.002)
    workers.start(slow_seconds=0.002)
    async with open_store(postgres_dsn) as store:
        jobs = [NewJob(kind="slow") for _ in range(3000)]
        await store.enqueue_many(jobs)
        await wait_until(lambda: len(workers.runs()) >= 3000, timeout=60)
        await trio.sleep(0.5)  # any duplicate would have landed by now
        counts = {(c.queue, c.state): c.count for c in await store.counts()}
    runs = workers.runs()
    per_job = collections.Counter(job_id for job_id, *_ in runs)
    assert len(per_job) == 3000 and set(per_job.values()) == {1}
    per_owner = collections.Counter(owner for _, _, owner, _, _ in runs)
    assert len(per_owner) == 2, per_owner  # both processes took part
    assert counts[("default", JobState.COMPLETED)] == 3000
    assert [state for queue, state in counts if queue == "default"] == [JobState.COMPLETED]


async def test_a_job_enqueued_elsewhere_wakes_an_idle_process_at_its_time(workers, postgres_dsn):
    workers.start()
    async with open_store(postgres_dsn) as store:
        await trio.sleep(1)  # the worker is now asleep with nothing due
        due = now() + timedelta(seconds=1.5)
        result = await store.enqueue(NewJob(kind="record", run_at=due))
        await wait_until(lambda: workers.runs(), timeout=10)
    (job_id, attempt, _, started, _), = workers.runs()
    assert job_id == result.job_id and attempt == 1
    lateness = started - due.timestamp()
    # With nothing pending the idle process sleeps without a timeout: only NOTIFY can wake it.
    assert 0 <= lateness < 1.0, lateness


async def test_killing_a_process_hands_its_jobs_to_the_other_after_the_lease(workers, postgres_dsn):
    doomed = workers.start(lease_seconds=2, slow_seconds=3)
    async with open_store(postgres_dsn) as store:
        results = await store.enqueue_many([NewJob(kind="slow") for _ in range(6)])
        ids = {r.job_id for r in results}

        async def held_by_doomed() -> bool:
            jobs = [await store.get_job(job_id) for job_id in ids]
            return all(job.state is JobState.PROCESSING for job in jobs)

        with trio.fail_after(10):
            while not await held_by_doomed():
                await trio.sleep(0.05)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.time()
        workers.start(lease_seconds=2, slow_seconds=0.1)
        await wait_until(lambda: len(workers.runs()) >= 6, timeout=30)
        with trio.fail_after(10):  # a run is logged just before its outcome is stored
            while [(await store.get_job(i)).state for i in ids] != [JobState.COMPLETED] * 6:
                await trio.sleep(0.05)
    runs = workers.runs()
    assert {job_id for job_id, *_ in runs} == ids
    assert all(attempt == 2 for _, attempt, *_ in runs)  # the killed attempt counted
    assert all(started >= killed_at for *_, started, _ in runs)


async def test_no_job_runs_in_two_processes_at_once(workers, postgres_dsn):
    for _ in range(3):
        workers.start(workers=4, slow_seconds=0.05)
    async with open_store(postgres_dsn) as store:
        await store.enqueue_many([NewJob(kind="slow") for _ in range(200)])
        await wait_until(lambda: len(workers.runs()) >= 200, timeout=60)
    runs = workers.runs()
    assert len(runs) == 200 and len({job_id for job_id, *_ in runs}) == 200
    assert len({owner for _, _, owner, _, _ in runs}) == 3


async def test_sigterm_under_load_exits_cleanly_and_hands_back_leases_at_once(workers, postgres_dsn):
    busy = workers.start(slow_seconds=30, lease_seconds=600)
    async with open_store(postgres_dsn) as store:
        results = await store.enqueue_many([NewJob(kind="slow") for _ in range(20)])
        ids = [r.job_id for r in results]
        with trio.fail_after(10):
            while [(await store.get_job(i)).state for i in ids].count(JobState.PROCESSING) < 8:
                await trio.sleep(0.05)
        busy.send_signal(signal.SIGTERM)  # grace is 1 s in the worker; the jobs take 30 s
        assert busy.wait(timeout=30) == 0
        jobs = [await store.get_job(i) for i in ids]
        # Released, not left to expire: pending now, no attempt spent, no lease left.
        assert {job.state for job in jobs} == {JobState.PENDING}
        assert {job.attempt for job in jobs} == {0}
        restarted_at = time.time()
        workers.start(slow_seconds=0.01, lease_seconds=600)
        await wait_until(lambda: len(workers.runs()) >= 20, timeout=30)
    runs = workers.runs()
    assert sorted(job_id for job_id, *_ in runs) == sorted(ids)
    assert all(started - restarted_at < 5 for *_, started, _ in runs)  # at once, not after 600 s


async def test_a_paused_queue_runs_in_no_process_until_resumed(workers, postgres_dsn):
    workers.start()
    workers.start()
    async with open_store(postgres_dsn) as store:
        await store.pause_queue("held")  # as an operator's CLI does, from a third process
        start = now()
        held = await store.enqueue_many([NewJob(kind="record", queue="held", run_at=start)
                                         for _ in range(50)])
        # Due after the held jobs: claims in due order reach them only by passing over "held".
        later = await store.enqueue_many([NewJob(kind="record", run_at=start + timedelta(seconds=0.2))
                                          for _ in range(20)])
        later_ids = {result.job_id for result in later}
        await wait_until(lambda: later_ids <= {run[0] for run in workers.runs()}, timeout=30)
        held_ids = {result.job_id for result in held}
        assert not held_ids & {run[0] for run in workers.runs()}
        assert {(await store.get_job(job_id)).state for job_id in held_ids} == {JobState.PENDING}

        assert await store.resume_queue("held") is True
        await wait_until(lambda: held_ids <= {run[0] for run in workers.runs()}, timeout=30)
    ran = collections.Counter(run[0] for run in workers.runs() if run[0] in held_ids)
    assert set(ran.values()) == {1}
