"""The store contract: every guarantee that ``thotto/store/base.py`` documents, on every adapter.

Each test runs once per adapter (the ``store`` fixture is parametrized). Time comes from the
fixture's FakeClock, which starts at a fixed instant; tests move it by hand, so every time they
assert is exact. Test names say the behaviour; helpers below keep the set-up out of the way.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
import trio
import trio.testing

from thotto.engine.errors import (
    Conflict,
    InvalidTransition,
    LeaseLost,
    NotFound,
    StoreLocked,
    ValidationError,
)
from thotto.engine.jobs import (
    UTC,
    Attempt,
    AttemptOutcome,
    Completed,
    Dead,
    Deferred,
    EnqueueResult,
    ExpiredLeases,
    Job,
    JobState,
    NewJob,
    Outcome,
    QueueCount,
    Released,
    Retry,
    SettleResult,
    SettleStatus,
)
from thotto.errors import OutcomePending
from thotto.scheduler.records import (
    Account,
    ApiToken,
    EngagementReading,
    NewAccount,
    NewPost,
    NewUser,
    Post,
    PostContent,
    PostKind,
    PostEngagement,
    PostStatus,
    Role,
    SubredditRules,
    Tier,
    User,
)
from thotto.store import Store

PENDING, PROCESSING = JobState.PENDING, JobState.PROCESSING
COMPLETED, DEAD, CANCELLED = JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED
FINISHED = [COMPLETED, DEAD, CANCELLED]
OK, ALREADY, LEASE_LOST = SettleStatus.OK, SettleStatus.ALREADY, SettleStatus.LEASE_LOST

NAIVE = datetime(2026, 3, 1, 12, 0)  # no time zone: always a ValidationError
UNKNOWN_ID = 10**9
LEASE = 30.0  # seconds, the lease every helper claims with
WAKE_TIMEOUT = 5.0  # real seconds: wake-ups cross threads, so they get a real (short) deadline


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def state_id(state: JobState) -> str:
    return state.value


# --- job helpers ----------------------------------------------------------------------------


async def add(store: Store, **fields) -> int:
    """Enqueue one job (kind ``test.job`` unless given) and return its id."""
    fields.setdefault("kind", "test.job")
    result = await store.enqueue(NewJob(**fields))
    assert result.created
    return result.job_id


async def claim_job(store: Store, job_id: int, owner: str = "w1") -> Job:
    """Claim exactly this job; it must be the next due job of its queue."""
    job = await store.get_job(job_id)
    claimed = await store.claim(owner, 1, LEASE, queues=[job.queue], due_by=job.run_at)
    assert [c.id for c in claimed] == [job_id]
    return claimed[0]


async def held_job(store: Store, owner: str = "w1", **fields) -> Job:
    """A new job claimed by ``owner``."""
    return await claim_job(store, await add(store, **fields), owner)


async def job_in(store: Store, state: JobState, **fields) -> int:
    """Enqueue a job, drive it to ``state`` the ordinary way, and return its id."""
    job_id = await add(store, **fields)
    if state is CANCELLED:
        await store.cancel(job_id)
    elif state is not PENDING:
        job = await claim_job(store, job_id)
        if state is COMPLETED:
            await store.complete("w1", job_id, job.attempt)
        elif state is DEAD:
            await store.fail("w1", job_id, job.attempt, "boom")
    assert (await store.get_job(job_id)).state is state
    return job_id


async def claim_concurrently(claimers: list[tuple[Store, str]]) -> list[Job]:
    """Let every (store, owner) claim in small batches at once until nothing is left."""
    claimed: list[Job] = []

    async def worker(claimer: Store, owner: str) -> None:
        while batch := await claimer.claim(owner, 7, 60.0):
            assert all(job.lease_owner == owner for job in batch)
            claimed.extend(batch)

    async with trio.open_nursery() as nursery:
        for claimer, owner in claimers:
            nursery.start_soon(worker, claimer, owner)
    return claimed


async def settle_one(store: Store, outcome: Outcome, owner: str = "w1") -> SettleStatus:
    """Settle one outcome and return its status, checking the result names the job."""
    (result,) = await store.settle(owner, [outcome])
    assert result.job_id == outcome.job_id
    return result.status


async def progress(store: Store, job_id: int) -> tuple[JobState, datetime, int]:
    """Where a job stands: (state, run_at, attempt)."""
    job = await store.get_job(job_id)
    return job.state, job.run_at, job.attempt


async def state_of(store: Store, job_id: int) -> JobState:
    return (await store.get_job(job_id)).state


async def count_map(store: Store) -> dict[tuple[str, JobState], int]:
    return {(c.queue, c.state): c.count for c in await store.counts()}


async def first_wakeup(store: Store, write) -> datetime:
    """Start iterating ``store.wakeups()``, run ``write()``, and return the first wake-up."""
    got: list[datetime] = []
    with trio.fail_after(WAKE_TIMEOUT):
        async with contextlib.aclosing(store.wakeups()) as wakes:

            async def listen() -> None:
                got.append(await anext(wakes))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await trio.testing.wait_all_tasks_blocked()
                await write()
    return got[0]


# --- user, account and post helpers ----------------------------------------------------------


def link(user_id: int, reddit: str, token: bytes = b"sealed-1", scopes: str = "") -> NewAccount:
    return NewAccount(
        user_id=user_id, reddit_username=reddit, refresh_token_encrypted=token, scopes=scopes
    )


async def make_account(store: Store, user: str = "alice", reddit: str = "alice_r") -> Account:
    """A new user with one linked Reddit account."""
    owner = await store.create_user(NewUser(name=user))
    return await store.create_account(link(owner.id, reddit))


def new_post(account: Account, when: datetime, title: str = "Hello world", **content) -> NewPost:
    content.setdefault("subreddit", "thotto_test")
    return NewPost(
        user_id=account.user_id,
        account_id=account.id,
        content=PostContent(title=title, text="body", **content),
        scheduled_for=when,
    )


async def schedule(store: Store, account: Account, when: datetime, **content) -> Post:
    (post,) = await store.create_posts([new_post(account, when, **content)])
    return post


async def publish(store: Store, post: Post, reddit_id: str = "t3_abc") -> Post:
    """Claim the post's job, record the publication and complete it (as a poster does)."""
    job = await claim_job(store, post.job_id)
    await store.record_publication(post.id, reddit_id, f"https://redd.it/{reddit_id}")
    await store.complete("w1", job.id, job.attempt)
    return await store.get_post(post.id)


async def fail_post(store: Store, post: Post, error: str = "SUBREDDIT_NOEXIST") -> Post:
    job = await claim_job(store, post.job_id)
    await store.fail("w1", job.id, job.attempt, error)
    return await store.get_post(post.id)


# === enqueue ===================================================================================


async def test_enqueue_stores_a_pending_job_due_now(store, clock):
    result = await store.enqueue(NewJob(kind="test.job"))
    assert result == EnqueueResult(job_id=result.job_id, created=True, run_at=clock())
    job = await store.get_job(result.job_id)
    assert job == Job(
        id=result.job_id,
        queue="default",
        kind="test.job",
        payload=b"null",
        priority=0,
        run_at=clock(),
        state=PENDING,
        attempt=0,
        max_attempts=3,
        dedupe_key=None,
        lease_owner=None,
        lease_until=None,
        created_at=clock(),
    )


async def test_enqueue_keeps_every_field(store, clock):
    when = clock() + seconds(600)
    job_id = await add(
        store, queue="mail", kind="mail.send", payload=b'{"to": "bob"}', priority=7,
        run_at=when, max_attempts=5, dedupe_key="mail-1",
    )
    job = await store.get_job(job_id)
    assert (job.queue, job.kind, job.payload) == ("mail", "mail.send", b'{"to": "bob"}')
    assert (job.priority, job.run_at, job.max_attempts, job.dedupe_key) == (7, when, 5, "mail-1")


async def test_times_come_out_in_utc(store, clock):
    plus_two = datetime(2026, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    job = await store.get_job(await add(store, run_at=plus_two))
    assert job.run_at == plus_two
    assert job.run_at.utcoffset() == timedelta(0)
    assert job.created_at.utcoffset() == timedelta(0)


async def test_enqueue_many_returns_results_in_input_order(store, clock):
    later = clock() + seconds(60)
    results = await store.enqueue_many(
        [NewJob(kind="a"), NewJob(kind="b", run_at=later), NewJob(kind="c")]
    )
    assert [r.created for r in results] == [True, True, True]
    assert [r.run_at for r in results] == [clock(), later, clock()]
    assert [(await store.get_job(r.job_id)).kind for r in results] == ["a", "b", "c"]
    assert len({r.job_id for r in results}) == 3


async def test_enqueue_many_with_one_bad_job_stores_nothing(store):
    batch = [NewJob(kind="a"), NewJob(kind="b", max_attempts=0), NewJob(kind="c")]
    with pytest.raises(ValidationError):
        await store.enqueue_many(batch)
    assert await store.counts() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": ""},
        {"kind": "bad kind"},
        {"run_at": NAIVE},
        {"max_attempts": 0},
        {"queue": "bad queue!"},
        {"queue": ""},
        {"priority": 5000},
        {"dedupe_key": ""},
    ],
    ids=[
        "empty-kind", "bad-kind", "naive-run_at", "max_attempts-0", "bad-queue", "empty-queue",
        "priority-too-high", "empty-dedupe-key",
    ],
)
async def test_enqueue_rejects_invalid_jobs(store, fields):
    with pytest.raises(ValidationError):
        await store.enqueue(NewJob(**{"kind": "test.job", **fields}))
    assert await store.counts() == []


# === dedupe ====================================================================================


@pytest.mark.parametrize("state", [PENDING, PROCESSING], ids=state_id)
async def test_dedupe_returns_the_live_job(store, clock, state):
    first = await job_in(store, state, dedupe_key="k", run_at=clock() - seconds(5))
    again = await store.enqueue(NewJob(kind="other", dedupe_key="k", run_at=clock() + seconds(99)))
    assert again == EnqueueResult(job_id=first, created=False, run_at=clock() - seconds(5))
    assert await count_map(store) == {("default", state): 1}


async def test_dedupe_is_per_queue(store):
    first = await store.enqueue(NewJob(kind="k", queue="a", dedupe_key="k"))
    second = await store.enqueue(NewJob(kind="k", queue="b", dedupe_key="k"))
    assert second.created and second.job_id != first.job_id


@pytest.mark.parametrize("state", FINISHED, ids=state_id)
async def test_dedupe_key_is_free_once_the_job_finished(store, state):
    finished = await job_in(store, state, dedupe_key="k")
    again = await store.enqueue(NewJob(kind="test.job", dedupe_key="k"))
    assert again.created and again.job_id != finished
    assert await state_of(store, finished) is state


async def test_dedupe_within_one_batch(store, clock):
    later = clock() + seconds(60)
    first, second, other = await store.enqueue_many(
        [
            NewJob(kind="a", dedupe_key="k", run_at=later),
            NewJob(kind="b", dedupe_key="k"),
            NewJob(kind="c", dedupe_key="other"),
        ]
    )
    assert first.created and other.created
    assert second == EnqueueResult(job_id=first.job_id, created=False, run_at=later)
    assert await count_map(store) == {("default", PENDING): 2}


async def test_dedupe_in_a_batch_matches_a_stored_live_job(store):
    stored = await add(store, dedupe_key="k")
    (result,) = await store.enqueue_many([NewJob(kind="b", dedupe_key="k")])
    assert (result.job_id, result.created) == (stored, False)


# === claim =====================================================================================


async def test_claim_takes_only_due_jobs(store, clock):
    due = await add(store, run_at=clock() - seconds(1))
    exactly_now = await add(store, run_at=clock())
    await add(store, run_at=clock() + seconds(1))
    claimed = await store.claim("w1", 10, LEASE)
    assert [j.id for j in claimed] == [due, exactly_now]


async def test_claim_sets_the_lease_and_starts_an_attempt(store, clock):
    job_id = await add(store)
    clock.advance(10)
    (job,) = await store.claim("w1", 10, LEASE)
    assert (job.id, job.state, job.attempt) == (job_id, PROCESSING, 1)
    assert (job.lease_owner, job.lease_until) == ("w1", clock() + seconds(LEASE))
    assert await store.get_job(job_id) == job


async def test_claim_orders_by_run_at_then_priority_then_id(store, clock):
    early = clock() - seconds(20)
    late = clock() - seconds(10)
    low = await add(store, run_at=late, priority=0)
    high_1 = await add(store, run_at=late, priority=5)
    high_2 = await add(store, run_at=late, priority=5)
    earliest = await add(store, run_at=early, priority=-5)
    claimed = await store.claim("w1", 10, LEASE)
    assert [j.id for j in claimed] == [earliest, high_1, high_2, low]


async def test_claim_respects_limit_taking_the_first_in_order(store, clock):
    ids = [await add(store, run_at=clock() - seconds(n)) for n in (1, 3, 2)]
    claimed = await store.claim("w1", 2, LEASE)
    assert [j.id for j in claimed] == [ids[1], ids[2]]
    assert await count_map(store) == {("default", PENDING): 1, ("default", PROCESSING): 2}


async def test_claim_filters_by_queue(store):
    await add(store, queue="a")
    b = await add(store, queue="b")
    c = await add(store, queue="c")
    claimed = await store.claim("w1", 10, LEASE, queues=["b", "c"])
    assert [j.id for j in claimed] == [b, c]


async def test_claim_due_by_takes_jobs_ahead_of_now(store, clock):
    soon = await add(store, run_at=clock() + seconds(5))
    await add(store, run_at=clock() + seconds(20))
    (job,) = await store.claim("w1", 10, LEASE, due_by=clock() + seconds(10))
    assert job.id == soon
    assert job.lease_until == clock() + seconds(LEASE)


async def test_claimed_jobs_are_not_claimed_again(store):
    await add(store)
    assert len(await store.claim("w1", 10, LEASE)) == 1
    assert await store.claim("w2", 10, LEASE) == []
    assert await store.claim("w1", 10, LEASE) == []


async def test_concurrent_claims_on_one_store_never_share_a_job(store):
    results = await store.enqueue_many([NewJob(kind="k") for _ in range(200)])
    claimed = await claim_concurrently([(store, f"w{n}") for n in range(4)])
    assert sorted(j.id for j in claimed) == sorted(r.job_id for r in results)


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_postgres_stores_racing_never_share_a_job(store, store_factory):
    results = await store.enqueue_many([NewJob(kind="k") for _ in range(300)])
    async with store_factory() as other:
        claimers = [(store, "a1"), (store, "a2"), (other, "b1"), (other, "b2")]
        claimed = await claim_concurrently(claimers)
    ids = [j.id for j in claimed]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(r.job_id for r in results)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_second_sqlite_store_on_the_same_file_is_refused(store, store_factory):
    with pytest.raises(StoreLocked):
        async with store_factory():
            pass
    assert await store.counts() == []  # the first store still works


# === heartbeat =================================================================================


async def test_heartbeat_extends_the_owners_leases(store, clock):
    ids = [await add(store), await add(store)]
    await store.claim("w1", 10, LEASE)
    clock.advance(20)
    assert sorted(await store.heartbeat("w1", ids, 60)) == ids
    for job_id in ids:
        assert (await store.get_job(job_id)).lease_until == clock() + seconds(60)


async def test_heartbeat_of_another_owner_changes_nothing(store, clock):
    job = await held_job(store)
    clock.advance(20)
    assert await store.heartbeat("w2", [job.id], 60) == []
    stored = await store.get_job(job.id)
    assert (stored.lease_owner, stored.lease_until) == ("w1", job.lease_until)


async def test_heartbeat_omits_leases_lost_or_finished(store, clock):
    expired = await held_job(store)
    finished = await held_job(store)
    await store.complete("w1", finished.id, 1)
    clock.advance(LEASE + 1)
    await store.release_expired()
    held = await held_job(store, queue="other")
    assert await store.heartbeat("w1", [expired.id, finished.id, held.id], 60) == [held.id]


# === settle ====================================================================================


async def test_completed_finishes_the_job(store, clock):
    job = await held_job(store)
    clock.advance(5)
    assert await settle_one(store, Completed(job.id, 1)) is OK
    stored = await store.get_job(job.id)
    assert (stored.state, stored.attempt, stored.finished_at) == (COMPLETED, 1, clock())


async def test_retry_returns_the_job_to_pending_at_run_at(store, clock):
    job = await held_job(store)
    retry_at = clock() + seconds(120)
    assert await settle_one(store, Retry(job.id, 1, retry_at, "timeout")) is OK
    assert await progress(store, job.id) == (PENDING, retry_at, 1)
    clock.set(retry_at)
    (again,) = await store.claim("w2", 10, LEASE)
    assert (again.id, again.attempt) == (job.id, 2)


async def test_retry_on_the_last_attempt_dead_letters(store, clock):
    job = await held_job(store, max_attempts=1)
    assert await settle_one(store, Retry(job.id, 1, clock() + seconds(120), "timeout")) is OK
    stored = await store.get_job(job.id)
    assert (stored.state, stored.last_error, stored.finished_at) == (DEAD, "timeout", clock())
    assert [a.outcome for a in await store.attempts(job.id)] == [AttemptOutcome.DEAD]


async def test_dead_dead_letters_and_keeps_the_error(store, clock):
    job = await held_job(store, max_attempts=5)
    assert await settle_one(store, Dead(job.id, 1, "SUBREDDIT_NOEXIST")) is OK
    stored = await store.get_job(job.id)
    assert (stored.state, stored.finished_at) == (DEAD, clock())
    assert stored.last_error == "SUBREDDIT_NOEXIST"
    assert (await store.attempts(job.id))[-1].error == "SUBREDDIT_NOEXIST"


async def test_deferred_refunds_the_attempt(store, clock):
    job = await held_job(store, max_attempts=1)
    until = clock() + seconds(300)
    assert await settle_one(store, Deferred(job.id, 1, until, "RATELIMIT")) is OK
    assert await progress(store, job.id) == (PENDING, until, 0)
    clock.set(until)
    (again,) = await store.claim("w1", 10, LEASE)
    assert again.attempt == 1  # the one attempt it has is still there


async def test_released_refunds_and_runs_now(store, clock):
    job = await held_job(store, run_at=clock() - seconds(60))
    clock.advance(7)
    assert await settle_one(store, Released(job.id, 1)) is OK
    assert await progress(store, job.id) == (PENDING, clock(), 0)


async def test_settle_by_another_owner_is_lease_lost(store):
    job = await held_job(store)
    assert await settle_one(store, Completed(job.id, 1), owner="w2") is LEASE_LOST
    stored = await store.get_job(job.id)
    assert (stored.state, stored.lease_owner, stored.attempt) == (PROCESSING, "w1", 1)


async def test_settle_of_a_stale_attempt_is_lease_lost(store, clock):
    job = await held_job(store)
    clock.advance(LEASE + 1)
    await store.release_expired()
    second = await claim_job(store, job.id)  # the same owner, attempt 2
    assert second.attempt == 2
    assert await settle_one(store, Completed(job.id, 1)) is LEASE_LOST
    assert await state_of(store, job.id) is PROCESSING


async def test_settle_after_the_lease_expired_and_was_released_is_lease_lost(store, clock):
    job = await held_job(store)
    clock.advance(LEASE + 1)
    await store.release_expired()
    assert await settle_one(store, Completed(job.id, 1)) is LEASE_LOST
    assert await state_of(store, job.id) is PENDING


async def test_settle_of_an_unclaimed_or_unknown_job_is_lease_lost(store):
    pending = await add(store)
    results = await store.settle("w1", [Completed(pending, 1), Completed(UNKNOWN_ID, 1)])
    assert results == [SettleResult(pending, LEASE_LOST), SettleResult(UNKNOWN_ID, LEASE_LOST)]
    assert await state_of(store, pending) is PENDING


OUTCOMES = {
    "completed": lambda job_id, at: Completed(job_id, 1),
    "retry": lambda job_id, at: Retry(job_id, 1, at, "timeout"),
    "dead": lambda job_id, at: Dead(job_id, 1, "banned"),
    "deferred": lambda job_id, at: Deferred(job_id, 1, at, "RATELIMIT"),
    "released": lambda job_id, at: Released(job_id, 1),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES.values()), ids=list(OUTCOMES))
async def test_repeating_a_recorded_outcome_answers_already(store, clock, outcome):
    job = await held_job(store)
    settled = outcome(job.id, clock() + seconds(600))
    assert await settle_one(store, settled) is OK
    before = (await store.get_job(job.id), await store.attempts(job.id))
    clock.advance(1)
    assert await settle_one(store, settled) is ALREADY
    assert (await store.get_job(job.id), await store.attempts(job.id)) == before


async def test_a_different_outcome_after_one_was_recorded_is_lease_lost(store, clock):
    job = await held_job(store)
    await settle_one(store, Completed(job.id, 1))
    assert await settle_one(store, Dead(job.id, 1, "late")) is LEASE_LOST
    assert await state_of(store, job.id) is COMPLETED


async def test_settle_batch_gives_one_result_per_outcome_in_order(store, clock):
    done = await held_job(store)
    foreign = await held_job(store, owner="w2")
    retried = await held_job(store)
    results = await store.settle(
        "w1",
        [
            Retry(retried.id, 1, clock() + seconds(60), "timeout"),
            Completed(foreign.id, 1),
            Completed(done.id, 1),
        ],
    )
    assert results == [
        SettleResult(retried.id, OK),
        SettleResult(foreign.id, LEASE_LOST),
        SettleResult(done.id, OK),
    ]
    states = [await state_of(store, job.id) for job in (done, foreign, retried)]
    assert states == [COMPLETED, PROCESSING, PENDING]


async def test_settle_batch_naming_a_job_twice_applies_in_order(store, clock):
    """A repeat in one batch sees the first as a second call would: ALREADY, and the job as the
    first left it; the requeued job's run_at is announced."""
    done, retried, dead = await held_job(store), await held_job(store), await held_job(store)
    retry_at = clock() + seconds(60)
    batch = [Completed(done.id, 1), Retry(retried.id, 1, retry_at, "timeout"),
             Dead(dead.id, 1, "refused"), Completed(done.id, 1),
             Retry(retried.id, 1, retry_at, "timeout"), Dead(dead.id, 1, "refused"),
             Completed(UNKNOWN_ID, 1)]
    results = []

    async def settle() -> None:
        results.extend(await store.settle("w1", batch))

    assert await first_wakeup(store, settle) == retry_at
    assert [r.status for r in results] == [OK, OK, OK, ALREADY, ALREADY, ALREADY, LEASE_LOST]
    assert [r.job_id for r in results] == [item.job_id for item in batch]
    assert await progress(store, retried.id) == (PENDING, retry_at, 1)
    assert [await state_of(store, job.id) for job in (done, dead)] == [COMPLETED, DEAD]
    outcomes = [[a.outcome for a in await store.attempts(job.id)] for job in (retried, dead)]
    assert outcomes == [[AttemptOutcome.RETRY], [AttemptOutcome.DEAD]]


# === complete / fail / defer / release ===========================================================


async def test_complete_is_idempotent(store):
    job = await held_job(store)
    assert await store.complete("w1", job.id, 1) is OK
    assert await store.complete("w1", job.id, 1) is ALREADY
    assert await state_of(store, job.id) is COMPLETED


async def test_complete_without_the_lease_raises_lease_lost(store):
    job = await held_job(store)
    with pytest.raises(LeaseLost) as caught:
        await store.complete("w2", job.id, 1)
    assert caught.value.job_id == job.id
    assert await state_of(store, job.id) is PROCESSING


async def test_fail_with_retry_at_retries(store, clock):
    job = await held_job(store)
    retry_at = clock() + seconds(90)
    assert await store.fail("w1", job.id, 1, "HTTP 503", retry_at=retry_at) is OK
    assert await progress(store, job.id) == (PENDING, retry_at, 1)


async def test_fail_without_retry_at_dead_letters(store):
    job = await held_job(store)
    assert await store.fail("w1", job.id, 1, "NO_SELFS") is OK
    stored = await store.get_job(job.id)
    assert (stored.state, stored.last_error) == (DEAD, "NO_SELFS")


async def test_defer_reschedules_without_spending_the_attempt(store, clock):
    job = await held_job(store)
    until = clock() + seconds(45)
    assert await store.defer("w1", job.id, 1, until, "breaker open") is OK
    assert await progress(store, job.id) == (PENDING, until, 0)


async def test_release_hands_held_jobs_back_at_once(store, clock):
    first, second = await held_job(store), await held_job(store)
    clock.advance(3)
    results = await store.release("w1", [first, second])
    assert results == [SettleResult(first.id, OK), SettleResult(second.id, OK)]
    for job_id in (first.id, second.id):
        assert await progress(store, job_id) == (PENDING, clock(), 0)


# === release_expired ===========================================================================


async def test_release_expired_returns_the_job_to_pending_and_counts_the_attempt(store, clock):
    job = await held_job(store)
    clock.advance(LEASE + 1)
    assert await store.release_expired() == ExpiredLeases(released=[job.id], dead=[])
    assert await progress(store, job.id) == (PENDING, clock(), 1)
    (attempt,) = await store.attempts(job.id)
    assert (attempt.attempt, attempt.owner, attempt.outcome) == (1, "w1", AttemptOutcome.EXPIRED)
    assert (await claim_job(store, job.id)).attempt == 2


async def test_release_expired_dead_letters_a_job_without_attempts_left(store, clock):
    job = await held_job(store, max_attempts=1)
    clock.advance(LEASE + 1)
    assert await store.release_expired() == ExpiredLeases(released=[], dead=[job.id])
    stored = await store.get_job(job.id)
    assert (stored.state, stored.finished_at) == (DEAD, clock())


async def test_release_expired_leaves_unexpired_leases_alone(store, clock):
    job = await held_job(store)
    clock.advance(LEASE - 1)
    assert await store.release_expired() == ExpiredLeases(released=[], dead=[])
    stored = await store.get_job(job.id)
    assert (stored.state, stored.lease_owner) == (PROCESSING, "w1")


async def test_release_expired_handles_many_jobs_at_once(store, clock):
    jobs = [await held_job(store) for _ in range(3)]
    last = await held_job(store, max_attempts=1)
    fresh = await add(store)
    clock.advance(LEASE + 1)
    await claim_job(store, fresh)  # claimed now: not expired
    expired = await store.release_expired()
    assert (sorted(expired.released), expired.dead) == ([j.id for j in jobs], [last.id])
    assert await state_of(store, fresh) is PROCESSING


# === cancel / reschedule / redrive ============================================================


async def test_cancel_a_pending_job_is_idempotent(store, clock):
    job_id = await add(store)
    cancelled = await store.cancel(job_id)
    assert (cancelled.id, cancelled.state, cancelled.finished_at) == (job_id, CANCELLED, clock())
    clock.advance(5)
    assert await store.cancel(job_id) == cancelled


async def test_reschedule_moves_a_pending_job(store, clock):
    job_id = await add(store)
    later = clock() + seconds(3600)
    assert (await store.reschedule(job_id, later)).run_at == later
    assert (await store.get_job(job_id)).run_at == later
    assert await store.claim("w1", 10, LEASE) == []


PENDING_ONLY = {
    "cancel": lambda store, job_id, when: store.cancel(job_id),
    "reschedule": lambda store, job_id, when: store.reschedule(job_id, when),
}


@pytest.mark.parametrize(
    ("operation", "state"),
    [("cancel", state) for state in (PROCESSING, COMPLETED, DEAD)]
    + [("reschedule", state) for state in (PROCESSING, *FINISHED)],
    ids=lambda value: getattr(value, "value", value),
)
async def test_cancel_and_reschedule_need_a_pending_job(store, clock, operation, state):
    job_id = await job_in(store, state)
    before = await store.get_job(job_id)
    with pytest.raises(InvalidTransition):
        await PENDING_ONLY[operation](store, job_id, clock() + seconds(60))
    assert await store.get_job(job_id) == before


async def test_redrive_gives_a_dead_job_a_fresh_start(store, clock):
    job_id = await job_in(store, DEAD, max_attempts=1)
    clock.advance(600)
    assert await store.redrive([job_id]) == [job_id]
    assert await progress(store, job_id) == (PENDING, clock(), 0)
    assert (await claim_job(store, job_id)).attempt == 1


async def test_redrive_leaves_jobs_that_are_not_dead_alone(store):
    dead = await job_in(store, DEAD)
    states = (COMPLETED, CANCELLED, PROCESSING, PENDING)
    others = {state: await job_in(store, state) for state in states}
    assert await store.redrive([*others.values(), dead, UNKNOWN_ID]) == [dead]
    assert [await state_of(store, job_id) for job_id in others.values()] == list(others)


# === purge =====================================================================================


async def test_purge_deletes_jobs_finished_before_the_cutoff(store, clock):
    old = [await job_in(store, state) for state in FINISHED]
    clock.advance(100)
    recent = await job_in(store, COMPLETED)
    assert await store.purge(clock() - seconds(50)) == 3
    for job_id in old:
        with pytest.raises(NotFound):
            await store.get_job(job_id)
        with pytest.raises(NotFound):
            await store.attempts(job_id)
    assert await state_of(store, recent) is COMPLETED


async def test_purge_never_deletes_live_jobs(store, clock):
    pending = await job_in(store, PENDING, run_at=clock() + seconds(60))
    processing = await job_in(store, PROCESSING)
    clock.advance(86400 * 365)
    assert await store.purge(clock()) == 0
    assert await state_of(store, pending) is PENDING
    assert await state_of(store, processing) is PROCESSING


async def test_purge_deletes_the_posts_of_purged_jobs(store, clock):
    account = await make_account(store)
    post = await publish(store, await schedule(store, account, clock()))
    kept = await schedule(store, account, clock() + seconds(3600))
    clock.advance(100)
    assert await store.purge(clock()) == 1
    with pytest.raises(NotFound):
        await store.get_post(post.id)
    with pytest.raises(NotFound):
        await store.get_post_by_job(post.job_id)
    assert [p.id for p in (await store.list_posts(account.user_id)).posts] == [kept.id]


async def test_tidy_after_a_purge_leaves_every_live_job_workable(store, clock):
    finished = [await job_in(store, COMPLETED) for _ in range(20)]
    live = [await add(store) for _ in range(3)]
    clock.advance(100)
    assert await store.purge(clock()) == len(finished)
    await store.tidy()
    await store.tidy()  # safe to repeat
    claimed = await store.claim("w", 10, 30.0)
    assert sorted(job.id for job in claimed) == sorted(live)
    assert await store.counts() == [QueueCount("default", PROCESSING, 3)]


# === counts / next_due / attempts ==============================================================


async def test_counts_per_queue_and_state(store):
    assert await store.counts() == []
    await job_in(store, PROCESSING, queue="a")
    await add(store, queue="a")
    await add(store, queue="a")
    await job_in(store, DEAD, queue="b")
    counts = sorted(await store.counts(), key=lambda c: (c.queue, c.state.value))
    assert counts == [
        QueueCount("a", PENDING, 2),
        QueueCount("a", PROCESSING, 1),
        QueueCount("b", DEAD, 1),
    ]


async def test_next_due_is_the_earliest_pending_run_at(store, clock):
    assert await store.next_due() is None
    await job_in(store, PROCESSING, run_at=clock() - seconds(100))  # not pending
    await add(store, queue="a", run_at=clock() + seconds(30))
    await add(store, queue="b", run_at=clock() + seconds(10))
    await add(store, queue="a", run_at=clock() + seconds(20))
    assert await store.next_due() == clock() + seconds(10)
    assert await store.next_due(queues=["a"]) == clock() + seconds(20)
    assert await store.next_due(queues=["nothing"]) is None


async def test_next_due_ignores_cancelled_jobs(store, clock):
    await job_in(store, CANCELLED, run_at=clock() - seconds(5))
    assert await store.next_due() is None


async def test_attempts_of_a_job_never_claimed_is_empty(store):
    assert await store.attempts(await add(store)) == []


async def test_attempts_include_the_running_attempt(store, clock):
    job = await held_job(store)
    assert await store.attempts(job.id) == [
        Attempt(job.id, 1, "w1", clock(), None, AttemptOutcome.RUNNING)
    ]


async def test_attempts_history_is_oldest_first_with_outcomes_and_errors(store, clock):
    job = await held_job(store, max_attempts=5)
    started = clock()
    clock.advance(2)
    await store.fail("w1", job.id, 1, "HTTP 503", retry_at=clock())
    await claim_job(store, job.id, "w2")
    clock.advance(3)
    await store.defer("w2", job.id, 2, clock(), "RATELIMIT")
    await claim_job(store, job.id, "w3")
    assert await store.attempts(job.id) == [
        Attempt(job.id, 1, "w1", started, started + seconds(2), AttemptOutcome.RETRY, "HTTP 503"),
        Attempt(
            job.id, 2, "w2", started + seconds(2), clock(), AttemptOutcome.DEFERRED, "RATELIMIT"
        ),
        Attempt(job.id, 2, "w3", clock(), None, AttemptOutcome.RUNNING),
    ]


# === wakeups ===================================================================================


async def test_enqueue_wakes_the_iterator(store, clock):
    run_at = clock() + seconds(30)
    woke = await first_wakeup(store, lambda: store.enqueue(NewJob(kind="k", run_at=run_at)))
    assert woke <= run_at


async def test_reschedule_wakes_the_iterator(store, clock):
    job_id = await add(store, run_at=clock() + seconds(3600))
    sooner = clock() + seconds(60)
    woke = await first_wakeup(store, lambda: store.reschedule(job_id, sooner))
    assert woke <= sooner


async def test_retry_wakes_the_iterator(store, clock):
    job = await held_job(store)
    retry_at = clock() + seconds(60)
    woke = await first_wakeup(store, lambda: store.fail("w1", job.id, 1, "x", retry_at=retry_at))
    assert woke <= retry_at


# === users and tokens ==========================================================================


async def test_create_and_get_a_user(store, clock):
    user = await store.create_user(NewUser(name="alice", tier=Tier.PRO, role=Role.ADMIN))
    assert user == User(user.id, "alice", Tier.PRO, Role.ADMIN, clock())
    assert await store.get_user(user.id) == user
    assert await store.get_user_by_name("alice") == user


async def test_create_user_defaults_to_a_free_user(store):
    user = await store.create_user(NewUser(name="bob"))
    assert (user.tier, user.role) == (Tier.FREE, Role.USER)


async def test_user_name_taken_is_a_conflict(store):
    await store.create_user(NewUser(name="alice"))
    with pytest.raises(Conflict):
        await store.create_user(NewUser(name="alice"))
    assert [u.name for u in await store.list_users()] == ["alice"]


async def test_invalid_user_name_is_a_validation_error(store):
    with pytest.raises(ValidationError):
        await store.create_user(NewUser(name="not a name"))
    assert await store.list_users() == []


async def test_list_users_by_id(store):
    names = ["carol", "alice", "bob"]
    created = [await store.create_user(NewUser(name=name)) for name in names]
    assert await store.list_users() == sorted(created, key=lambda u: u.id)


async def test_set_tier(store):
    user = await store.create_user(NewUser(name="alice"))
    assert (await store.set_tier(user.id, Tier.PREMIUM)).tier is Tier.PREMIUM
    assert (await store.get_user(user.id)).tier is Tier.PREMIUM


HASH_A = "a" * 64
HASH_B = "b" * 64


async def test_a_token_finds_its_user(store, clock):
    user = await store.create_user(NewUser(name="alice"))
    token = await store.create_token(user.id, "laptop", HASH_A)
    assert token == ApiToken(token.id, user.id, "laptop", clock(), None)
    assert await store.user_for_token(HASH_A) == user
    assert await store.user_for_token(HASH_B) is None


async def test_revoke_token_is_idempotent_and_stops_it(store, clock):
    user = await store.create_user(NewUser(name="alice"))
    token = await store.create_token(user.id, "laptop", HASH_A)
    revoked_at = clock.advance(10)
    assert (await store.revoke_token(token.id)).revoked_at == revoked_at
    clock.advance(10)
    assert (await store.revoke_token(token.id)).revoked_at == revoked_at
    assert await store.user_for_token(HASH_A) is None


async def test_list_tokens_includes_revoked_ones_by_id(store):
    user = await store.create_user(NewUser(name="alice"))
    other = await store.create_user(NewUser(name="bob"))
    first = await store.create_token(user.id, "laptop", HASH_A)
    await store.create_token(other.id, "phone", "c" * 64)
    second = await store.create_token(user.id, "ci", HASH_B)
    first = await store.revoke_token(first.id)
    assert await store.list_tokens(user.id) == [first, second]


async def test_a_token_hash_taken_is_a_conflict(store):
    user = await store.create_user(NewUser(name="alice"))
    other = await store.create_user(NewUser(name="bob"))
    await store.create_token(user.id, "laptop", HASH_A)
    with pytest.raises(Conflict):
        await store.create_token(other.id, "phone", HASH_A)
    assert await store.list_tokens(other.id) == []


# === accounts ==================================================================================


async def test_create_and_get_an_account(store, clock):
    user = await store.create_user(NewUser(name="alice"))
    account = await store.create_account(link(user.id, "alice_r", b"s1", scopes="submit"))
    assert account == Account(account.id, user.id, "alice_r", b"s1", "submit", False, clock())
    assert await store.get_account(account.id) == account
    assert await store.list_accounts(user.id) == [account]


async def test_relinking_the_same_username_replaces_the_token(store):
    account = await make_account(store)
    await store.set_needs_relink(account.id, True)
    relinked = await store.create_account(link(account.user_id, "alice_r", b"sealed-2"))
    assert relinked == msgspec.structs.replace(account, refresh_token_encrypted=b"sealed-2")
    assert await store.list_accounts(account.user_id) == [relinked]


async def test_set_needs_relink_flags_and_clears(store):
    account = await make_account(store)
    assert (await store.set_needs_relink(account.id, True)).needs_relink is True
    assert (await store.get_account(account.id)).needs_relink is True
    assert (await store.set_needs_relink(account.id, False)).needs_relink is False


async def test_set_account_token_replaces_it_and_clears_needs_relink(store):
    account = await make_account(store)
    await store.set_needs_relink(account.id, True)
    updated = await store.set_account_token(account.id, b"sealed-3")
    assert (updated.refresh_token_encrypted, updated.needs_relink) == (b"sealed-3", False)
    assert await store.get_account(account.id) == updated


async def test_list_accounts_by_id_for_one_user(store):
    first = await make_account(store)
    await make_account(store, user="bob", reddit="bob_r")
    second = await store.create_account(link(first.user_id, "alice_alt"))
    assert await store.list_accounts(first.user_id) == [first, second]


# === posts =====================================================================================


async def test_create_posts_makes_each_post_with_its_job(store, clock):
    account = await make_account(store)
    when = clock() + seconds(3600)
    (post,) = await store.create_posts([new_post(account, when, title="First")], max_attempts=4)
    assert (post.user_id, post.account_id, post.scheduled_for, post.status) == (
        account.user_id, account.id, when, PostStatus.SCHEDULED,
    )
    assert post.content == PostContent(subreddit="thotto_test", title="First", text="body")
    assert (post.reddit_id, post.reddit_url, post.error) == (None, None, None)
    assert (post.created_at, post.updated_at) == (clock(), clock())
    job = await store.get_job(post.job_id)
    assert (job.queue, job.kind, job.run_at, job.state, job.max_attempts) == (
        "posts", "reddit.submit", when, PENDING, 4,
    )
    assert json.loads(job.payload) == {"post_id": post.id}
    assert await store.get_post(post.id) == post
    assert await store.get_post_by_job(post.job_id) == post


async def test_create_posts_is_all_or_nothing(store, clock):
    alice = await make_account(store)
    bob = await make_account(store, user="bob", reddit="bob_r")
    not_alices = msgspec.structs.replace(new_post(bob, clock()), user_id=alice.user_id)
    with pytest.raises(NotFound):
        await store.create_posts([new_post(alice, clock()), not_alices])
    assert (await store.list_posts(alice.user_id)).posts == []
    assert await store.counts() == []


async def test_create_posts_with_invalid_content_stores_nothing(store, clock):
    account = await make_account(store)
    with pytest.raises(ValidationError):
        await store.create_posts(
            [new_post(account, clock()), new_post(account, clock(), subreddit="r")]
        )
    assert await store.counts() == []


async def test_post_status_follows_its_job_to_published(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock())
    job = await claim_job(store, post.job_id)
    assert (await store.get_post(post.id)).status is PostStatus.PUBLISHING
    await store.complete("w1", job.id, job.attempt)
    assert (await store.get_post(post.id)).status is PostStatus.PUBLISHED


async def test_post_status_failed_shows_the_error(store, clock):
    account = await make_account(store)
    post = await fail_post(store, await schedule(store, account, clock()), "SUBREDDIT_NOEXIST")
    assert (post.status, post.error) == (PostStatus.FAILED, "SUBREDDIT_NOEXIST")


async def test_get_post_of_another_user_is_not_found(store, clock):
    account = await make_account(store)
    stranger = await store.create_user(NewUser(name="mallory"))
    post = await schedule(store, account, clock())
    assert (await store.get_post(post.id, user_id=account.user_id)).id == post.id
    with pytest.raises(NotFound):
        await store.get_post(post.id, user_id=stranger.id)


async def test_list_posts_filters_by_status(store, clock):
    account = await make_account(store)
    published = await publish(store, await schedule(store, account, clock()))
    scheduled = await schedule(store, account, clock() + seconds(60))
    cancelled = await store.cancel_post(
        (await schedule(store, account, clock() + seconds(120))).id, account.user_id
    )

    async def listed(status: PostStatus) -> list[int]:
        return [p.id for p in (await store.list_posts(account.user_id, status=status)).posts]

    assert await listed(PostStatus.SCHEDULED) == [scheduled.id]
    assert await listed(PostStatus.PUBLISHED) == [published.id]
    assert await listed(PostStatus.CANCELLED) == [cancelled.id]
    assert await listed(PostStatus.FAILED) == []


async def test_list_posts_date_range_is_half_open(store, clock):
    account = await make_account(store)
    hours = [await schedule(store, account, clock() + timedelta(hours=h)) for h in range(4)]
    page = await store.list_posts(
        account.user_id,
        scheduled_from=clock() + timedelta(hours=1),
        scheduled_to=clock() + timedelta(hours=3),
    )
    assert [p.id for p in page.posts] == [hours[1].id, hours[2].id]


async def test_list_posts_only_shows_the_users_own_posts(store, clock):
    alice = await make_account(store)
    bob = await make_account(store, user="bob", reddit="bob_r")
    await schedule(store, bob, clock())
    mine = await schedule(store, alice, clock())
    assert [p.id for p in (await store.list_posts(alice.user_id)).posts] == [mine.id]


async def test_list_posts_pages_neither_skip_nor_repeat(store, clock):
    account = await make_account(store)
    # Six or seven posts share each time, so pages end in the middle of a tie (ordered by id).
    posts = await store.create_posts(
        [new_post(account, clock() + timedelta(minutes=n % 4), title=f"p{n}") for n in range(25)]
    )
    expected = [p.id for p in sorted(posts, key=lambda p: (p.scheduled_for, p.id))]
    pages, cursor = [], None
    for _ in range(5):  # a cursor that never ends must fail the test, not hang it
        page = await store.list_posts(account.user_id, cursor=cursor, limit=10)
        pages.append([p.id for p in page.posts])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [post_id for page in pages for post_id in page] == expected


@pytest.mark.parametrize(
    "bad",
    [{"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 501}],
    ids=["cursor", "limit-0", "limit-501"],
)
async def test_list_posts_rejects_bad_cursor_and_limit(store, bad):
    account = await make_account(store)
    with pytest.raises(ValidationError):
        await store.list_posts(account.user_id, **bad)


async def test_find_recent_posts_matches_scheduled_and_publishing_case_insensitively(store, clock):
    account = await make_account(store)
    publishing = await schedule(store, account, clock(), title="Hello World")
    await claim_job(store, publishing.job_id)
    scheduled = await schedule(store, account, clock() + seconds(60), title="HELLO world")
    found = await store.find_recent_posts(account.id, "thotto_test", "hello world", clock())
    assert sorted(p.id for p in found) == sorted([publishing.id, scheduled.id])


async def test_find_recent_posts_only_counts_publications_since(store, clock):
    account = await make_account(store)
    old = await schedule(store, account, clock(), title="Same")
    recent = await schedule(store, account, clock() + seconds(1), title="Same")
    await publish(store, old, "t3_old")
    clock.advance(100)
    await publish(store, recent, "t3_new")
    found = await store.find_recent_posts(account.id, "thotto_test", "same", clock() - seconds(50))
    assert [p.id for p in found] == [recent.id]


async def test_find_recent_posts_ignores_other_posts(store, clock):
    account = await make_account(store)
    other_account = await store.create_account(link(account.user_id, "alice_alt"))
    await fail_post(store, await schedule(store, account, clock(), title="Same"))
    cancelled = await schedule(store, account, clock(), title="Same")
    await store.cancel_post(cancelled.id, account.user_id)
    await schedule(store, account, clock(), title="Same", subreddit="elsewhere")
    await schedule(store, account, clock(), title="Different")
    await schedule(store, other_account, clock(), title="Same")
    assert await store.find_recent_posts(account.id, "thotto_test", "Same", clock()) == []


async def test_update_post_edits_content_and_moves_its_job(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60))
    clock.advance(5)
    later = clock() + seconds(7200)
    content = PostContent(subreddit="thotto_test", title="Edited", text="new body")
    updated = await store.update_post(
        post.id, account.user_id, content=content, scheduled_for=later
    )
    assert (updated.content, updated.scheduled_for, updated.updated_at) == (content, later, clock())
    assert (await store.get_job(post.job_id)).run_at == later
    assert await store.get_post(post.id) == updated


async def test_update_post_content_alone_keeps_the_schedule(store, clock):
    account = await make_account(store)
    when = clock() + seconds(60)
    post = await schedule(store, account, when)
    content = PostContent(subreddit="thotto_test", title="Edited")
    updated = await store.update_post(post.id, account.user_id, content=content)
    assert (updated.content.title, updated.scheduled_for) == ("Edited", when)
    assert (await store.get_job(post.job_id)).run_at == when


async def test_update_post_of_another_user_is_not_found(store, clock):
    account = await make_account(store)
    stranger = await store.create_user(NewUser(name="mallory"))
    post = await schedule(store, account, clock())
    with pytest.raises(NotFound):
        await store.update_post(post.id, stranger.id, scheduled_for=clock() + seconds(60))
    with pytest.raises(NotFound):
        await store.cancel_post(post.id, stranger.id)
    assert (await store.get_post(post.id)).status is PostStatus.SCHEDULED


POST_CHANGES = {
    "update": lambda store, post, when: store.update_post(
        post.id, post.user_id, scheduled_for=when
    ),
    "cancel": lambda store, post, when: store.cancel_post(post.id, post.user_id),
}


@pytest.mark.parametrize("change", POST_CHANGES.values(), ids=POST_CHANGES)
async def test_a_post_cannot_change_once_publishing_began(store, clock, change):
    account = await make_account(store)
    publishing = await schedule(store, account, clock())
    await claim_job(store, publishing.job_id)
    published = await publish(store, await schedule(store, account, clock() + seconds(1)))
    for post in (await store.get_post(publishing.id), published):
        with pytest.raises(InvalidTransition):
            await change(store, post, clock() + seconds(600))
        assert await store.get_post(post.id) == post


async def test_cancel_post_cancels_its_job_and_is_idempotent(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60))
    assert (await store.cancel_post(post.id, account.user_id)).status is PostStatus.CANCELLED
    assert await state_of(store, post.job_id) is CANCELLED
    assert (await store.cancel_post(post.id, account.user_id)).status is PostStatus.CANCELLED


async def test_record_publication_is_idempotent_for_the_same_id(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock())
    await claim_job(store, post.job_id)
    first = await store.record_publication(post.id, "t3_abc", "https://redd.it/t3_abc")
    assert (first.reddit_id, first.reddit_url) == ("t3_abc", "https://redd.it/t3_abc")
    assert first.status is PostStatus.PUBLISHED  # as soon as Reddit's id is recorded
    again = await store.record_publication(post.id, "t3_abc", "https://redd.it/t3_abc")
    assert (again.reddit_id, again.reddit_url) == ("t3_abc", "https://redd.it/t3_abc")


async def in_doubt(store: Store, account: Account, clock) -> Post:
    """A post whose attempt was armed and then failed with an unknown outcome: its job waits
    for a retry, and the post may be on Reddit."""
    post = await schedule(store, account, clock())
    job = await claim_job(store, post.job_id)
    await store.arm_post(post.id)
    await store.fail("w1", job.id, job.attempt, "HTTP_504", retry_at=clock() + seconds(30))
    return await store.get_post(post.id)


async def test_a_post_that_may_be_on_reddit_is_publishing_and_cannot_change(store, clock):
    account = await make_account(store)
    post = await in_doubt(store, account, clock)
    assert post.status is PostStatus.PUBLISHING
    assert post.error == "HTTP_504"
    changed = PostContent(subreddit="thotto_test", title="A new title", kind=PostKind.SELF, text="x")
    for change in (lambda: store.update_post(post.id, account.user_id, content=changed),
                   lambda: store.update_post(post.id, account.user_id, scheduled_for=clock() + seconds(600)),
                   lambda: store.cancel_post(post.id, account.user_id)):
        with pytest.raises(OutcomePending) as refused:
            await change()
        assert "may already be on r/thotto_test" in str(refused.value)
        assert refused.value.retry_after_seconds >= 5
    unchanged = await store.get_post(post.id)
    assert (unchanged.content, unchanged.scheduled_for) == (post.content, post.scheduled_for)
    assert await state_of(store, post.job_id) is JobState.PENDING


async def test_a_running_post_cannot_change_either(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock())
    await claim_job(store, post.job_id)
    with pytest.raises(OutcomePending, match="being published to r/thotto_test right now"):
        await store.cancel_post(post.id, account.user_id)
    assert await state_of(store, post.job_id) is JobState.PROCESSING


async def test_posts_in_doubt_are_listed_as_publishing(store, clock):
    account = await make_account(store)
    doubtful = await in_doubt(store, account, clock)
    waiting = await schedule(store, account, clock() + seconds(60), title="Later")
    published = await publish(store, await schedule(store, account, clock(), title="Done"))

    async def ids(status: PostStatus) -> list[int]:
        page = await store.list_posts(account.user_id, status=status)
        return [p.id for p in page.posts]

    assert await ids(PostStatus.PUBLISHING) == [doubtful.id]
    assert await ids(PostStatus.SCHEDULED) == [waiting.id]
    assert await ids(PostStatus.PUBLISHED) == [published.id]


async def test_a_disarmed_post_is_scheduled_again_and_may_change(store, clock):
    account = await make_account(store)
    post = await in_doubt(store, account, clock)
    disarmed = await store.disarm_post(post.id)
    assert (disarmed.status, disarmed.armed_at) == (PostStatus.SCHEDULED, None)
    cancelled = await store.cancel_post(post.id, account.user_id)
    assert cancelled.status is PostStatus.CANCELLED
    assert cancelled.error is None


async def test_disarming_a_published_post_keeps_it_published(store, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock())
    await claim_job(store, post.job_id)
    await store.arm_post(post.id)
    await store.record_publication(post.id, "t3_abc", "https://redd.it/t3_abc")
    kept = await store.disarm_post(post.id)
    assert kept.armed_at is not None and kept.status is PostStatus.PUBLISHED
    with pytest.raises(InvalidTransition, match="is published"):
        await store.cancel_post(post.id, account.user_id)


async def test_record_publication_of_a_different_id_is_an_invalid_transition(store, clock):
    account = await make_account(store)
    post = await publish(store, await schedule(store, account, clock()), "t3_abc")
    with pytest.raises(InvalidTransition):
        await store.record_publication(post.id, "t3_xyz", "https://redd.it/t3_xyz")
    assert (await store.get_post(post.id)).reddit_id == "t3_abc"


# === bad input and unknown ids, across methods ==================================================

NAIVE_CALLS = {
    "claim": lambda store, pending, held: store.claim("w2", 10, LEASE, due_by=NAIVE),
    "reschedule": lambda store, pending, held: store.reschedule(pending, NAIVE),
    "settle": lambda store, pending, held: store.settle("w1", [Retry(held.id, 1, NAIVE, "x")]),
    "defer": lambda store, pending, held: store.defer("w1", held.id, 1, NAIVE, "x"),
    "purge": lambda store, pending, held: store.purge(NAIVE),
}


@pytest.mark.parametrize("call", NAIVE_CALLS.values(), ids=NAIVE_CALLS)
async def test_naive_datetimes_are_validation_errors_and_change_nothing(store, call):
    held = await held_job(store, queue="held")
    pending = await add(store)
    before = [await store.get_job(pending), await store.get_job(held.id)]
    with pytest.raises(ValidationError):
        await call(store, pending, held)
    assert [await store.get_job(pending), await store.get_job(held.id)] == before


LOOKUPS = {
    "get_job": lambda store: store.get_job(UNKNOWN_ID),
    "cancel": lambda store: store.cancel(UNKNOWN_ID),
    "reschedule": lambda store: store.reschedule(UNKNOWN_ID, datetime(2030, 1, 1, tzinfo=UTC)),
    "attempts": lambda store: store.attempts(UNKNOWN_ID),
    "get_user": lambda store: store.get_user(UNKNOWN_ID),
    "get_user_by_name": lambda store: store.get_user_by_name("nobody"),
    "set_tier": lambda store: store.set_tier(UNKNOWN_ID, Tier.PRO),
    "create_token": lambda store: store.create_token(UNKNOWN_ID, "phone", HASH_A),
    "revoke_token": lambda store: store.revoke_token(UNKNOWN_ID),
    "create_account": lambda store: store.create_account(link(UNKNOWN_ID, "ghost_r")),
    "get_account": lambda store: store.get_account(UNKNOWN_ID),
    "get_post": lambda store: store.get_post(UNKNOWN_ID),
    "get_post_by_job": lambda store: store.get_post_by_job(UNKNOWN_ID),
}


@pytest.mark.parametrize("lookup", LOOKUPS.values(), ids=LOOKUPS)
async def test_unknown_ids_are_not_found(store, lookup):
    with pytest.raises(NotFound):
        await lookup(store)


# === lifecycle =================================================================================


async def test_aclose_is_idempotent(store):
    await store.aclose()
    await store.aclose()


# === arming and community rules (issue #4) ======================================================


async def test_arm_post_keeps_the_earliest_arming(store, clock):
    post = await schedule(store, await make_account(store), clock() + seconds(60))
    assert post.armed_at is None
    armed = await store.arm_post(post.id)
    assert armed.armed_at == clock()
    clock.advance(30)
    again = await store.arm_post(post.id)
    assert again.armed_at == armed.armed_at  # a later attempt must look back to the first one
    assert (await store.get_post(post.id)).armed_at == armed.armed_at
    with pytest.raises(NotFound):
        await store.arm_post(UNKNOWN_ID)


def subreddit_rules(clock, name="Pics", **fields) -> SubredditRules:
    return SubredditRules(name=name.lower(), display_name=name, synced_at=clock(), **fields)


async def test_subreddit_rules_are_saved_replaced_and_found_by_any_case(store, clock):
    assert await store.get_subreddit_rules("pics") is None
    first = subreddit_rules(clock, allows_self=False, flair_ids=["a", "b"], subscribers=10)
    await store.save_subreddit_rules(first)
    assert await store.get_subreddit_rules("PICS") == first
    clock.advance(7 * 86400)
    second = subreddit_rules(clock, flair_required=True)
    await store.save_subreddit_rules(second)
    await store.save_subreddit_rules(subreddit_rules(clock, name="Art"))
    assert await store.get_subreddit_rules("pics") == second
    assert [r.name for r in await store.list_subreddit_rules()] == ["art", "pics"]


# === recurring posts and engagement ==============================================================


async def test_create_follow_up_creates_the_next_occurrence_once(store, clock):
    account = await make_account(store)
    first = await publish(store, await schedule(store, account, clock()), "t3_one")
    nxt = new_post(account, clock() + seconds(86400))
    follow_up, created = await store.create_follow_up(first.id, nxt, max_attempts=5)
    assert created and follow_up.status is PostStatus.SCHEDULED
    assert (follow_up.scheduled_for, follow_up.content) == (nxt.scheduled_for, nxt.content)
    job = await store.get_job(follow_up.job_id)
    assert (job.run_at, job.max_attempts, json.loads(job.payload)) == (
        nxt.scheduled_for, 5, {"post_id": follow_up.id},
    )
    # A repeat (a crash after the first call, another process) finds it, even at another time.
    later = msgspec.structs.replace(nxt, scheduled_for=clock() + seconds(90000))
    again, created_again = await store.create_follow_up(first.id, later)
    assert (again, created_again) == (follow_up, False)
    assert len((await store.list_posts(account.user_id)).posts) == 2


async def test_create_follow_up_still_finds_a_cancelled_follow_up(store, clock):
    account = await make_account(store)
    first = await publish(store, await schedule(store, account, clock()))
    follow_up, _ = await store.create_follow_up(first.id, new_post(account, clock() + seconds(60)))
    await store.cancel_post(follow_up.id, account.user_id)
    again, created = await store.create_follow_up(first.id, new_post(account, clock() + seconds(60)))
    assert not created and again.id == follow_up.id and again.status is PostStatus.CANCELLED


async def race_follow_ups(stores: list[Store], clock) -> None:
    """Create the follow-up of one post from every store at once: one post is created."""
    account = await make_account(stores[0])
    first = await publish(stores[0], await schedule(stores[0], account, clock()))
    results = []

    async def create(store: Store) -> None:
        results.append(await store.create_follow_up(first.id, new_post(account, clock())))

    async with trio.open_nursery() as nursery:
        for store in stores:
            nursery.start_soon(create, store)
    assert len({post.id for post, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * (len(stores) - 1) + [True]
    assert len((await stores[0].list_posts(account.user_id)).posts) == 2


async def test_concurrent_create_follow_up_makes_one_post(store, clock):
    await race_follow_ups([store] * 4, clock)


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_postgres_stores_racing_create_one_follow_up(store, store_factory, clock):
    async with store_factory() as other:
        await race_follow_ups([store, other, store, other], clock)


async def test_create_follow_up_of_an_unknown_post_or_foreign_account_is_not_found(store, clock):
    alice = await make_account(store)
    bob = await make_account(store, user="bob", reddit="bob_r")
    first = await schedule(store, alice, clock())
    with pytest.raises(NotFound):
        await store.create_follow_up(UNKNOWN_ID, new_post(alice, clock()))
    not_bobs = msgspec.structs.replace(new_post(alice, clock()), user_id=bob.user_id)
    with pytest.raises(NotFound):
        await store.create_follow_up(first.id, not_bobs)
    assert len((await store.list_posts(alice.user_id)).posts) == 1


def reading(post: Post, score: int, comments: int, at: datetime) -> EngagementReading:
    return EngagementReading(post_id=post.id, score=score, comments=comments, read_at=at)


async def test_engagement_is_recorded_and_read_per_subreddit(store, clock):
    account = await make_account(store)
    published_at = clock()
    pics = await publish(store, await schedule(store, account, clock(), subreddit="Pics"), "t3_a")
    other = await publish(store, await schedule(store, account, clock(), subreddit="art"), "t3_b")
    unpublished = await schedule(store, account, clock() + seconds(60), subreddit="pics")
    clock.advance(3600)
    changed = await store.record_engagement([
        reading(pics, 42, 7, clock()), reading(other, 3, 0, clock()),
        reading(unpublished, 9, 9, clock()),  # no Reddit id: ignored
        EngagementReading(post_id=UNKNOWN_ID, score=1, comments=0, read_at=clock()),  # purged
    ])
    assert changed == 2
    assert await store.subreddit_engagement("PICS") == [PostEngagement(
        post_id=pics.id, account_id=account.id, subreddit="Pics", scheduled_for=pics.scheduled_for,
        published_at=published_at, score=42, comments=7, read_at=clock(),
    )]
    assert await store.subreddit_engagement("pics", since=published_at + seconds(1)) == []


async def test_the_latest_engagement_reading_wins(store, clock):
    post = await publish(store, await schedule(store, await make_account(store), clock()))
    early, late = clock() + seconds(10), clock() + seconds(20)
    assert await store.record_engagement([reading(post, 5, 1, late), reading(post, 1, 0, early)]) == 1
    assert await store.record_engagement([reading(post, 2, 0, early)]) == 0  # older: ignored
    assert await store.record_engagement([reading(post, 5, 1, late)]) == 1  # idempotent
    (seen,) = await store.subreddit_engagement("thotto_test")
    assert (seen.score, seen.comments, seen.read_at) == (5, 1, late)


async def test_posts_to_refresh_lists_recent_published_posts_never_or_long_unread(store, clock):
    account = await make_account(store)
    old = await publish(store, await schedule(store, account, clock(), title="old"), "t3_old")
    clock.advance(10 * 86400)
    since = clock()
    fresh = await publish(store, await schedule(store, account, clock(), title="a"), "t3_a")
    read = await publish(store, await schedule(store, account, clock(), title="b"), "t3_b")
    stale = await publish(store, await schedule(store, account, clock(), title="c"), "t3_c")
    await schedule(store, account, clock() + seconds(60), title="pending")
    await fail_post(store, await schedule(store, account, clock(), title="failed"))
    await store.record_engagement([reading(stale, 1, 0, clock()), reading(old, 1, 0, clock())])
    clock.advance(3600)
    await store.record_engagement([reading(read, 1, 0, clock())])
    found = await store.posts_to_refresh(since, clock() - seconds(60))
    assert [p.id for p in found] == [fresh.id, stale.id]  # never read first, then oldest reading
    assert [p.id for p in await store.posts_to_refresh(since, clock(), limit=1)] == [fresh.id]
    assert old.id not in [p.id for p in await store.posts_to_refresh(since, clock() + seconds(1))]
    with pytest.raises(ValidationError):
        await store.posts_to_refresh(since, clock(), limit=0)


async def test_engagement_readings_are_validated(store, clock):
    post = await publish(store, await schedule(store, await make_account(store), clock()))
    with pytest.raises(ValidationError):
        await store.record_engagement([reading(post, 1, -1, clock())])
    with pytest.raises(ValidationError):
        await store.record_engagement([reading(post, 1, 0, NAIVE)])
    assert await store.subreddit_engagement("thotto_test") == []


async def test_follow_ups_carry_the_series_start(store, clock):
    account = await make_account(store)
    first = await publish(store, await schedule(store, account, clock() + seconds(60)))
    assert await store.series_start(first.id) == first.scheduled_for
    second, _ = await store.create_follow_up(first.id, new_post(account, clock() + seconds(120)))
    await publish(store, second, "t3_two")
    third, _ = await store.create_follow_up(second.id, new_post(account, clock() + seconds(180)))
    assert await store.series_start(second.id) == first.scheduled_for
    assert await store.series_start(third.id) == first.scheduled_for
    with pytest.raises(NotFound):
        await store.series_start(UNKNOWN_ID)
