"""The store contract for account link requests, on every adapter: a state is found by its
hash, is used at most once (one winner among racing callers, even across store instances on
the same database), expires, and holds Reddit's code at most once."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
import trio

from thotto.engine.errors import Conflict, NotFound, ValidationError
from thotto.scheduler.records import LinkRequest, NewUser, Tier

STATE = "s" * 64
OTHER_STATE = "t" * 64
SECRET = "c" * 64
VERIFIER = "v" * 64


async def started(store, clock, state: str = STATE, minutes: int = 10) -> LinkRequest:
    user = await store.create_user(NewUser(name=f"linker-{state[0]}", tier=Tier.PRO))
    return await store.create_link_request(state, user.id, SECRET, clock() + timedelta(minutes=minutes))


async def test_a_link_request_is_found_by_its_state_hash(store, clock):
    request = await started(store, clock)
    assert request.state_hash == STATE and request.secret_hash == SECRET
    assert request.created_at == clock() and request.expires_at == clock() + timedelta(minutes=10)
    assert request.used_at is None and request.held_code is None and request.verifier_hash is None
    assert await store.get_link_request(STATE) == request
    assert await store.get_link_request(OTHER_STATE) is None


async def test_a_link_request_is_used_once(store, clock):
    await started(store, clock)
    clock.advance(60)
    assert await store.use_link_request(STATE) is True
    assert await store.use_link_request(STATE) is False
    assert (await store.get_link_request(STATE)).used_at == clock()
    assert await store.use_link_request(OTHER_STATE) is False


async def test_racing_uses_of_one_state_have_one_winner(store_factory, store_url, store, clock):
    await started(store, clock)
    results = []

    async def use(on) -> None:
        results.append(await on.use_link_request(STATE))

    async with contextlib.AsyncExitStack() as stack:
        # Postgres: a second store stands for another process; SQLite allows one per file.
        on = [store] if not store_url.startswith("postgres") else [
            store, await stack.enter_async_context(store_factory())]
        async with trio.open_nursery() as nursery:
            for index in range(8):
                nursery.start_soon(use, on[index % len(on)])
    assert sorted(results) == [False] * 7 + [True]


async def test_an_expired_link_request_cannot_be_used_or_hold_a_code(store, clock):
    await started(store, clock)
    clock.advance(600)
    assert await store.hold_link_code(STATE, b"sealed-code", VERIFIER) is False
    assert await store.use_link_request(STATE) is False
    found = await store.get_link_request(STATE)
    assert found.used_at is None and found.held_code is None


async def test_a_code_is_held_once_and_not_after_use(store, clock):
    await started(store, clock)
    assert await store.hold_link_code(STATE, b"sealed-code", VERIFIER) is True
    assert await store.hold_link_code(STATE, b"another-code", "w" * 64) is False
    found = await store.get_link_request(STATE)
    assert (found.held_code, found.verifier_hash) == (b"sealed-code", VERIFIER)
    assert await store.use_link_request(STATE) is True
    assert await store.hold_link_code(STATE, b"late-code", VERIFIER) is False


async def test_link_requests_expired_a_day_ago_are_forgotten_on_the_next_start(store, clock):
    await started(store, clock)
    clock.advance(24 * 3600 + 601)
    await started(store, clock, OTHER_STATE)
    assert await store.get_link_request(STATE) is None
    assert await store.get_link_request(OTHER_STATE) is not None


async def test_a_link_request_needs_a_user_and_a_new_state(store, clock):
    request = await started(store, clock)
    with pytest.raises(Conflict):
        await store.create_link_request(STATE, request.user_id, SECRET, clock() + timedelta(minutes=5))
    with pytest.raises(NotFound):
        await store.create_link_request(OTHER_STATE, 999_999, SECRET, clock() + timedelta(minutes=5))
    with pytest.raises(ValidationError):
        await store.create_link_request("short", request.user_id, SECRET, clock() + timedelta(minutes=5))
    with pytest.raises(ValidationError):
        await store.hold_link_code(STATE, "not bytes", VERIFIER)
