"""Store contract: what operators do to queues (search jobs, a job's failure cause, pause and
resume); runs on every adapter like ``test_contract.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.store.test_contract import (
    DEAD,
    LEASE,
    PENDING,
    UNKNOWN_ID,
    add,
    first_wakeup,
    held_job,
    job_in,
)
from thotto.engine.errors import InvalidTransition, NotFound, ValidationError
from thotto.engine.jobs import Dead, FailureCause, JobState
from thotto.engine.store.base import JobSearch


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


async def ids_of(store, **search) -> list[int]:
    page = await store.search_jobs(JobSearch(**search))
    return [record.job.id for record in page.jobs]


# --- search ----------------------------------------------------------------------------------


async def test_search_finds_jobs_by_queue_kind_state_and_run_time_newest_first(store, clock):
    a1 = await add(store, queue="a", kind="k.one")
    a2 = await add(store, queue="a", kind="k.two", run_at=clock() + seconds(60))
    b1 = await add(store, queue="b", kind="k.one")
    dead = await job_in(store, DEAD, queue="d", kind="k.one")
    assert await ids_of(store) == [dead, b1, a2, a1]
    assert await ids_of(store, queue="a") == [a2, a1]
    assert await ids_of(store, kind="k.one") == [dead, b1, a1]
    assert await ids_of(store, state=JobState.DEAD) == [dead]
    assert await ids_of(store, queue="b", state=PENDING) == [b1]
    assert await ids_of(store, queue="d", state=PENDING) == []
    assert await ids_of(store, run_from=clock() + seconds(1)) == [a2]
    assert await ids_of(store, run_to=clock() + seconds(60)) == [dead, b1, a1]


async def test_search_pages_neither_skip_nor_repeat_jobs(store):
    made = [await add(store, queue="q") for _ in range(7)]
    seen, cursor = [], None
    while True:
        page = await store.search_jobs(JobSearch(queue="q", limit=3, cursor=cursor))
        seen += [record.job.id for record in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made[::-1]


@pytest.mark.parametrize("search, field", [
    (JobSearch(limit=0), "limit"),
    (JobSearch(limit=501), "limit"),
    (JobSearch(cursor="not a cursor"), "cursor"),
])
async def test_search_refuses_bad_input_naming_the_field(store, search, field):
    with pytest.raises(ValidationError) as raised:
        await store.search_jobs(search)
    assert raised.value.field == field


# --- failure causes ----------------------------------------------------------------------------


async def test_a_dead_job_keeps_the_cause_its_outcome_gave(store):
    for cause in FailureCause:
        job = await held_job(store)
        await store.settle("w1", [Dead(job.id, job.attempt, "no", cause)])
        record = await store.get_job_record(job.id)
        assert (record.job.state, record.failure_cause) == (DEAD, cause)


async def test_a_last_retry_or_an_expired_last_lease_dies_of_a_system_failure(store, clock):
    retried = await held_job(store, max_attempts=1)
    await store.fail("w1", retried.id, retried.attempt, "HTTP 503", retry_at=clock())
    stalled = await held_job(store, max_attempts=1)
    clock.advance(LEASE + 1)
    await store.release_expired()
    for job in (retried, stalled):
        record = await store.get_job_record(job.id)
        assert (record.job.state, record.failure_cause) == (DEAD, FailureCause.SYSTEM)


async def test_only_dead_jobs_have_a_failure_cause_and_redrive_clears_it(store):
    pending = await store.get_job_record(await add(store, queue="other"))
    assert pending.failure_cause is None
    dead = await job_in(store, DEAD)
    assert (await store.get_job_record(dead)).failure_cause is FailureCause.REFUSED
    assert await store.redrive([dead, dead]) == [dead]
    assert await store.redrive([dead]) == []  # once: a second redrive of a live job is a no-op
    record = await store.get_job_record(dead)
    assert (record.job.state, record.failure_cause) == (PENDING, None)
    (found,) = (await store.search_jobs(JobSearch(state=PENDING, queue="default"))).jobs
    assert (found.job.id, found.failure_cause) == (dead, None)


async def test_the_record_of_an_unknown_job_is_not_found(store):
    with pytest.raises(NotFound):
        await store.get_job_record(UNKNOWN_ID)


# --- pause and resume ------------------------------------------------------------------------


async def test_a_paused_queue_is_not_claimed_until_resumed(store, clock):
    paused_job = await add(store, queue="slow")
    other = await add(store, queue="fast")
    paused = await store.pause_queue("slow")
    assert (paused.queue, paused.paused_at) == ("slow", clock())
    assert [job.id for job in await store.claim("w1", 10, LEASE)] == [other]
    assert await store.claim("w1", 10, LEASE, queues=["slow"]) == []
    assert await store.next_due() is None
    assert await store.resume_queue("slow") is True
    assert await store.next_due() == clock()
    assert [job.id for job in await store.claim("w1", 10, LEASE)] == [paused_job]


async def test_pausing_is_durable_idempotent_and_listed(store, store_factory, clock):
    first = await store.pause_queue("b")
    clock.advance(5)
    assert await store.pause_queue("b") == first  # keeps the first paused_at
    await store.pause_queue("a")
    assert [p.queue for p in await store.paused_queues()] == ["a", "b"]
    assert await store.resume_queue("a") is True
    assert await store.resume_queue("a") is False
    await store.aclose()
    async with store_factory() as reopened:
        assert await reopened.paused_queues() == [first]
        await add(reopened, queue="b")
        assert await reopened.claim("w1", 10, LEASE) == []


async def test_resuming_wakes_the_tickers(store, clock):
    await store.pause_queue("q")
    assert await first_wakeup(store, lambda: store.resume_queue("q")) == clock()


async def test_a_paused_queue_name_is_validated(store):
    with pytest.raises(ValidationError) as raised:
        await store.pause_queue("bad name!")
    assert raised.value.field == "queue"


# --- a failed post, edited and scheduled again -------------------------------------------------


async def test_a_failed_post_is_edited_and_scheduled_again_with_a_fresh_job(store, clock):
    from tests.store.test_contract import fail_post, make_account, schedule
    from thotto.scheduler.records import PostContent, PostStatus

    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60), subreddit="typo_sub")
    clock.advance(60)
    failed = await fail_post(store, post, "SUBREDDIT_NOEXIST")
    assert failed.status is PostStatus.FAILED
    fixed = PostContent(subreddit="thotto_test", title="Hello again", text="body")
    when = clock() + seconds(600)
    revived = await store.revive_post(post.id, scheduled_for=when, content=fixed)
    assert (revived.status, revived.content, revived.scheduled_for, revived.error) == (
        PostStatus.SCHEDULED, fixed, when, None)
    record = await store.get_job_record(post.job_id)
    assert (record.job.state, record.job.attempt, record.job.run_at, record.failure_cause) == (
        PENDING, 0, when, None)
    with pytest.raises(InvalidTransition):  # scheduled now: only a failed post revives
        await store.revive_post(post.id, scheduled_for=when)


async def test_a_failed_post_that_may_be_on_reddit_is_not_edited(store, clock):
    from tests.store.test_contract import claim_job, make_account, schedule
    from thotto.scheduler.records import PostContent, PostStatus

    account = await make_account(store)
    post = await schedule(store, account, clock())
    await store.arm_post(post.id)
    job = await claim_job(store, post.job_id)
    await store.fail("w1", job.id, job.attempt, "lease expired")
    fixed = PostContent(subreddit="thotto_test", title="Other", text="body")
    with pytest.raises(InvalidTransition):
        await store.revive_post(post.id, scheduled_for=clock(), content=fixed)
    revived = await store.revive_post(post.id, scheduled_for=clock())
    assert revived.status is PostStatus.PUBLISHING  # armed: the publisher looks on Reddit first
