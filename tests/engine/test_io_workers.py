"""The I/O lane: jobs of io_bound kinds run many at once in one process, beside the few workers of
CPU-bound kinds, and keep exactly-once (leases, heartbeats, graceful shutdown) with many in flight."""

from __future__ import annotations

import trio

from thotto.engine.jobs import AttemptOutcome, JobState

IN_FLIGHT = 40


class Gauge:
    """Counts the handlers running now and the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


async def test_many_io_bound_jobs_run_at_once_beside_few_cpu_bound_ones(open_test_app, mock_clock):
    io, cpu = Gauge(), Gauge()
    all_in = trio.Event()
    async with open_test_app(workers=2, io_workers=IN_FLIGHT) as (app, clock):
        async def submit(ctx):
            io.enter()
            if io.now == IN_FLIGHT:
                all_in.set()
            await all_in.wait()  # returns only once every one of them is running at once
            await trio.sleep(1)
            io.leave()

        async def crunch(ctx):
            cpu.enter()
            await trio.sleep(1)
            cpu.leave()

        app.engine.register_handler("submit", submit, io_bound=True)
        app.engine.register_handler("crunch", crunch)
        jobs = await app.engine.enqueue_many([app.engine.new_job("crunch") for _ in range(10)]
                                         + [app.engine.new_job("submit") for _ in range(IN_FLIGHT)])
        with trio.fail_after(60):
            while {(await app.engine.get(job.job_id)).state for job in jobs} != {JobState.COMPLETED}:
                await trio.sleep(1)
        attempts = {(await app.engine.get(job.job_id)).attempt for job in jobs}
    assert io.peak == IN_FLIGHT
    assert cpu.peak == 2  # the ordinary workers stay as few as configured
    assert attempts == {1}


async def test_io_bound_kinds_share_the_workers_when_there_are_no_io_workers(open_test_app, mock_clock):
    io = Gauge()
    async with open_test_app(workers=3, io_workers=0) as (app, clock):
        async def submit(ctx):
            io.enter()
            await trio.sleep(1)
            io.leave()

        app.engine.register_handler("submit", submit, io_bound=True)
        jobs = await app.engine.enqueue_many([app.engine.new_job("submit") for _ in range(12)])
        await trio.sleep(10)
        states = {(await app.engine.get(job.job_id)).state for job in jobs}
    assert io.peak == 3
    assert states == {JobState.COMPLETED}


async def test_many_long_io_bound_jobs_keep_their_leases_by_heartbeat(open_test_app, mock_clock):
    async with open_test_app(io_workers=IN_FLIGHT, lease_seconds=30, sweep_interval_seconds=5) as (app, clock):
        async def long_submit(ctx):
            await trio.sleep(200)  # more than six leases long

        app.engine.register_handler("submit", long_submit, timeout_seconds=600, io_bound=True)
        jobs = await app.engine.enqueue_many([app.engine.new_job("submit") for _ in range(IN_FLIGHT)])
        await trio.sleep(400)
        finals = [await app.engine.get(job.job_id) for job in jobs]
        histories = [await app.engine.attempts(job.job_id) for job in jobs]
    assert {(job.state, job.attempt) for job in finals} == {(JobState.COMPLETED, 1)}
    assert {tuple(a.outcome for a in history) for history in histories} == {(AttemptOutcome.COMPLETED,)}


async def test_shutdown_with_many_io_bound_jobs_in_flight_hands_every_one_back(open_test_app, mock_clock):
    running = Gauge()
    async with open_test_app(io_workers=IN_FLIGHT, shutdown_grace_seconds=5) as (app, clock):
        async def forever(ctx):
            running.enter()
            await trio.sleep_forever()

        app.engine.register_handler("submit", forever, io_bound=True)
        # More than the I/O workers: some run, the rest wait in the pool's I/O lane.
        jobs = await app.engine.enqueue_many([app.engine.new_job("submit") for _ in range(2 * IN_FLIGHT)])
        await trio.sleep(1)
        assert running.peak == IN_FLIGHT
        held = len(app.tree.pool._held)
    assert held > IN_FLIGHT  # claimed ahead too, so the unstarted ones are handed back as well
    async with open_test_app(epoch=clock.now(), run_workers=False) as (app, _):
        finals = [await app.engine.get(job.job_id) for job in jobs]
        histories = [await app.engine.attempts(job.job_id) for job in jobs]
    # Every one released, not expired: pending, the attempt refunded.
    assert {(job.state, job.attempt) for job in finals} == {(JobState.PENDING, 0)}
    started = [history for history in histories if history]
    assert len(started) >= IN_FLIGHT
    assert {history[-1].outcome for history in started} == {AttemptOutcome.RELEASED}
