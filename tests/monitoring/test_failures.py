"""Failures over real HTTP, from the store: a post Reddit refused is listed with its post, user,
title and reason; still listed by a second Thotto process on the same files after a restart;
retried only where a retry can succeed (a refused post is edited and rescheduled instead, an
account linked again first), never as a second row; and a creator's refused posts do not make
the system degraded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import httpx
import trio

from tests.api.conftest import api_settings, serving
from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto.engine.jobs import Dead, FailureCause, utcnow
from thotto.scheduler.records import NewPost, PostContent, PostStatus
from thotto.usecases.accounts import link_with_password


async def failed_post(api, subreddit: str = "no_such_sub", title: str = "Typo in the subreddit"):
    """A post of pro's due now to ``subreddit``; returns it once its job is dead."""
    app = api.app
    (account,) = await app.store.list_accounts(api.pro.id)
    (post,) = await app.store.create_posts([NewPost(
        user_id=api.pro.id, account_id=account.id, scheduled_for=utcnow(),
        content=PostContent(subreddit=subreddit, title=title, text="hello"))])
    with trio.fail_after(30):
        while (await app.store.get_post(post.id)).status is not PostStatus.FAILED:
            await trio.sleep(0.05)
    return post


async def dead_post(api, cause: FailureCause, reason: str):
    """A post of pro's whose job died of ``cause`` (settled as a worker would have)."""
    app = api.app
    (account,) = await app.store.list_accounts(api.pro.id)
    when = utcnow() + timedelta(days=2)
    (post,) = await app.store.create_posts([NewPost(
        user_id=api.pro.id, account_id=account.id, scheduled_for=when,
        content=PostContent(subreddit="test", title=f"Dies of {cause.value}", text="hello"))])
    (job,) = await app.store.claim("test-worker", 1, 60, queues=["posts"], due_by=when)
    await app.store.settle("test-worker", [Dead(job.id, job.attempt, reason, cause)])
    return post


async def listed(client) -> dict[int, dict]:
    response = await client.get("/api/monitoring/failures")
    assert response.status_code == 200, response.text
    return {failure["jobId"]: failure for failure in response.json()["failures"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_refused_post_is_listed_with_its_post_and_survives_a_restart(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url)
    async with serving(settings) as api:
        post = await failed_post(api)
        failures = await listed(api.admin.client)
        token = api.admin.token
    failure = failures[post.job_id]
    assert (failure["post"]["id"], failure["post"]["user"], failure["post"]["title"],
            failure["post"]["subreddit"], failure["post"]["account"]) == (
        post.id, "pro", "Typo in the subreddit", "no_such_sub", "pro_acct")
    assert "SUBREDDIT_NOEXIST" in failure["reason"] or "doesn't exist" in failure["reason"]
    assert failure["cause"] == "refused"
    assert (failure["retry"]["retryable"], failure["retry"]["action"]) == (False, "edit")

    # A second Thotto, a real process on the same data directory, lists the same failure.
    port = free_port()
    env = {**os.environ, "THOTTO_DATA_DIR": settings.data_dir, "THOTTO_API_PORT": str(port),
           "THOTTO_REDDIT_URL": sandbox.url, "THOTTO_REDDIT_CLIENT_ID": CLIENT_ID,
           "THOTTO_REDDIT_CLIENT_SECRET": CLIENT_SECRET}
    server = subprocess.Popen([sys.executable, "-m", "thotto.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                     headers={"authorization": f"Bearer {token}"}) as client:
            with trio.fail_after(60):
                while True:
                    try:
                        again = await listed(client)
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert again[post.job_id] == failure


async def test_a_refused_post_is_not_retried_but_edited_and_rescheduled(api):
    post = await failed_post(api)
    admin = api.admin.client
    refused = await admin.post(f"/api/monitoring/jobs/{post.job_id}/retry")
    assert refused.status_code == 409
    assert "Edit it and reschedule it" in refused.json()["detail"]
    assert (await admin.post(f"/api/jobs/{post.job_id}/retry")).status_code == 409
    assert list(await listed(admin)) == [post.job_id]  # one row, unchanged: no duplicate

    when = utcnow() + timedelta(seconds=2)
    bad = await admin.post(f"/api/monitoring/failures/{post.job_id}/reschedule",
                           json={"subreddit": "test"})
    assert bad.status_code == 422 and "scheduledFor" in bad.json()["detail"]
    fixed = await admin.post(f"/api/monitoring/failures/{post.job_id}/reschedule",
                             json={"subreddit": "test", "scheduledFor": when.isoformat()})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["status"], fixed.json()["subreddit"]) == ("scheduled", "test")
    assert await listed(admin) == {}
    with trio.fail_after(30):
        while (await api.app.store.get_post(post.id)).status is not PostStatus.PUBLISHED:
            await trio.sleep(0.05)
    published = await api.pro.client.get(f"/api/scheduled-posts/{post.id}")
    assert published.json()["redditUrl"]


async def test_a_system_failure_is_retried_once_as_one_row(api, sandbox):
    post = await dead_post(api, FailureCause.SYSTEM, "Reddit answered HTTP 503 six times")
    admin = api.admin.client
    failure = (await listed(admin))[post.job_id]
    assert (failure["cause"], failure["retry"]["retryable"]) == ("system", True)
    retried = await admin.post(f"/api/monitoring/jobs/{post.job_id}/retry")
    assert retried.json() == {"jobId": post.job_id, "retried": True}
    # Redriven, it has not failed again: a second retry does not run it twice (nor early).
    again = await admin.post(f"/api/monitoring/jobs/{post.job_id}/retry")
    detail = again.json()["detail"]  # waiting to run, or (a busy machine) already running
    assert again.status_code == 409 and ("is not retried" in detail or "is processing" in detail), detail
    with trio.fail_after(30):
        while (await api.app.store.get_post(post.id)).status is not PostStatus.PUBLISHED:
            await trio.sleep(0.05)
    assert post.job_id not in await listed(admin)
    assert [p["title"] for p in await sandbox.posts()].count("Dies of system") == 1


async def test_an_account_failure_is_retried_once_the_account_is_linked_again(api):
    post = await dead_post(api, FailureCause.ACCOUNT, "Reddit refused the login: invalid_grant")
    (account,) = await api.app.store.list_accounts(api.pro.id)
    await api.app.store.set_needs_relink(account.id, True)
    admin = api.admin.client
    failure = (await listed(admin))[post.job_id]
    assert (failure["retry"]["retryable"], failure["retry"]["action"]) == (False, "relink")
    assert (await admin.post(f"/api/monitoring/jobs/{post.job_id}/retry")).status_code == 409
    await link_with_password(api.app.scheduler, api.pro.id, "pro_acct", "secret-password")
    failure = (await listed(admin))[post.job_id]
    assert failure["retry"]["retryable"] is True
    assert (await admin.post(f"/api/monitoring/jobs/{post.job_id}/retry")).status_code == 200


async def test_refused_posts_have_their_own_figure_and_leave_the_system_healthy(api):
    await failed_post(api, title="Typo one")
    await failed_post(api, title="Typo two")
    admin = api.admin.client
    async def refused_seen() -> int:  # by the monitor's snapshots so far (404: none of posts yet)
        response = await admin.get("/api/monitoring/queue-metrics/posts")
        return sum(s["refusedRecent"] for s in response.json().get("history", []))

    with trio.fail_after(20):
        while await refused_seen() < 2:
            await trio.sleep(0.1)
    history = (await admin.get("/api/monitoring/queue-metrics/posts")).json()["history"]
    assert all(s["failedRecent"] == 0 and s["failedRate"] == 0 for s in history)
    health = (await admin.get("/api/monitoring/queue-health")).json()
    assert not [a for a in health["alerts"] if a["name"] == "failed_rate"]
    system = (await admin.get("/api/monitoring/system-health")).json()
    assert "refusedRecent" in system and "refusedRecent" in health


async def test_its_owner_fixes_a_refused_post_and_schedules_it_again(api):
    post = await failed_post(api)
    creator = api.pro.client
    without_time = await creator.patch(f"/api/scheduled-posts/{post.id}", json={"subreddit": "test"})
    assert without_time.status_code == 422 and without_time.json()["field"] == "scheduledFor"
    when = utcnow() + timedelta(seconds=2)
    fixed = await creator.patch(f"/api/scheduled-posts/{post.id}",
                                json={"subreddit": "test", "scheduledFor": when.isoformat()})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["status"], fixed.json()["subreddit"], fixed.json()["error"]) == (
        "scheduled", "test", None)
    with trio.fail_after(30):
        while (await api.app.store.get_post(post.id)).status is not PostStatus.PUBLISHED:
            await trio.sleep(0.05)
    assert await listed(api.admin.client) == {}
