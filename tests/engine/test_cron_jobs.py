"""Cron jobs: run on schedule in their time zone, persist across restarts, catch up once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import trio

from thotto.engine.cron import CatchUp
from thotto.engine.jobs import JobState

UTC = timezone.utc
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def counting(clock, runs):
    async def function():
        runs.append(clock.now())

    return function


async def test_a_cron_job_runs_at_each_fire_time(open_test_app, mock_clock):
    runs = []
    async with open_test_app(epoch=START) as (app, clock):
        status = await app.engine.add_cron("hourly", "15 * * * *", counting(clock, runs))
        assert status.next_run_at == datetime(2026, 3, 2, 12, 15, tzinfo=UTC)
        assert status.runs == 0 and status.last_run_at is None
        await trio.sleep(3 * 3600)
        status = await app.engine.cron_status("hourly")
    assert runs == [datetime(2026, 3, 2, h, 15, tzinfo=UTC) for h in (12, 13, 14)]
    assert status.runs == 3 and status.last_error is None
    assert status.last_run_at == datetime(2026, 3, 2, 14, 15, tzinfo=UTC)
    assert status.last_duration_seconds == 0
    assert status.next_run_at == datetime(2026, 3, 2, 15, 15, tzinfo=UTC)


async def test_schedules_follow_their_time_zone(open_test_app, mock_clock):
    runs = []
    async with open_test_app(epoch=START) as (app, clock):
        await app.engine.add_cron("paris-9am", "0 9 * * *", counting(clock, runs), timezone="Europe/Paris")
        await trio.sleep(2 * 86400)
    assert runs == [datetime(2026, 3, 3, 8, tzinfo=UTC), datetime(2026, 3, 4, 8, tzinfo=UTC)]


async def test_a_run_missed_during_downtime_is_caught_up_once(open_test_app, mock_clock):
    runs = []
    async with open_test_app(epoch=START) as (app, clock):
        await app.engine.add_cron("hourly", "0 * * * *", counting(clock, runs))
        await trio.sleep(60)
    back = START + timedelta(hours=5, minutes=30)  # down for 5 fire times
    async with open_test_app(epoch=back) as (app, clock):
        status = await app.engine.add_cron("hourly", "0 * * * *", counting(clock, runs))
        await trio.sleep(60 * 60)
        status = await app.engine.cron_status("hourly")
    assert runs == [back, datetime(2026, 3, 2, 18, tzinfo=UTC)]
    assert status.next_run_at == datetime(2026, 3, 2, 19, tzinfo=UTC)
    assert status.runs == 2 and status.last_run_at == datetime(2026, 3, 2, 18, tzinfo=UTC)


async def test_skip_policy_drops_missed_runs(open_test_app, mock_clock):
    runs = []
    async with open_test_app(epoch=START) as (app, clock):
        await app.engine.add_cron("hourly", "0 * * * *", counting(clock, runs), catch_up=CatchUp.SKIP)
        await trio.sleep(60)
    back = START + timedelta(hours=5, minutes=30)
    async with open_test_app(epoch=back) as (app, clock):
        await app.engine.add_cron("hourly", "0 * * * *", counting(clock, runs), catch_up=CatchUp.SKIP)
        await trio.sleep(60 * 60)
    assert runs == [datetime(2026, 3, 2, 18, tzinfo=UTC)]


async def test_a_failing_cron_run_is_reported_and_the_next_still_happens(open_test_app, mock_clock):
    calls = []
    async with open_test_app(epoch=START) as (app, clock):
        async def fails_once():
            calls.append(clock.now())
            if len(calls) == 1:
                raise RuntimeError("analytics source down")

        await app.engine.add_cron("hourly", "0 * * * *", fails_once)
        await trio.sleep(3600 + 60)
        failed = await app.engine.cron_status("hourly")
        await trio.sleep(3600)
        recovered = await app.engine.cron_status("hourly")
    assert failed.last_error == "RuntimeError: analytics source down" and failed.runs == 1
    assert len(calls) == 2 and recovered.last_error is None and recovered.runs == 2


async def test_a_changed_schedule_moves_the_pending_occurrence(open_test_app, mock_clock):
    runs = []
    async with open_test_app(epoch=START) as (app, clock):
        await app.engine.add_cron("report", "0 0 * * *", counting(clock, runs))
    async with open_test_app(epoch=START + timedelta(minutes=1)) as (app, clock):
        status = await app.engine.add_cron("report", "30 12 * * *", counting(clock, runs))
        assert status.next_run_at == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
        await trio.sleep(3600)
        cron_jobs = [c for c in await app.engine.counts() if c.queue == "cron"]
    assert runs == [datetime(2026, 3, 2, 12, 30, tzinfo=UTC)]
    # One durable job per cron job (the built-in retention and media retention jobs and this
    # one), never a second.
    assert sum(c.count for c in cron_jobs if c.state is JobState.PENDING) == 3
