"""Store contract: ``queue_activity``, the queue monitor's snapshot (runs on every adapter,
like ``test_contract.py``; kept in its own file because the monitor owns it)."""

from __future__ import annotations

from datetime import timedelta

from tests.store.test_contract import LEASE, add, held_job, job_in
from thotto.engine.jobs import Dead, FailureCause, JobState
from thotto.engine.store.base import QueueActivity


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


async def test_queue_activity_of_an_empty_store_is_empty(store, clock):
    assert await store.queue_activity(clock()) == []


async def test_queue_activity_splits_pending_into_due_and_delayed(store, clock):
    await add(store, queue="a")
    await add(store, queue="a", run_at=clock() - seconds(5))
    await add(store, queue="a", run_at=clock() + seconds(60))
    await add(store, queue="b", run_at=clock() + seconds(60))
    await job_in(store, JobState.PROCESSING, queue="b")  # neither due nor delayed: active
    activity = {row.queue: row for row in await store.queue_activity(clock())}
    assert (activity["a"].due, activity["a"].delayed) == (2, 1)
    assert (activity["b"].due, activity["b"].delayed) == (0, 1)


async def test_queue_activity_counts_outcomes_since_the_given_time(store, clock):
    old = await held_job(store, queue="q")
    await store.complete("w1", old.id, old.attempt)  # before `since`: not counted
    clock.advance(10)
    since = clock()
    clock.advance(1)
    done = await held_job(store, queue="q")
    clock.advance(2.5)  # it ran for 2.5 s
    await store.complete("w1", done.id, done.attempt)
    retried = await held_job(store, queue="q")
    await store.fail("w1", retried.id, retried.attempt, "flaky", retry_at=clock() + seconds(60))
    dead = await held_job(store, queue="q")
    await store.fail("w1", dead.id, dead.attempt, "refused")
    stalled = await held_job(store, queue="q")
    clock.advance(LEASE + 1)
    await store.release_expired()
    (row,) = await store.queue_activity(since)
    # The dead-lettering outcome (a refusal: the job's own fault) is counted apart.
    assert row == QueueActivity(
        queue="q", due=1, delayed=1, completed=1, dead=1, failed_attempts=2, retried=1,
        expired=1, durations=[2.5], refused=1,
    )
    assert stalled.id != dead.id


async def test_queue_activity_counts_refusals_apart_from_system_failures(store, clock):
    since = clock()
    for cause in (FailureCause.REFUSED, FailureCause.ACCOUNT, FailureCause.SYSTEM):
        job = await held_job(store, queue="q")
        await store.settle("w1", [Dead(job.id, job.attempt, f"{cause.value} failure", cause)])
    last_try = await held_job(store, queue="q", max_attempts=1)
    await store.fail("w1", last_try.id, last_try.attempt, "HTTP 503", retry_at=clock())
    (row,) = await store.queue_activity(since)
    assert (row.dead, row.refused, row.failed_attempts) == (4, 2, 2)


async def test_queue_activity_samples_the_most_recent_run_times(store, clock):
    since = clock()
    for took in (1.0, 2.0, 3.0):
        job = await held_job(store, queue="q")
        clock.advance(took)
        await store.complete("w1", job.id, job.attempt)
    (row,) = await store.queue_activity(since, sample=2)
    assert row.completed == 3
    assert row.durations == [3.0, 2.0]


async def test_queue_activity_does_not_count_deferrals_as_failures(store, clock):
    since = clock()
    job = await held_job(store, queue="q")
    await store.defer("w1", job.id, job.attempt, clock() + seconds(30), "rate limited")
    (row,) = await store.queue_activity(since)
    assert (row.failed_attempts, row.delayed) == (0, 1)
