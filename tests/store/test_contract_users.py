"""Store contract: removing a user, and broadcasts between stores (runs on every adapter, like
``test_contract.py``; in its own file because the user-administration use cases own it)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
import trio

from tests.store.test_contract import HASH_A, HASH_B, claim_job, link, make_account, publish, schedule
from thotto.engine.errors import Conflict, InvalidTransition, NotFound, ValidationError
from thotto.engine.jobs import JobState
from thotto.scheduler.records import NewUser, PostStatus, Role, Tier, UserRemoval
from thotto.engine.store.base import BROADCAST_MAX_BYTES


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


async def admin(store, name: str = "root"):
    return await store.create_user(NewUser(name=name, role=Role.ADMIN, tier=Tier.PREMIUM))


# === removing a user ============================================================================


async def test_removing_a_user_cancels_their_scheduled_posts_revokes_tokens_and_erases_credentials(store, clock):
    await admin(store)
    account = await make_account(store)
    user = await store.get_user(account.user_id)
    first = await schedule(store, account, clock() + seconds(60))
    second = await schedule(store, account, clock() + seconds(120), title="Another")
    published = await publish(store, await schedule(store, account, clock(), title="Out already"))
    await store.create_token(user.id, "laptop", HASH_A)
    await store.create_token(user.id, "phone", HASH_B)
    await store.revoke_token((await store.list_tokens(user.id))[1].id)

    removed_at = clock.advance(5)
    removal = await store.remove_user(user.id)

    assert removal == UserRemoval(user, posts_cancelled=2, tokens_revoked=1, accounts_unlinked=1)
    for post in (first, second):
        assert (await store.get_post(post.id)).status is PostStatus.CANCELLED
        assert (await store.get_job(post.job_id)).state is JobState.CANCELLED
    # Published posts stay, as history.
    assert await store.get_post(published.id) == published
    assert await store.user_for_token(HASH_A) is None
    assert all(token.revoked_at is not None for token in await store.list_tokens(user.id))
    assert (await store.list_tokens(user.id))[0].revoked_at == removed_at
    erased = await store.get_account(account.id)
    assert erased.needs_relink and erased.refresh_token_encrypted == b""


async def test_a_removed_user_is_gone_from_every_user_look_up_and_their_name_is_free(store):
    root = await admin(store)
    user = await store.create_user(NewUser(name="alice", tier=Tier.PRO))
    await store.remove_user(user.id)
    assert await store.list_users() == [root]
    for look_up in (store.get_user(user.id), store.get_user_by_name("alice"),
                    store.set_tier(user.id, Tier.FREE), store.create_token(user.id, "x", HASH_A),
                    store.create_account(link(user.id, "alice_r")), store.remove_user(user.id)):
        with pytest.raises(NotFound):
            await look_up
    again = await store.create_user(NewUser(name="alice"))
    assert again.id != user.id and await store.get_user_by_name("alice") == again


async def test_a_post_being_published_when_its_user_is_removed_is_left_to_its_worker(store, clock):
    await admin(store)
    account = await make_account(store)
    post = await schedule(store, account, clock())
    job = await claim_job(store, post.job_id)
    removal = await store.remove_user(account.user_id)
    # The worker holds the job; its account can no longer be used, so a retry stops there.
    assert removal.posts_cancelled == 0
    assert (await store.get_job(job.id)).state is JobState.PROCESSING
    assert (await store.get_account(account.id)).needs_relink


async def test_the_last_admin_cannot_be_removed(store):
    root = await admin(store)
    with pytest.raises(Conflict, match="last admin"):
        await store.remove_user(root.id)
    assert await store.get_user(root.id) == root
    other = await admin(store, "second")
    assert (await store.remove_user(root.id)).user == root
    with pytest.raises(Conflict, match="last admin"):
        await store.remove_user(other.id)


async def test_removing_an_unknown_user_is_not_found(store):
    with pytest.raises(NotFound):
        await store.remove_user(10**9)


# === broadcasts ================================================================================


async def test_a_store_does_not_hear_its_own_broadcasts(store):
    async with contextlib.aclosing(store.broadcasts()) as messages:
        await store.broadcast(b"hello")
        with trio.move_on_after(0.2):
            received = await messages.__anext__()
            pytest.fail(f"a store heard its own broadcast: {received!r}")


async def test_a_broadcast_too_large_or_not_bytes_is_refused(store):
    with pytest.raises(ValidationError, match=f"at most {BROADCAST_MAX_BYTES} bytes"):
        await store.broadcast(b"x" * (BROADCAST_MAX_BYTES + 1))
    with pytest.raises(ValidationError, match="bytes, not str"):
        await store.broadcast("text")  # type: ignore[arg-type]
    await store.broadcast(b"x" * BROADCAST_MAX_BYTES)


async def test_broadcast_iterators_end_when_the_store_closes(store_factory):
    async with store_factory() as other:
        messages = other.broadcasts()
    with trio.fail_after(5):
        assert [message async for message in messages] == []


async def test_a_removed_users_post_cannot_be_armed_so_it_is_never_submitted(store, clock):
    await admin(store)
    account = await make_account(store)
    post = await schedule(store, account, clock())
    await claim_job(store, post.job_id)  # a worker had it when the user was removed
    await store.remove_user(account.user_id)
    with pytest.raises(InvalidTransition, match="removed user"):
        await store.arm_post(post.id)
    assert (await store.get_post(post.id)).armed_at is None
