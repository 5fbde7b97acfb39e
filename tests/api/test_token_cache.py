"""Who a token belongs to is cached, but never past a lost invalidation for long: a process keeps
a token's answer in memory at most half a second, so even a revocation whose invalidation never
arrives (a connection being re-established) is refused within 1 s."""

from __future__ import annotations

import trio

from thotto.usecases.tokens import token_hash


async def test_a_revocation_whose_invalidation_is_lost_is_refused_within_1s(api):
    created = (await api.pro.client.post("/api/tokens", json={"name": "laptop"})).json()
    async with api.client(created["token"]) as laptop:
        assert (await laptop.get("/api/me")).status_code == 200  # now cached
        # Revoked in the store alone, as if the invalidation had been lost on its way.
        await api.app.store.revoke_token(created["id"])
        assert await api.app.store.user_for_token(token_hash(created["token"])) is None
        with trio.fail_after(1.0):
            while (await laptop.get("/api/me")).status_code != 401:
                await trio.sleep(0.02)
