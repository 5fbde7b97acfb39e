"""Leases: renewed while a job runs, recovered after a crash; graceful shutdown hands jobs back."""

from __future__ import annotations

from datetime import timedelta

import trio

from tests.engine.conftest import EPOCH
from thotto.engine.jobs import AttemptOutcome, JobState


async def test_a_long_job_keeps_its_lease_by_heartbeat(open_test_app, mock_clock):
    async with open_test_app(lease_seconds=30, sweep_interval_seconds=5) as (app, clock):
        async def long_job(ctx):
            await trio.sleep(200)  # more than six leases long

        app.engine.register_handler("long", long_job, timeout_seconds=600)
        job = await app.engine.enqueue("long")
        await trio.sleep(400)
        final = await app.engine.get(job.job_id)
        history = await app.engine.attempts(job.job_id)
    assert final.state is JobState.COMPLETED and final.attempt == 1
    assert [a.outcome for a in history] == [AttemptOutcome.COMPLETED]


async def test_a_crashed_workers_job_is_recovered_after_its_lease_expires(open_test_app, mock_clock):
    ran = []
    async with open_test_app(lease_seconds=30, sweep_interval_seconds=5) as (app, clock):
        async def handler(ctx):
            ran.append((clock.now(), ctx.attempt))

        app.engine.register_handler("post", handler)
        job = await app.engine.schedule("post", EPOCH + timedelta(minutes=5), None)
        # Another process claims it and dies without a word (kill -9).
        crashed = await app.store.claim("dead-process", 10, 30.0, due_by=EPOCH + timedelta(minutes=5))
        assert [j.id for j in crashed] == [job.job_id]
        await trio.sleep(5 * 60 + 60)
        history = await app.engine.attempts(job.job_id)
    (when, attempt), = ran
    assert attempt == 2  # the crashed attempt counts
    assert EPOCH + timedelta(seconds=30) <= when <= EPOCH + timedelta(seconds=30 + 5)  # swept within one pass
    assert [a.outcome for a in history] == [AttemptOutcome.EXPIRED, AttemptOutcome.COMPLETED]


async def test_shutdown_lets_running_jobs_finish_within_the_grace_period(open_test_app, mock_clock):
    finished = []
    async with open_test_app(shutdown_grace_seconds=10) as (app, clock):
        async def three_seconds(ctx):
            await trio.sleep(3)
            finished.append(clock.now())

        app.engine.register_handler("job", three_seconds)
        job = await app.engine.enqueue("job")
        await trio.sleep(1)
        stopping_at = clock.now()
    assert finished == [stopping_at + timedelta(seconds=2)]
    async with open_test_app(epoch=clock.now() + timedelta(hours=1)) as (app, _):
        assert (await app.engine.get(job.job_id)).state is JobState.COMPLETED


async def test_shutdown_cancels_jobs_past_the_grace_and_releases_them(open_test_app, mock_clock):
    async with open_test_app(shutdown_grace_seconds=5) as (app, clock):
        async def forever(ctx):
            await trio.sleep_forever()

        app.engine.register_handler("job", forever)
        job = await app.engine.enqueue("job")
        await trio.sleep(1)
        stopping_at = trio.current_time()
    assert trio.current_time() - stopping_at == 5  # exactly the grace period
    reopened_at = clock.now() + timedelta(minutes=1)
    async with open_test_app(epoch=reopened_at, run_workers=False) as (app, clock):
        released = await app.engine.get(job.job_id)
        # Released, not expired: pending, due at once, the attempt refunded.
        assert released.state is JobState.PENDING and released.attempt == 0
        history = await app.engine.attempts(job.job_id)
    assert [a.outcome for a in history][0] is AttemptOutcome.RELEASED


async def test_shutdown_hands_back_claimed_jobs_it_had_not_started(open_test_app, mock_clock):
    async with open_test_app(workers=1, shutdown_grace_seconds=30) as (app, clock):
        async def slow(ctx):
            await trio.sleep(10)

        app.engine.register_handler("job", slow)
        results = await app.engine.enqueue_many([app.engine.new_job("job", i) for i in range(5)])
        await trio.sleep(1)  # one runs, the prefetched rest wait in the pool
    async with open_test_app(epoch=clock.now(), run_workers=False) as (app, clock):
        states = [(await app.engine.get(r.job_id)).state for r in results]
    assert states.count(JobState.COMPLETED) == 1
    assert states.count(JobState.PENDING) == 4


async def test_stop_now_skips_the_grace_period(open_test_app, mock_clock):
    async with open_test_app(shutdown_grace_seconds=25) as (app, clock):
        async def forever(ctx):
            await trio.sleep_forever()

        app.engine.register_handler("job", forever)
        job = await app.engine.enqueue("job")
        await trio.sleep(1)
        app.tree.stop_now()
        stopping_at = trio.current_time()
        await app.tree.wait_stopped()
        assert trio.current_time() == stopping_at
        assert (await app.engine.get(job.job_id)).state is JobState.PENDING
