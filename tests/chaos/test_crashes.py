"""Thotto processes killed and stopped under load: nothing lost, nothing published twice.

Scenario 1 (kill -9 with 100 posts in flight, on Postgres and during an SQLite group commit),
scenario 10 (two processes on Postgres, one killed again and again) and scenario 11 (SIGTERM
under load). The sandbox's durable record is the judge, checked against the store.
"""

from __future__ import annotations

import signal

import pytest
import trio

from tests.chaos import faults
from tests.chaos.harness import soon, spread, titles
from thotto.messages import AttemptOutcome, JobState
from thotto.store import open_store

pytestmark = pytest.mark.chaos


async def test_1_worker_killed_with_100_posts_in_flight_publishes_each_once(make_chaos, postgres_dsn):
    chaos = make_chaos(postgres_dsn)
    await chaos.seed(titles("crash", 100), soon(2))
    # Each submission takes a while, so that many are in flight (armed, at Reddit) at the kill.
    await faults.latency_spike(chaos.sandbox, 0.3)
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(30, timeout=60)
    await faults.kill_9(thotto)
    killed_with = len(chaos.sandbox.record())
    assert killed_with < 100, "all posts went out before the kill: nothing was in flight"
    async with open_store(postgres_dsn) as store:
        in_flight = [c.count for c in await store.counts()
                     if c.queue == "posts" and c.state is JobState.PROCESSING]
    assert in_flight and in_flight[0] > 0, "no job was held by the killed process"
    await faults.reddit_recovers(chaos.sandbox)
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=60)
    verdict = await chaos.judge()
    expired = [job for job in verdict.jobs.values() if job.attempt > 1]
    assert expired, "no post needed a second attempt: the kill interrupted nothing"


async def test_1_killed_during_an_sqlite_group_commit_publishes_each_once(make_chaos, sizes):
    chaos = make_chaos()  # SQLite: seeded before Thotto starts (one process per file)
    count = sizes.pick(100, 300)
    await chaos.seed(titles("sqlite", count), soon(2))
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(count // 4, timeout=60)
    await faults.kill_during_sqlite_commit(thotto, chaos.database_url)
    assert len(chaos.sandbox.record()) < count, "all posts went out before the kill"
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=60)
    assert await faults.sigterm(thotto) == 0
    await chaos.judge()
