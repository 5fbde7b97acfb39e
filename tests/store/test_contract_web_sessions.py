"""The store contract for the web app, on every adapter: time zones, password hashes, one-time
set-password links (used once, expire, only the newest works, spending one signs every browser
out), sessions (found by hash with their user, gone with a removed user, touched, deleted one
or all) and sign-in failures counted per key over a window."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import trio

from thotto.engine.errors import NotFound
from thotto.errors import Conflict
from thotto.scheduler.records import NewUser, Role, Tier

LINK = "l" * 64
OTHER_LINK = "m" * 64
SESSION = "s" * 64
OTHER_SESSION = "o" * 64
CSRF = "c" * 43
HASH = "$argon2id$v=19$m=65536,t=3,p=4$" + "x" * 60


async def user(store, name: str = "creator", role: Role = Role.USER):
    return await store.create_user(NewUser(name=name, tier=Tier.PRO, role=role))


async def test_a_user_starts_in_utc_without_a_password_and_keeps_a_new_zone(store):
    alice = await user(store)
    assert alice.time_zone == "UTC" and await store.get_password_hash(alice.id) is None
    changed = await store.set_time_zone(alice.id, "Europe/Berlin")
    assert changed.time_zone == "Europe/Berlin"
    assert (await store.get_user(alice.id)).time_zone == "Europe/Berlin"
    assert (await store.get_user_by_name("creator")).time_zone == "Europe/Berlin"
    await store.set_password_hash(alice.id, HASH)
    assert await store.get_password_hash(alice.id) == HASH


async def test_time_zones_and_passwords_of_unknown_users_are_not_found(store):
    for call in (store.set_time_zone(999, "UTC"), store.get_password_hash(999),
                 store.set_password_hash(999, HASH)):
        try:
            await call
        except NotFound:
            continue
        raise AssertionError("expected NotFound")


async def test_a_password_link_sets_the_password_once_before_it_expires(store, clock):
    alice = await user(store)
    link = await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=24))
    assert (link.user_id, link.created_at, link.used_at) == (alice.id, clock(), None)
    assert await store.get_password_link(LINK) == link
    assert await store.get_password_link(OTHER_LINK) is None
    clock.advance(60)
    assert (await store.use_password_link(LINK, HASH)).id == alice.id
    assert await store.get_password_hash(alice.id) == HASH
    assert (await store.get_password_link(LINK)).used_at == clock()
    assert await store.use_password_link(LINK, HASH + "again") is None
    assert await store.get_password_hash(alice.id) == HASH


async def test_an_expired_password_link_sets_nothing(store, clock):
    alice = await user(store)
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=24))
    clock.advance(24 * 3600)
    assert await store.use_password_link(LINK, HASH) is None
    assert await store.get_password_hash(alice.id) is None


async def test_only_the_newest_password_link_of_a_user_works(store, clock):
    alice = await user(store)
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=24))
    await store.create_password_link(OTHER_LINK, alice.id, clock() + timedelta(hours=24))
    assert await store.get_password_link(LINK) is None
    assert await store.use_password_link(LINK, HASH) is None
    assert (await store.use_password_link(OTHER_LINK, HASH)).id == alice.id


async def test_a_password_link_hash_is_unique_and_needs_a_user(store, clock):
    alice = await user(store)
    bob = await user(store, "bob")
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=1))
    with contextlib.suppress(Conflict):
        await store.create_password_link(LINK, bob.id, clock() + timedelta(hours=1))
        raise AssertionError("expected Conflict")
    with contextlib.suppress(NotFound):
        await store.create_password_link(OTHER_LINK, 999, clock() + timedelta(hours=1))
        raise AssertionError("expected NotFound")


async def test_a_removed_users_link_sets_nothing(store, clock):
    await user(store, "admin", Role.ADMIN)
    alice = await user(store)
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=1))
    await store.remove_user(alice.id)
    assert await store.use_password_link(LINK, HASH) is None


async def test_racing_uses_of_one_password_link_have_one_winner(store_factory, store_url, store, clock):
    alice = await user(store)
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=1))
    results = []

    async def use(on, index: int) -> None:
        results.append(await on.use_password_link(LINK, f"{HASH}{index}"))

    async with contextlib.AsyncExitStack() as stack:
        on = [store] if not store_url.startswith("postgres") else [
            store, await stack.enter_async_context(store_factory())]
        async with trio.open_nursery() as nursery:
            for index in range(6):
                nursery.start_soon(use, on[index % len(on)], index)
    winners = [result for result in results if result is not None]
    assert len(winners) == 1 and len(results) == 6


async def test_a_session_is_found_by_its_hash_with_its_user(store, clock):
    alice = await user(store)
    session = await store.create_session(SESSION, alice.id, CSRF, clock() + timedelta(days=30))
    assert session.user == alice and session.csrf_token == CSRF
    assert session.created_at == session.last_seen_at == clock()
    assert await store.get_session(SESSION) == session
    assert await store.get_session(OTHER_SESSION) is None
    clock.advance(90)
    await store.touch_session(SESSION)
    assert (await store.get_session(SESSION)).last_seen_at == clock()


async def test_a_session_shows_the_users_current_zone(store, clock):
    alice = await user(store)
    await store.create_session(SESSION, alice.id, CSRF, clock() + timedelta(days=30))
    await store.set_time_zone(alice.id, "Asia/Tokyo")
    assert (await store.get_session(SESSION)).user.time_zone == "Asia/Tokyo"


async def test_sessions_are_deleted_one_or_all(store, clock):
    alice = await user(store)
    bob = await user(store, "bob")
    later = clock() + timedelta(days=30)
    await store.create_session(SESSION, alice.id, CSRF, later)
    await store.create_session(OTHER_SESSION, alice.id, CSRF, later)
    await store.create_session("b" * 64, bob.id, CSRF, later)
    assert await store.delete_session(SESSION) is True
    assert await store.delete_session(SESSION) is False
    assert await store.get_session(SESSION) is None
    await store.create_session(SESSION, alice.id, CSRF, later)
    assert await store.delete_user_sessions(alice.id) == 2
    assert await store.get_session(OTHER_SESSION) is None
    assert (await store.get_session("b" * 64)).user == bob


async def test_spending_a_password_link_signs_every_browser_out(store, clock):
    alice = await user(store)
    await store.create_session(SESSION, alice.id, CSRF, clock() + timedelta(days=30))
    await store.create_password_link(LINK, alice.id, clock() + timedelta(hours=1))
    await store.use_password_link(LINK, HASH)
    assert await store.get_session(SESSION) is None


async def test_a_removed_users_sessions_are_gone(store, clock):
    await user(store, "admin", Role.ADMIN)
    alice = await user(store)
    await store.create_session(SESSION, alice.id, CSRF, clock() + timedelta(days=30))
    await store.remove_user(alice.id)
    assert await store.get_session(SESSION) is None


async def test_a_session_needs_a_live_user_and_a_new_hash(store, clock):
    alice = await user(store)
    later = clock() + timedelta(days=1)
    await store.create_session(SESSION, alice.id, CSRF, later)
    with contextlib.suppress(Conflict):
        await store.create_session(SESSION, alice.id, CSRF, later)
        raise AssertionError("expected Conflict")
    with contextlib.suppress(NotFound):
        await store.create_session(OTHER_SESSION, 999, CSRF, later)
        raise AssertionError("expected NotFound")


async def test_expired_sessions_are_forgotten_when_another_starts(store, clock):
    alice = await user(store)
    await store.create_session(SESSION, alice.id, CSRF, clock() + timedelta(hours=1))
    assert await store.get_session(SESSION) is not None  # expired ones are still shown...
    clock.advance(2 * 3600)
    assert await store.get_session(SESSION) is not None
    await store.create_session(OTHER_SESSION, alice.id, CSRF, clock() + timedelta(hours=1))
    assert await store.get_session(SESSION) is None  # ...until a new session clears them


async def test_sign_in_failures_are_counted_per_key_within_the_window(store, clock):
    start = clock()
    await store.record_sign_in_failure(["user:alice", "address:10.0.0.1"])
    clock.advance(60)
    await store.record_sign_in_failure(["user:alice", "address:10.0.0.2"])
    assert await store.sign_in_failures("user:alice", start) == [start, clock()]
    assert await store.sign_in_failures("user:alice", start + timedelta(seconds=1)) == [clock()]
    assert await store.sign_in_failures("address:10.0.0.1", start) == [start]
    assert await store.sign_in_failures("user:bob", start) == []
    await store.clear_sign_in_failures("user:alice")
    assert await store.sign_in_failures("user:alice", start) == []
    assert await store.sign_in_failures("address:10.0.0.2", start) == [clock()]


async def test_sign_in_failures_over_a_day_old_are_forgotten(store, clock):
    start = clock()
    await store.record_sign_in_failure(["user:alice"])
    clock.advance(25 * 3600)
    await store.record_sign_in_failure(["user:bob"])
    assert await store.sign_in_failures("user:alice", start) == []


async def test_unlinking_an_account_hides_it_erases_it_and_cancels_its_scheduled_posts(store, clock):
    from tests.store.test_contract import link, make_account, publish, schedule
    from thotto.scheduler.records import PostStatus

    account = await make_account(store)
    other = await store.create_account(link(account.user_id, "second_r"))
    waiting = await schedule(store, account, clock() + timedelta(hours=1), title="Waiting")
    published = await publish(store, await schedule(store, account, clock(), title="Out"))
    elsewhere = await schedule(store, other, clock() + timedelta(hours=1), title="Elsewhere")
    unlinked = await store.unlink_account(account.id, account.user_id)
    assert unlinked.account.id == account.id and unlinked.posts_cancelled == 1
    assert [a.id for a in await store.list_accounts(account.user_id)] == [other.id]
    gone = await store.get_account(account.id)
    assert gone.needs_relink and gone.refresh_token_encrypted == b""
    assert (await store.get_post(waiting.id)).status is PostStatus.CANCELLED
    assert (await store.get_post(published.id)).status is PostStatus.PUBLISHED
    assert (await store.get_post(elsewhere.id)).status is PostStatus.SCHEDULED
    with contextlib.suppress(NotFound):
        await store.unlink_account(account.id, account.user_id)
        raise AssertionError("expected NotFound: already unlinked")
    relinked = await store.create_account(link(account.user_id, "alice_r", b"sealed-2"))
    assert relinked.id == account.id and not relinked.needs_relink
    assert [a.id for a in await store.list_accounts(account.user_id)] == [account.id, other.id]


async def test_only_its_owner_unlinks_an_account(store, clock):
    from tests.store.test_contract import make_account

    account = await make_account(store)
    stranger = await user(store, "stranger")
    with contextlib.suppress(NotFound):
        await store.unlink_account(account.id, stranger.id)
        raise AssertionError("expected NotFound")
    assert [a.id for a in await store.list_accounts(account.user_id)] == [account.id]
