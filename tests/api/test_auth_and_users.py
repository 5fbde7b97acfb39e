"""Tokens, users, tiers, rate limits, linked accounts and the OAuth callback, over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tests.api.conftest import api_settings, serving
from thotto.usecases.tokens import token_hash


async def test_requests_without_a_valid_token_get_401(api):
    async with api.client() as anonymous:
        response = await anonymous.get("/api/scheduled-posts")
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in response.json()["detail"]
        assert (await anonymous.get("/api/health")).status_code == 200
    async with api.client("thotto_not-a-real-token") as forged:
        assert (await forged.get("/api/me")).status_code == 401


async def test_tokens_are_stored_hashed_shown_once_and_revocable(api):
    response = await api.pro.client.post("/api/tokens", json={"name": "laptop"})
    assert response.status_code == 201
    created = response.json()
    token = created["token"]
    assert token.startswith("thotto_") and len(token) > 40
    async with api.client(token) as laptop:
        assert (await laptop.get("/api/me")).json()["name"] == "pro"
        listed = (await api.pro.client.get("/api/tokens")).json()
        assert "token" not in listed[-1] and listed[-1]["name"] == "laptop"
        assert await api.app.store.user_for_token(token_hash(token)) is not None
        response = await api.pro.client.delete(f"/api/tokens/{created['id']}")
        assert response.status_code == 200 and response.json()["revokedAt"]
        assert (await laptop.get("/api/me")).status_code == 401  # the cached lookup is gone too


async def test_a_user_cannot_revoke_someone_elses_token(api):
    created = (await api.premium.client.post("/api/tokens", json={})).json()
    assert (await api.pro.client.delete(f"/api/tokens/{created['id']}")).status_code == 404
    assert (await api.admin.client.delete(f"/api/tokens/{created['id']}")).status_code == 200


async def test_admins_manage_users_and_tiers(api):
    assert (await api.pro.client.get("/api/users")).status_code == 403
    response = await api.admin.client.post("/api/users", json={"name": "newbie"})
    assert response.status_code == 201 and response.json()["tier"] == "free"
    newbie = response.json()
    assert (await api.admin.client.post("/api/users", json={"name": "newbie"})).status_code == 409
    assert (await api.admin.client.post("/api/users", json={"name": "bad name!"})).status_code == 422
    token = (await api.admin.client.post(f"/api/users/{newbie['id']}/tokens", json={})).json()["token"]
    async with api.client(token) as client:
        body = {"subreddit": "test", "title": "t", "scheduledFor": "2099-01-01T00:00:00Z"}
        assert (await client.post("/api/scheduled-posts", json=body)).status_code == 403
        response = await api.admin.client.put(f"/api/users/{newbie['id']}/tier", json={"tier": "pro"})
        assert response.status_code == 200 and response.json()["tier"] == "pro"
        assert (await client.get("/api/me")).json()["tier"] == "pro"  # not a stale cached tier
    response = await api.admin.client.put(f"/api/users/{newbie['id']}/tier", json={"tier": "gold"})
    assert response.status_code == 422 and response.json()["field"] == "tier"
    names = [user["name"] for user in (await api.admin.client.get("/api/users")).json()]
    assert "newbie" in names and "pro" in names


async def test_too_many_requests_get_429_with_retry_after(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url, api_requests_per_minute=60, api_burst=3)
    async with serving(settings) as api:
        statuses = [(await api.pro.client.get("/api/me")).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        response = await api.pro.client.get("/api/me")
        assert 1 <= int(response.headers["retry-after"]) <= 2
        assert (await api.premium.client.get("/api/me")).status_code == 200  # a bucket per user


async def test_the_rate_limit_is_shared_through_redis(sandbox, tmp_path, redis_url):
    settings = api_settings(tmp_path, sandbox.url, api_requests_per_minute=60, api_burst=4,
                            redis_url=redis_url, redis_namespace="ratelimit-test")
    async with serving(settings) as api:
        cache = api.app.services.cache
        assert cache.shared_redis() is not None
        api.app.tree.api.context.limiter._buckets.clear()
        statuses = [(await api.pro.client.get("/api/me")).status_code for _ in range(6)]
        assert statuses == [200] * 4 + [429] * 2
        assert not api.app.tree.api.context.limiter._buckets  # decided in Redis, not here


async def test_linking_an_account_through_the_web_flow(api, sandbox):
    response = await api.premium.client.post("/api/accounts/link")
    assert response.status_code == 200
    start = response.json()
    await sandbox.configure(authorize_as="web_linked")
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(start["authorizeUrl"])
        redirect = urlsplit(consent.headers["location"])
    query = parse_qs(redirect.query)
    assert query["state"] == [start["state"]]
    # Reddit's redirect carries no bearer token: the client that started the link (it keeps
    # cookies, as a browser does) is recognised by its link cookie.
    api.premium.client.headers.pop("authorization")
    try:
        response = await api.premium.client.get("/api/accounts/callback",
                                                params={k: v[0] for k, v in query.items()})
    finally:
        api.premium.client.headers["authorization"] = f"Bearer {api.premium.token}"
    assert response.status_code == 200, response.text
    assert response.json()["redditUsername"] == "web_linked"
    async with api.client() as anonymous:
        forged = await anonymous.get("/api/accounts/callback", params={"state": "forged", "code": "x"})
        assert forged.status_code == 422 and forged.json()["field"] == "state"
    accounts = (await api.premium.client.get("/api/accounts")).json()
    assert {account["redditUsername"] for account in accounts} == {"premium_acct", "web_linked"}


async def test_a_time_zone_change_is_checked_and_seen_at_once(api):
    assert (await api.pro.client.get("/api/me")).json()["timeZone"] == "UTC"  # cached from here on
    response = await api.pro.client.put("/api/me/time-zone", json={"timeZone": "Mars/Olympus_Mons"})
    assert response.status_code == 422 and response.json()["field"] == "timeZone"  # as the body names it
    assert "IANA time zone" in response.json()["detail"]
    response = await api.pro.client.put("/api/me/time-zone", json={"timeZone": "Europe/Berlin"})
    assert response.status_code == 200 and response.json()["timeZone"] == "Europe/Berlin"
    assert (await api.pro.client.get("/api/me")).json()["timeZone"] == "Europe/Berlin"  # not stale
    assert (await api.app.store.get_user(api.pro.id)).time_zone == "Europe/Berlin"
    assert (await api.premium.client.get("/api/me")).json()["timeZone"] == "UTC"  # theirs alone
