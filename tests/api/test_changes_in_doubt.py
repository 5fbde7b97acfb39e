"""A post that may already be on Reddit cannot be changed (issue #13, item 1).

Reddit accepts a post but the reply is lost: until Thotto has looked at the account's
submissions, an edit could publish a second post beside the live one, and a cancel would report
"cancelled" for a post that is live. Both are refused with a 409 that says so, over real HTTP,
through the API, the CLI, and the same store rule underneath."""

from __future__ import annotations

import json

import pytest
import trio

from tests.api.conftest import api_settings, serving
from tests.api.test_cli import run
from tests.api.test_scheduled_posts import at, post_body, wait_for
from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto.config import Settings
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewAccount, NewPost, NewUser, PostContent, PostKind, Tier
from thotto.store import open_store

SETTLE = 3.0  # seconds Reddit's listing gets before Thotto trusts it (60 by default)


@pytest.fixture
async def api(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url, reddit_reconcile_settle_seconds=SETTLE)
    async with serving(settings) as api:
        yield api


async def a_post_in_doubt(api, sandbox, title: str) -> dict:
    """Schedule a post whose submission Reddit accepts while the reply is lost. Reddit's listing
    answers slowly, so the look that follows (the reconciliation) takes seconds: the window in
    which the test changes the post outlasts a slow machine."""
    await sandbox.faults(drop_after_accept=1, latency=3, latency_path="/user/")
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(title=title, scheduledFor=at(0.5)))
    assert response.status_code == 201, response.text
    (post,) = response.json()["posts"]
    with trio.fail_after(15):  # the attempt has ended without an answer; the job waits to retry
        while not finished_attempts(post := (await api.pro.client.get(f"/api/scheduled-posts/{post['id']}")).json()):
            await trio.sleep(0.05)
    assert post["status"] == "publishing", post
    return post


def assert_refused_while_checking(response, subreddit: str = "test") -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "Conflict"
    assert f"may already be on r/{subreddit}" in body["detail"] or "right now" in body["detail"]
    assert int(response.headers["retry-after"]) >= 1


async def test_an_edit_while_the_outcome_is_unknown_is_refused_and_nothing_is_posted_twice(api, sandbox):
    post = await a_post_in_doubt(api, sandbox, "Lost reply")
    client = api.pro.client
    assert_refused_while_checking(await client.patch(f"/api/scheduled-posts/{post['id']}", json={"title": "Edited"}))
    assert_refused_while_checking(await client.patch(f"/api/scheduled-posts/{post['id']}",
                                                     json={"scheduledFor": at(3600)}))
    assert_refused_while_checking(await client.delete(f"/api/scheduled-posts/{post['id']}"))

    published = await wait_for(client, post["id"], "published", timeout=30)
    records = await sandbox.posts()
    assert [r["title"] for r in records] == ["Lost reply"]  # once, with the title it was sent with
    assert published["redditId"] == records[0]["id"] and published["title"] == "Lost reply"
    assert published["redditUrl"]
    response = await client.delete(f"/api/scheduled-posts/{post['id']}")
    assert response.status_code == 409 and "is published" in response.json()["detail"]


async def test_the_list_shows_posts_being_checked_as_publishing(api, sandbox):
    post = await a_post_in_doubt(api, sandbox, "Listed while checked")
    listed = (await api.pro.client.get("/api/scheduled-posts", params={"status": "publishing"})).json()
    assert [p["id"] for p in listed["posts"]] == [post["id"]]
    scheduled = (await api.pro.client.get("/api/scheduled-posts", params={"status": "scheduled"})).json()
    assert post["id"] not in [p["id"] for p in scheduled["posts"]]
    await wait_for(api.pro.client, post["id"], "published", timeout=30)


async def test_a_refused_attempt_leaves_the_post_free_to_change(api, sandbox):
    """Reddit answered "slow down": nothing was posted, so the post is scheduled again (deferred
    to when the limit lifts) and its creator may edit or cancel it."""
    await sandbox.faults(ratelimit={"count": 1, "seconds": 30})  # deferred well past the test
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(title="Refused", scheduledFor=at(0.5)))
    (post,) = response.json()["posts"]
    with trio.fail_after(15):
        while not finished_attempts(post := (await api.pro.client.get(f"/api/scheduled-posts/{post['id']}")).json()):
            await trio.sleep(0.05)
    assert [a["outcome"] for a in post["attempts"]] == ["deferred"], post
    assert post["status"] == "scheduled", post
    response = await api.pro.client.delete(f"/api/scheduled-posts/{post['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert not [r for r in await sandbox.posts() if r["title"] == "Refused"]


def finished_attempts(post: dict) -> list[dict]:
    return [a for a in post["attempts"] if a["finishedAt"]]


async def test_the_cli_meets_the_same_rule(tmp_path):
    """The CLI cancels through the same store rule: one line, exit 2, nothing changed."""
    settings = Settings(data_dir=str(tmp_path / "thotto-data"))
    async with open_store(settings.resolved_database_url()) as store:
        user = await store.create_user(NewUser(name="dana", tier=Tier.PRO))
        account = await store.create_account(NewAccount(user_id=user.id, reddit_username="dana_r",
                                                        refresh_token_encrypted=b"x", scopes="submit"))
        (post,) = await store.create_posts([NewPost(
            user_id=user.id, account_id=account.id, scheduled_for=utcnow(),
            content=PostContent(subreddit="test", title="In doubt", kind=PostKind.SELF, text="x"))])
        (job,) = await store.claim("w1", 1, 30)
        await store.arm_post(post.id)
        await store.fail("w1", job.id, job.attempt, "HTTP_504", retry_at=utcnow())
    env = {"THOTTO_REDDIT_URL": "http://127.0.0.1:9", "THOTTO_REDDIT_CLIENT_ID": CLIENT_ID,
           "THOTTO_REDDIT_CLIENT_SECRET": CLIENT_SECRET}
    result = await run("post", "cancel", str(post.id), "--user", "dana", cwd=tmp_path, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "may already be on r/test" in result.stderr
    listed = await run("post", "list", "--user", "dana", "--json", cwd=tmp_path, env=env)
    assert [p["status"] for p in json.loads(listed.stdout)] == ["publishing"]
    table = await run("post", "list", "--user", "dana", cwd=tmp_path, env=env)
    assert table.stdout.splitlines()[0].split()[-1] == "ERROR" and "HTTP_504" in table.stdout  # why, at a glance
