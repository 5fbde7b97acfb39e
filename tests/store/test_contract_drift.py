"""Store contract: the behaviours where the SQLite and Postgres adapters used to disagree
(issue #14), each with the one answer both now give. Runs on every adapter."""

from __future__ import annotations

import pytest

from tests.store.test_contract import (
    DEAD,
    LEASE,
    UNKNOWN_ID,
    add,
    claim_job,
    held_job,
    job_in,
    make_account,
    schedule,
    seconds,
)
from tests.store.conftest import T0
from thotto.engine.errors import NotFound
from thotto.errors import ValidationError
from thotto.engine.jobs import Completed, JobState
from thotto.scheduler.records import MediaKind, NewMedia, NewUser, Role

COMPLETED, CANCELLED = JobState.COMPLETED, JobState.CANCELLED


# --- claim's arguments -------------------------------------------------------------------------


async def test_a_claim_of_zero_jobs_claims_none(store):
    """Asking for nothing is not an error (a pool with no free worker may ask): it claims none."""
    job_id = await add(store)
    assert await store.claim("w1", 0, LEASE) == []
    assert (await store.get_job(job_id)).state is JobState.PENDING


@pytest.mark.parametrize("limit", [-1, 100_001, 1.5, True, "3"])
async def test_a_claim_limit_outside_0_to_100000_is_refused(store, limit):
    with pytest.raises(ValidationError) as refused:
        await store.claim("w1", limit, LEASE)
    assert refused.value.field == "limit"


@pytest.mark.parametrize("lease", [0, -1, 366 * 86400 + 1, "30", True])
async def test_a_lease_outside_0_to_a_year_is_refused(store, lease):
    await add(store)
    with pytest.raises(ValidationError) as refused:
        await store.claim("w1", 1, lease)
    assert refused.value.field == "lease_seconds"


@pytest.mark.parametrize("owner", ["", "w" * 256, 7])
async def test_an_owner_that_is_not_1_to_255_characters_is_refused(store, owner):
    with pytest.raises(ValidationError) as refused:
        await store.claim(owner, 1, LEASE)
    assert refused.value.field == "owner"


async def test_an_id_that_is_not_an_integer_is_refused(store):
    for bad in ("1", 1.0, True):
        with pytest.raises(ValidationError):
            await store.get_job(bad)


# --- what a finished job shows --------------------------------------------------------------------


@pytest.mark.parametrize("state", [COMPLETED, DEAD, CANCELLED], ids=lambda s: s.value)
async def test_a_finished_job_shows_no_lease(store, state):
    """The lease owner and lease end are shown only while the job runs."""
    job = await store.get_job(await job_in(store, state))
    assert (job.lease_owner, job.lease_until) == (None, None)


async def test_an_expired_lease_says_why_in_the_jobs_last_error(store, clock):
    kept = await held_job(store)
    last = await held_job(store, max_attempts=1)
    clock.advance(LEASE + 1)
    await store.release_expired()
    released, dead = await store.get_job(kept.id), await store.get_job(last.id)
    assert released.last_error == "lease expired: the worker crashed, hung or lost its connection"
    assert dead.last_error == (
        "lease expired: the worker crashed, hung or lost its connection; no attempts left")
    assert [a.error for a in await store.attempts(last.id)] == [dead.last_error]


async def test_a_redriven_job_runs_from_a_clean_slate(store, clock):
    job_id = await job_in(store, DEAD)
    clock.advance(10)
    assert await store.redrive([job_id]) == [job_id]
    job = await store.get_job(job_id)
    assert (job.state, job.attempt, job.lease_owner, job.run_at) == (
        JobState.PENDING, 0, None, clock())
    claimed = await claim_job(store, job_id, owner="w2")
    assert (claimed.attempt, claimed.lease_owner) == (1, "w2")
    await store.settle("w2", [Completed(job_id, 1)])
    assert (await store.get_job(job_id)).lease_owner is None


# --- users, tokens, removed users ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "t" * 101])
async def test_a_token_name_is_1_to_100_characters(store, name):
    user = await store.create_user(NewUser(name="alice"))
    with pytest.raises(ValidationError) as refused:
        await store.create_token(user.id, name, "a" * 64)
    assert refused.value.field == "name"


async def test_a_name_or_hash_that_is_not_text_is_refused(store):
    with pytest.raises(ValidationError):
        await store.get_user_by_name(7)
    with pytest.raises(ValidationError):
        await store.find_recent_posts(1, 7, "title", T0)


async def test_a_removed_user_cannot_start_linking_or_upload(store, clock):
    admin = await store.create_user(NewUser(name="root", role=Role.ADMIN))
    user = await store.create_user(NewUser(name="bob"))
    assert admin.id != user.id
    await store.remove_user(user.id)
    with pytest.raises(NotFound):
        await store.create_link_request("s" * 64, user.id, "x" * 64, clock() + seconds(600))

    async def one_chunk():
        yield b"\x89PNG"

    with pytest.raises(NotFound):
        await store.create_media(NewMedia(user_id=user.id, kind=MediaKind.PNG, width=1, height=1),
                                 one_chunk())


@pytest.mark.parametrize("reddit_id", ["", "t3_" + "x" * 62])
async def test_a_reddit_id_is_1_to_64_characters(store, clock, reddit_id):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(60))
    with pytest.raises(ValidationError) as refused:
        await store.record_publication(post.id, reddit_id, "https://redd.it/x")
    assert refused.value.field == "reddit_id"


async def test_an_unknown_post_or_job_is_not_found(store):
    with pytest.raises(NotFound):
        await store.get_post_by_job(UNKNOWN_ID)
    with pytest.raises(NotFound):
        await store.series_start(UNKNOWN_ID)
