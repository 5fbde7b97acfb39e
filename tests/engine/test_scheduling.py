"""Jobs run at their time: exact starts, early wake-ups, many jobs, no polling."""

from __future__ import annotations

from datetime import timedelta

import trio

from tests.engine.conftest import EPOCH


def recorder(clock, log):
    async def handler(ctx):
        log.append((ctx.job.id, clock.now()))

    return handler


async def test_a_job_due_at_t_starts_at_exactly_t(open_test_app, mock_clock):
    started = []
    async with open_test_app() as (app, clock):
        app.engine.register_handler("note", recorder(clock, started))
        due = EPOCH + timedelta(minutes=10)
        result = await app.engine.schedule("note", due, {"text": "hi"})
        await trio.sleep(11 * 60)
    assert started == [(result.job_id, due)]


async def test_an_earlier_job_wakes_a_ticker_sleeping_until_a_later_one(open_test_app, mock_clock):
    started = []
    async with open_test_app() as (app, clock):
        app.engine.register_handler("note", recorder(clock, started))
        late = await app.engine.schedule("note", EPOCH + timedelta(hours=5), None)
        await trio.sleep(1)  # the ticker is now asleep until the late job
        soon = await app.engine.schedule("note", EPOCH + timedelta(seconds=30), None)
        await trio.sleep(5 * 3600 + 10)
    assert started == [
        (soon.job_id, EPOCH + timedelta(seconds=30)),
        (late.job_id, EPOCH + timedelta(hours=5)),
    ]


async def test_a_burst_of_jobs_due_together_all_start_on_time(open_test_app, mock_clock):
    started = []
    async with open_test_app(max_prefetch=10) as (app, clock):
        app.engine.register_handler("note", recorder(clock, started))
        due = EPOCH + timedelta(minutes=1)
        jobs = [app.engine.new_job("note", i, run_at=due) for i in range(500)]
        await app.engine.enqueue_many(jobs)
        await trio.sleep(120)
    assert len(started) == 500
    assert len({job_id for job_id, _ in started}) == 500
    assert {when for _, when in started} == {due}  # instant handlers: no virtual time passes


async def test_the_ticker_sleeps_without_polling_when_nothing_is_due(open_test_app, mock_clock):
    async with open_test_app() as (app, clock):
        app.engine.register_handler("note", recorder(clock, []))
        await app.engine.schedule("note", EPOCH + timedelta(days=2), None)
        await trio.sleep(3600)
        claims_after_an_hour = app.tree.ticker.claims
        await trio.sleep(6 * 3600)
        assert app.tree.ticker.claims == claims_after_an_hour


async def test_jobs_enqueued_for_now_run_at_once_in_priority_order(open_test_app, mock_clock):
    started = []
    async with open_test_app(workers=1) as (app, clock):
        async def handler(ctx):
            started.append(ctx.payload(int))

        app.engine.register_handler("p", handler)
        due = EPOCH + timedelta(seconds=5)
        await app.engine.enqueue_many([
            app.engine.new_job("p", 1, run_at=due, priority=1),
            app.engine.new_job("p", 5, run_at=due, priority=5),
            app.engine.new_job("p", 3, run_at=due, priority=3),
        ])
        await trio.sleep(10)
    assert started == [5, 3, 1]


async def test_a_paused_queue_waits_and_its_jobs_start_as_soon_as_it_is_resumed(open_test_app, mock_clock):
    started = []
    async with open_test_app() as (app, clock):
        app.engine.register_handler("note", recorder(clock, started))
        await app.engine.pause_queue("held")
        held = await app.engine.schedule("note", EPOCH + timedelta(minutes=1), None, queue="held")
        other = await app.engine.schedule("note", EPOCH + timedelta(minutes=2), None)
        await trio.sleep(3600)  # the ticker passes over the held job: it sleeps, it does not spin
        assert started == [(other.job_id, EPOCH + timedelta(minutes=2))]
        assert [paused.queue for paused in await app.engine.paused_queues()] == ["held"]
        await app.engine.resume_queue("held")
        await trio.sleep(1)
    assert started[1] == (held.job_id, EPOCH + timedelta(hours=1))
