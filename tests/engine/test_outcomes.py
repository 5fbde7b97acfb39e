"""How attempts end: retries with backoff, dead letters, deferrals, timeouts, unknown kinds."""

from __future__ import annotations

from datetime import timedelta

import trio

from thotto.engine.errors import DeferJob, PermanentJobError, RetryableJobError
from thotto.engine.handlers import RetryPolicy
from thotto.engine.jobs import AttemptOutcome, JobState


async def run_for(seconds: float) -> None:
    await trio.sleep(seconds)


async def test_retries_follow_the_backoff_then_succeed(open_test_app, mock_clock):
    runs = []
    async with open_test_app() as (app, clock):
        async def flaky(ctx):
            runs.append(clock.now())
            if len(runs) < 3:
                raise RetryableJobError(f"HTTP 503 on try {len(runs)}")

        app.engine.register_handler("flaky", flaky, retry=RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=60))
        job = await app.engine.enqueue("flaky")
        await run_for(120)
        final = await app.engine.get(job.job_id)
        history = await app.engine.attempts(job.job_id)
    assert final.state is JobState.COMPLETED and final.attempt == 3
    assert [a.outcome for a in history] == [AttemptOutcome.RETRY, AttemptOutcome.RETRY, AttemptOutcome.COMPLETED]
    assert [a.error for a in history[:2]] == ["HTTP 503 on try 1", "HTTP 503 on try 2"]
    # Full jitter: the n-th retry waits between 0 and base·2^(n-1) seconds.
    assert timedelta(0) <= runs[1] - runs[0] <= timedelta(seconds=10)
    assert timedelta(0) <= runs[2] - runs[1] <= timedelta(seconds=20)


async def test_exhausted_attempts_dead_letter_the_job_with_the_last_error(open_test_app, mock_clock):
    async with open_test_app() as (app, clock):
        async def always_fails(ctx):
            raise RuntimeError("boom")

        app.engine.register_handler("bad", always_fails, retry=RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1))
        job = await app.engine.enqueue("bad")
        await run_for(30)
        final = await app.engine.get(job.job_id)
    assert final.state is JobState.DEAD and final.attempt == 2
    assert final.last_error == "RuntimeError: boom"


async def test_a_permanent_error_dead_letters_at_once_with_its_reason(open_test_app, mock_clock):
    async with open_test_app() as (app, clock):
        async def banned(ctx):
            raise PermanentJobError("SUBREDDIT_NOEXIST: that subreddit doesn't exist")

        app.engine.register_handler("post", banned)
        job = await app.engine.enqueue("post")
        await run_for(5)
        final = await app.engine.get(job.job_id)
    assert final.state is JobState.DEAD and final.attempt == 1
    assert final.last_error == "SUBREDDIT_NOEXIST: that subreddit doesn't exist"


async def test_deferral_reschedules_without_spending_an_attempt(open_test_app, mock_clock):
    runs = []
    async with open_test_app() as (app, clock):
        async def rate_limited(ctx):
            runs.append((clock.now(), ctx.attempt))
            if len(runs) <= 3:
                raise DeferJob("RATELIMIT: take a break for 2 minutes", until=clock.now() + timedelta(minutes=2))

        app.engine.register_handler("post", rate_limited, retry=RetryPolicy(max_attempts=1))
        job = await app.engine.enqueue("post")
        await run_for(10 * 60)
        final = await app.engine.get(job.job_id)
    assert final.state is JobState.COMPLETED
    assert [attempt for _, attempt in runs] == [1, 1, 1, 1]  # never spent, though max_attempts is 1
    assert [when - runs[0][0] for when, _ in runs] == [timedelta(minutes=2 * i) for i in range(4)]


async def test_a_handler_running_past_its_timeout_is_retried(open_test_app, mock_clock):
    async with open_test_app() as (app, clock):
        async def hangs(ctx):
            if ctx.attempt == 1:
                await trio.sleep_forever()

        app.engine.register_handler("slow", hangs, timeout_seconds=30, retry=RetryPolicy(base_seconds=1, cap_seconds=1))
        job = await app.engine.enqueue("slow")
        await run_for(60)
        history = await app.engine.attempts(job.job_id)
    assert [a.outcome for a in history] == [AttemptOutcome.RETRY, AttemptOutcome.COMPLETED]
    assert history[0].error == "timed out after 30 s"
    assert history[0].finished_at - history[0].started_at == timedelta(seconds=30)


async def test_a_kind_without_handler_waits_for_one_instead_of_failing(open_test_app, mock_clock):
    ran = []
    async with open_test_app() as (app, clock):
        job = await app.engine.enqueue("later.kind")
        await run_for(5)
        waiting = await app.engine.get(job.job_id)
        assert waiting.state is JobState.PENDING and waiting.attempt == 0

        async def handler(ctx):
            ran.append(clock.now())

        app.engine.register_handler("later.kind", handler)
        await run_for(60)
    assert len(ran) == 1


async def test_payloads_round_trip_as_json(open_test_app, mock_clock):
    seen = []
    async with open_test_app() as (app, clock):
        async def handler(ctx):
            seen.append(ctx.payload(dict))

        app.engine.register_handler("p", handler)
        await app.engine.enqueue("p", {"subreddit": "python", "n": 3})
        await run_for(1)
    assert seen == [{"subreddit": "python", "n": 3}]
