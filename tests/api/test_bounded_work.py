"""Bounded work per request and per stranger (issue #13), over real HTTP: one request creates
at most 100 posts in all; unknown API tokens do not grow the cache and are limited per client
address (429 with Retry-After), in memory and through Redis."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import api_settings, serving
from thotto.api.auth import FailureLimiter, TokenBuckets
from thotto.usecases.tokens import new_token
from thotto.errors import TooManyRequests


def item(title: str, subreddits: list[str]) -> dict:
    when = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    return {"title": title, "text": "body", "scheduledFor": when, "subreddits": subreddits}


def subreddits(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{index}" for index in range(count)]


async def test_a_batch_creates_at_most_100_posts_in_all(api):
    for items in ([item(f"t{i}", subreddits(25, f"s{i}x")) for i in range(5)],  # 125
                  [item(f"t{i}", subreddits(25, f"s{i}x")) for i in range(4)] + [item("t9", ["test"])]):  # 101
        response = await api.premium.client.post("/api/scheduled-posts/batch", json={"posts": items})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["field"] == "posts" and "at most 100" in body["detail"], body
        wanted = sum(len(i["subreddits"]) for i in items)
        assert f"{wanted} posts" in body["detail"]
    listed = (await api.premium.client.get("/api/scheduled-posts")).json()
    assert listed["posts"] == []


async def cache_entries(api) -> float:
    metrics = (await api.admin.client.get("/metrics")).text
    return float(re.search(r"^thotto_cache_entries (\S+)$", metrics, re.M)[1])


async def test_unknown_tokens_do_not_grow_the_cache(api):
    assert (await api.pro.client.get("/api/me")).status_code == 200
    before = await cache_entries(api)
    async with api.client() as stranger:
        for _ in range(15):
            response = await stranger.get("/api/me", headers={"authorization": f"Bearer {new_token()}"})
            assert response.status_code == 401
    assert await cache_entries(api) == before


async def test_failed_authentications_are_limited_per_address(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url, api_auth_failures_per_minute=6, api_auth_failure_burst=3)
    async with serving(settings) as api:
        assert (await api.pro.client.get("/api/me")).status_code == 200  # known and cached
        async with api.client() as stranger:
            statuses = []
            for _ in range(5):
                response = await stranger.get("/api/scheduled-posts",
                                              headers={"authorization": f"Bearer {new_token()}"})
                statuses.append(response.status_code)
            assert statuses == [401, 401, 401, 429, 429]
            assert 1 <= int(response.headers["retry-after"]) <= 10
            assert "failed authentications" in response.json()["detail"]
        assert (await api.pro.client.get("/api/me")).status_code == 200  # its token is known


async def test_failed_authentications_are_counted_in_redis_for_every_process(sandbox, tmp_path, redis_url):
    settings = api_settings(tmp_path, sandbox.url, api_auth_failures_per_minute=6, api_auth_failure_burst=2,
                            redis_url=redis_url, redis_namespace="authfail-test")
    async with serving(settings) as api:
        assert api.app.services.cache.shared_redis() is not None
        async with api.client() as stranger:
            statuses = [(await stranger.get("/api/me", headers={"authorization": f"Bearer {new_token()}"})).status_code
                        for _ in range(3)]
        assert statuses == [401, 401, 429]
        assert not api.app.tree.api.context.auth_failures.buckets._buckets  # decided in Redis


async def test_the_buckets_in_memory_stay_bounded_and_refill():
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, max_keys=100, clock=lambda: now[0])
    for address in range(1000):
        assert await buckets.take(f"10.0.{address // 256}.{address % 256}") == 0.0
        assert len(buckets._buckets) <= 100
    assert [await buckets.take("stranger") for _ in range(3)] == [0.0, 0.0, 1.0]
    now[0] += 1.0
    assert await buckets.take("stranger") == 0.0
    failures = FailureLimiter(buckets)
    for _ in range(2):
        await failures.failed("192.0.2.1")
    with pytest.raises(TooManyRequests):
        await failures.failed("192.0.2.1")
    with pytest.raises(TooManyRequests):
        failures.check_not_blocked("192.0.2.1")  # refused before any lookup while it refills
    now[0] += 1.0
    failures.check_not_blocked("192.0.2.1")
