"""Reading posts' engagement: ``GET /api/info`` against the sandbox, 100 ids per request."""

from __future__ import annotations

import httpx
import pytest

from thotto.errors import RedditRetryable


async def test_info_reads_score_and_comments_set_through_the_control_api(sandbox, alice):
    first = await alice.submit("test", "One", text="a")
    second = await alice.submit("test", "Two", text="b")
    await sandbox.control("POST", "/_sandbox/engagement",
                          json={first.name: {"score": 42, "num_comments": 7}})
    found = await alice.info([second.id, first.name, "t3_zzzzzz"])  # unknown ids are left out
    assert [(post.id, post.score, post.num_comments) for post in found] == [
        (second.id, 1, 0),  # a new post: the author's own upvote, no comments
        (first.id, 42, 7),
    ]


async def test_info_asks_for_at_most_100_ids_at_once(sandbox, alice, reddit):
    post = await alice.submit("test", "One", text="a")
    ids = [post.id] + [f"zz{n:04d}" for n in range(150)]
    requests = []
    original = reddit._api

    async def counting(account, method, path, **kwargs):
        requests.append(kwargs.get("params", {}).get("id", "").count(",") + 1)
        return await original(account, method, path, **kwargs)

    reddit._api = counting
    found = await alice.info(ids)
    assert requests == [100, 51]
    assert [p.id for p in found] == [post.id]


async def test_setting_engagement_of_an_unknown_post_is_refused(sandbox):
    with pytest.raises(httpx.HTTPStatusError):
        await sandbox.control("POST", "/_sandbox/engagement", json={"nope": {"score": 3}})


async def test_info_errors_are_classified(sandbox, alice):
    await sandbox.faults(errors=[{"status": 503, "path": "/api/info"}])
    with pytest.raises(RedditRetryable):
        await alice.info(["abc"])
