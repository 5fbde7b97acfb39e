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
from thotto.engine.jobs import AttemptOutcome, JobState
from thotto.store import open_store

pytestmark = pytest.mark.chaos


async def test_1_worker_killed_with_100_posts_in_flight_publishes_each_once(make_chaos, postgres_dsn):
    # 100 workers and a slow Reddit: all 100 posts are claimed and at Reddit at once.
    chaos = make_chaos(postgres_dsn, workers=100)
    await chaos.seed(titles("crash", 100), soon(2))
    await faults.latency_spike(chaos.sandbox, 1.0)
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(10, timeout=60)
    async with open_store(postgres_dsn) as store:
        in_flight = sum(c.count for c in await store.counts()
                        if c.queue == "posts" and c.state is JobState.PROCESSING)
    await faults.kill_9(thotto)
    assert len(chaos.sandbox.record()) < 100, "all posts went out before the kill: nothing was in flight"
    assert in_flight >= 50, f"only {in_flight} posts were in flight"
    await faults.reddit_recovers(chaos.sandbox)
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=60)
    verdict = await chaos.judge()
    retried = [job for job in verdict.jobs.values() if job.attempt > 1]
    assert retried, "no post needed a second attempt: the kill interrupted nothing"


async def test_1_killed_during_an_sqlite_group_commit_publishes_each_once(make_chaos, sizes):
    chaos = make_chaos()  # SQLite: seeded before Thotto starts (one process per file)
    count = sizes.pick(200, 500)  # more than a page of the listing (100) after the kill
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


async def test_10_two_processes_one_killed_again_and_again_publish_each_post_once(make_chaos, postgres_dsn, sizes):
    count, kills, window = sizes.pick((200, 4, 10.0), (1000, 10, 40.0))
    chaos = make_chaos(postgres_dsn)
    await chaos.seed(titles("pair", count), spread(3, window, count))
    await faults.latency_spike(chaos.sandbox, 0.05)  # keep some posts in flight at every kill
    survivor, victim = chaos.thotto("survivor"), chaos.thotto("victim")
    async with trio.open_nursery() as nursery:  # start both at once
        nursery.start_soon(survivor.start)
        nursery.start_soon(victim.start)
    for kill in range(kills):
        # Kill at evenly spaced moments through the publishing window, whatever the progress.
        await trio.sleep(window / kills)
        await faults.kill_9(victim)
        await victim.start()
    await chaos.wait_until_all_finished(timeout=120)
    assert survivor.alive and survivor.starts == 1
    assert victim.starts == kills + 1
    await chaos.judge()


async def test_11_sigterm_under_load_exits_0_releases_leases_and_a_restart_resumes_at_once(make_chaos, postgres_dsn):
    # Leases of ten minutes: only a release, never an expiry, can let a restart resume at once.
    chaos = make_chaos(postgres_dsn, lease_seconds=600, reddit_reconcile_settle_seconds=3)
    await chaos.seed(titles("term", 40), soon(2))
    await faults.latency_spike(chaos.sandbox, 1.5)  # every worker busy at Reddit at the signal
    thotto = chaos.thotto()
    await thotto.start()
    async with open_store(postgres_dsn) as store:

        async def workers_busy() -> bool:
            return sum(c.count for c in await store.counts()
                       if c.queue == "posts" and c.state is JobState.PROCESSING) >= 8

        await chaos.wait_for("8 posts being published", workers_busy, timeout=30)
        assert await faults.sigterm(thotto) == 0
        jobs = [await store.get_job(post.job_id) for post in chaos.seeded.posts.values()]
        assert not [job.id for job in jobs if job.state is JobState.PROCESSING], "leases left held"
        assert not [job.id for job in jobs if job.lease_owner is not None]
        released = [job for job in jobs if job.state is JobState.PENDING
                    and (await store.attempts(job.id))[-1:] and
                    (await store.attempts(job.id))[-1].outcome is AttemptOutcome.RELEASED]
        assert released, "no running post was handed back"
        assert {job.attempt for job in released} == {0}  # a released attempt is refunded
    await faults.reddit_recovers(chaos.sandbox)
    await thotto.start()
    # Far sooner than the 600 s leases could expire.
    await chaos.wait_until_all_finished(timeout=60)
    assert await faults.sigterm(thotto) == 0
    await chaos.judge()
