"""The operators' API over real HTTP: job search with cursor pages, a job's page, cancel, redrive
of every dead job matching a search (skipping what cannot succeed), and pausing a queue."""

from __future__ import annotations

from datetime import timedelta

import trio

from tests.monitoring.test_endpoints import run_jobs
from tests.monitoring.test_failures import failed_post
from thotto.engine.errors import RetryableJobError
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewPost, PostContent, PostStatus


async def test_jobs_are_searched_by_queue_kind_state_and_time_a_page_at_a_time(api):
    failed = await run_jobs(api)  # queue "work": 5 completed test.ok, 2 dead test.bad
    admin = api.admin.client
    dead = (await admin.get("/api/jobs", params={"queue": "work", "state": "dead"})).json()
    assert [job["id"] for job in dead["jobs"]] == sorted(failed, reverse=True)
    assert {job["failureCause"] for job in dead["jobs"]} == {"refused"}
    seen, cursor = [], None
    while True:
        page = (await admin.get("/api/jobs", params={"queue": "work", "kind": "test.ok", "limit": 2,
                                                      **({"cursor": cursor} if cursor else {})})).json()
        seen += [job["id"] for job in page["jobs"]]
        if not (cursor := page["nextCursor"]):
            break
    assert len(seen) == len(set(seen)) == 5
    future = (await admin.get("/api/jobs", params={"queue": "work",
                                                    "from": (utcnow() + timedelta(hours=1)).isoformat()})).json()
    assert future["jobs"] == []
    bad = await admin.get("/api/jobs", params={"state": "exploded"})
    assert bad.status_code == 422 and bad.json()["field"] == "state"
    assert (await api.pro.client.get("/api/jobs")).status_code == 403


async def test_a_jobs_page_shows_payload_attempts_and_its_post(api):
    post = await failed_post(api)
    page = (await api.admin.client.get(f"/api/jobs/{post.job_id}")).json()
    assert page["payload"] == {"post_id": post.id}
    assert page["job"]["state"] == "dead" and page["job"]["failureCause"] == "refused"
    assert [a["outcome"] for a in page["attempts"]] == ["dead"]
    assert (page["post"]["id"], page["post"]["user"], page["post"]["status"]) == (post.id, "pro", "failed")
    assert page["retry"]["action"] == "edit"
    assert (await api.admin.client.get("/api/jobs/999999")).status_code == 404


async def test_cancelling_a_posts_job_cancels_the_post_and_a_finished_job_is_refused(api):
    (account,) = await api.app.store.list_accounts(api.pro.id)
    (post,) = await api.app.store.create_posts([NewPost(
        user_id=api.pro.id, account_id=account.id, scheduled_for=utcnow() + timedelta(days=1),
        content=PostContent(subreddit="test", title="Never mind", text="x"))])
    admin = api.admin.client
    cancelled = await admin.post(f"/api/jobs/{post.job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert (await api.app.store.get_post(post.id)).status is PostStatus.CANCELLED
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert [p["status"] for p in listed if p["id"] == post.id] == ["cancelled"]
    done = (await admin.get("/api/jobs", params={"state": "completed"})).json()["jobs"]
    if done:
        assert (await admin.post(f"/api/jobs/{done[0]['id']}/cancel")).status_code == 409


async def test_redrive_all_matching_skips_what_cannot_succeed(api):
    failed = await run_jobs(api)
    post = await failed_post(api)
    admin = api.admin.client
    both = await admin.post("/api/jobs/redrive", json={"jobIds": [1], "queue": "work"})
    assert both.status_code == 422
    result = (await admin.post("/api/jobs/redrive", json={})).json()
    assert sorted(result["redriven"]) == sorted(failed)
    (skipped,) = result["skipped"]
    assert skipped["jobId"] == post.job_id and "Edit it and reschedule it" in skipped["reason"]
    again = (await admin.post("/api/jobs/redrive", json={"jobIds": failed})).json()
    assert again["redriven"] == [] or set(again["redriven"]) <= set(failed)


async def test_a_paused_queue_waits_until_resumed(api):
    app, admin = api.app, api.admin.client
    ran: list[str] = []

    async def record(ctx) -> None:
        ran.append(ctx.job.queue)

    app.engine.register_handler("test.record", record)
    paused = await admin.post("/api/queues/held/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    held = (await app.engine.enqueue("test.record", queue="held")).job_id
    await app.engine.enqueue("test.record", queue="free", run_at=utcnow() + timedelta(seconds=0.1))
    with trio.fail_after(10):
        while "free" not in ran:
            await trio.sleep(0.02)
    assert "held" not in ran and (await app.engine.get(held)).state.value == "pending"
    queues = {q["queue"]: q for q in (await admin.get("/api/queues")).json()["queues"]}
    assert queues["held"]["paused"] is True and queues["held"]["counts"] == {"pending": 1}
    assert (await admin.post("/api/queues/held/resume")).json()["paused"] is False
    with trio.fail_after(10):
        while "held" not in ran:
            await trio.sleep(0.02)
    bad = await admin.post("/api/queues/no%20spaces/pause")
    assert bad.status_code == 422 and bad.json()["field"] == "queue"
    assert (await api.pro.client.post("/api/queues/held/pause")).status_code == 403


async def test_retry_now_runs_a_job_waiting_after_a_failure_but_never_one_early(api):
    app, admin = api.app, api.admin.client
    (account,) = await app.store.list_accounts(api.pro.id)
    (post,) = await app.store.create_posts([NewPost(
        user_id=api.pro.id, account_id=account.id, scheduled_for=utcnow() + timedelta(days=1),
        content=PostContent(subreddit="test", title="Tomorrow", text="x"))])
    early = await admin.post(f"/api/jobs/{post.job_id}/retry")
    assert early.status_code == 409 and "runs at its time" in early.json()["detail"]
    assert (await app.engine.get(post.job_id)).run_at == post.scheduled_for

    attempts: list[int] = []

    async def flaky(ctx) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RetryableJobError("HTTP 503", after_seconds=3600)

    app.engine.register_handler("test.flaky", flaky)
    job_id = (await app.engine.enqueue("test.flaky", queue="work")).job_id
    with trio.fail_after(10):
        while (await app.engine.get(job_id)).last_error is None:
            await trio.sleep(0.02)
    retried = await admin.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 200, retried.text
    with trio.fail_after(10):
        while attempts != [1, 2]:
            await trio.sleep(0.02)
