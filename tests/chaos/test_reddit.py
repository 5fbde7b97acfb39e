"""Reddit misbehaving (the sandbox's faults) and time jumping: retries with backoff (scenario 3),
an outage behind the breakers (scenario 8), a rate-limit storm (scenario 9), and the wall clock
jumping forward under load. The sandbox's record is the judge."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from tests.chaos import faults
from tests.chaos.harness import soon, spread, titles
from tests.support.chaos_process import JumpingClock
from thotto.engine.jobs import AttemptOutcome, JobState, utcnow
from thotto.store import open_store

pytestmark = pytest.mark.chaos


async def test_3_a_post_failing_twice_then_succeeding_shows_3_attempts_with_backoff(make_chaos, postgres_dsn):
    # No settling pause before a retry resubmits (the 503s certainly posted nothing), so the
    # history holds exactly the three attempts.
    chaos = make_chaos(postgres_dsn, reddit_reconcile_settle_seconds=0)
    (post,) = await chaos.seed(["retried"], soon(2))
    await chaos.sandbox.faults(errors=[{"status": 503, "path": "/api/submit", "count": 2}])
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=30)
    verdict = await chaos.judge()
    async with open_store(postgres_dsn) as store:
        history = await store.attempts(post.job_id)
    assert [(a.attempt, a.outcome) for a in history] == [
        (1, AttemptOutcome.RETRY), (2, AttemptOutcome.RETRY), (3, AttemptOutcome.COMPLETED)]
    assert all("503" in a.error for a in history[:2]), [a.error for a in history]
    assert verdict.jobs["retried"].attempt == 3
    # Exponential backoff with full jitter (RetryPolicy: base 1 s): the wait after failed
    # attempt n is at most 2^(n-1) s; never did an attempt start before the last one ended.
    for n, (failed, next_) in enumerate(zip(history, history[1:]), start=1):
        gap = (next_.started_at - failed.finished_at).total_seconds()
        assert 0 <= gap <= 2 ** (n - 1) + 1.0, (n, gap)  # + 1 s for claiming and scheduling


async def test_8_a_reddit_outage_opens_the_breaker_kills_no_post_and_all_publish_after(make_chaos, postgres_dsn, sizes):
    outage = sizes.pick(10.0, 60.0)  # "five minutes" of 503s, compressed
    chaos = make_chaos(postgres_dsn)
    scheduled = await chaos.seed(titles("outage", 20), spread(2, outage / 2, 20))
    thotto = chaos.thotto(breaker_open_seconds=1.0)
    await thotto.start()
    await faults.reddit_503_storm(chaos.sandbox)
    async with open_store(postgres_dsn) as store:

        async def none_dead() -> bool:
            counts = {c.state: c.count for c in await store.counts() if c.queue == "posts"}
            assert not counts.get(JobState.DEAD), f"a post died during the outage{chaos.logs()}"
            return False

        with trio.move_on_after(outage):  # the outage lasts this long; watch no post die
            await chaos.wait_for("the outage to end", none_dead, timeout=outage + 10, poll=0.25)
        assert chaos.sandbox.record() == [], "Reddit was down, yet something was accepted"
        await faults.reddit_recovers(chaos.sandbox)
        await chaos.wait_until_all_finished(timeout=90)
        histories = [await store.attempts(post.job_id) for post in scheduled]
    await chaos.judge()
    refusals = [a for history in histories for a in history
                if a.outcome is AttemptOutcome.DEFERRED and "Circuit breaker" in (a.error or "")]
    assert refusals, "the breaker never turned a post away"
    assert all(h[-1].outcome is AttemptOutcome.COMPLETED for h in histories)


async def test_9_a_rate_limit_storm_defers_spends_no_attempt_and_all_publish(make_chaos, postgres_dsn):
    chaos = make_chaos(postgres_dsn)
    scheduled = await chaos.seed(titles("storm", 30), spread(2, 2, 30))
    # 429s with exhausted headers on API requests, and RATELIMIT errors on submissions.
    await chaos.sandbox.faults(too_many_requests={"count": 20, "reset": 1},
                               ratelimit={"count": 20, "seconds": 1})
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=60)
    left = (await chaos.sandbox.control("GET", "/_sandbox/faults")).json()
    assert left["too_many_requests"]["count"] == 0 and left["ratelimit"]["count"] == 0, left
    verdict = await chaos.judge()
    assert {job.attempt for job in verdict.jobs.values()} == {1}, "a rate limit spent an attempt"
    async with open_store(postgres_dsn) as store:
        histories = [await store.attempts(post.job_id) for post in scheduled]
    deferred = [a for history in histories for a in history if a.outcome is AttemptOutcome.DEFERRED]
    assert deferred, "no post was deferred"
    assert not [a for history in histories for a in history
                if a.outcome not in (AttemptOutcome.DEFERRED, AttemptOutcome.COMPLETED)]


async def test_dropped_replies_and_expired_tokens_publish_each_post_once(make_chaos, postgres_dsn):
    chaos = make_chaos(postgres_dsn)
    # Spread over 12 s: Thotto runs many submissions at once, so posts due together would all be
    # out before the faults below; these fall due one by one across them.
    await chaos.seed(titles("dropped", 20), spread(2, 12, 20))
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(3, timeout=30)
    await faults.expire_tokens(chaos.sandbox)  # every access token dies mid-run
    await faults.accept_then_drop(chaos.sandbox, 5)  # then 5 posts accepted, their replies lost
    await chaos.wait_until_all_finished(timeout=60)
    await chaos.judge()
    async with open_store(postgres_dsn) as store:
        ran_again = [post for post in chaos.seeded.posts.values()
                     if len(await store.attempts(post.job_id)) > 1]
    # Each lost reply leaves an outcome unknown: the post runs again (retried, or deferred once
    # the failures trip the breaker) and is found on Reddit rather than posted twice.
    assert len(ran_again) >= 5, "the dropped replies did not make posts run again"


async def test_the_clock_stepped_forward_under_load_publishes_each_post_once(make_chaos, postgres_dsn):
    # The machine's clock runs an hour slow, and NTP steps it to the right time while
    # submissions are in flight: every lease the process holds suddenly looks an hour expired to
    # its own sweeper, and the posts it is sending are taken back and run again.
    chaos = make_chaos(postgres_dsn)
    slow = JumpingClock(-3600)
    async with chaos.app(clock=slow) as app:  # scheduling in the slow clock's world
        await chaos.schedule(app, titles("slow", 20), lambda i: slow.now() + timedelta(seconds=2 + i * 0.05))
        # Due in an hour and a few seconds by the slow clock: a few seconds after the step.
        await chaos.schedule(app, titles("stepped", 10), lambda i: utcnow() + timedelta(seconds=8 + i * 0.2))
    await faults.latency_spike(chaos.sandbox, 1.0)
    thotto = chaos.thotto(clock_offset_seconds=-3600, jump_seconds=3600)
    await thotto.start()
    await chaos.wait_for_record(4, timeout=30)
    await faults.jump_clock(thotto)
    await chaos.wait_until_all_finished(timeout=60)
    assert thotto.alive and thotto.starts == 1
    verdict = await chaos.judge()
    retaken = [job for job in verdict.jobs.values() if job.attempt > 1]
    assert retaken, "the step took no lease back: it tested nothing"
