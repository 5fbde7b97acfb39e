"""/api/scheduled-posts over real HTTP: scheduling, tiers, duplicates, listing, editing,
cancelling, and a post published through the sandbox exactly once."""

from __future__ import annotations

from datetime import timedelta

import trio

from thotto.engine.jobs import utcnow
from thotto.usecases.accounts import link_with_password


def at(seconds: float) -> str:
    return (utcnow() + timedelta(seconds=seconds)).isoformat()


def post_body(**fields) -> dict:
    body = {"subreddit": "test", "title": "Hello from the API", "text": "body", "scheduledFor": at(3600)}
    body.update(fields)
    return body


async def wait_for(client, post_id: int, status: str, timeout: float = 15.0) -> dict:
    with trio.fail_after(timeout):
        while (post := (await client.get(f"/api/scheduled-posts/{post_id}")).json())["status"] != status:
            await trio.sleep(0.05)
    return post


async def test_a_post_scheduled_a_moment_ahead_publishes_once_with_its_url(api, sandbox):
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=at(1)))
    assert response.status_code == 201, response.text
    (post,) = response.json()["posts"]
    assert post["status"] == "scheduled" and post["title"] == "Hello from the API"
    published = await wait_for(api.pro.client, post["id"], "published")
    assert published["redditUrl"].startswith(sandbox.url)
    with trio.fail_after(15):  # published once Reddit's id is recorded; the attempt ends just after
        while [a["outcome"] for a in published["attempts"]] != ["completed"]:
            assert [a["outcome"] for a in published["attempts"]] in (["running"], ["completed"]), published
            await trio.sleep(0.05)
            published = (await api.pro.client.get(f"/api/scheduled-posts/{post['id']}")).json()
    records = [p for p in await sandbox.posts() if p["title"] == "Hello from the API"]
    assert len(records) == 1 and published["redditId"] == records[0]["id"]


async def test_free_and_starter_may_not_schedule(api):
    for user in (api.free, api.starter):
        response = await user.client.post("/api/scheduled-posts", json=post_body())
        assert response.status_code == 403
        assert response.json() == {"error": "Scheduling requires Pro or Premium tier", "requiredTier": "pro"}


async def test_pro_schedules_up_to_7_days_and_premium_up_to_30(api):
    eight_days, thirty_one = at(8 * 86400), at(31 * 86400)
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=eight_days))
    assert response.status_code == 403 and response.json()["requiredTier"] == "premium"
    response = await api.premium.client.post("/api/scheduled-posts", json=post_body(scheduledFor=eight_days))
    assert response.status_code == 201
    response = await api.premium.client.post("/api/scheduled-posts",
                                             json=post_body(title="later", scheduledFor=thirty_one))
    assert response.status_code == 422 and response.json()["field"] == "scheduledFor"


async def test_a_time_in_the_past_or_without_offset_is_refused(api):
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=at(-60)))
    assert response.status_code == 422 and response.json()["field"] == "scheduledFor"
    response = await api.pro.client.post("/api/scheduled-posts",
                                         json=post_body(scheduledFor="2030-01-01T09:00:00"))
    assert response.status_code == 422 and response.json()["field"] == "scheduledFor"


async def test_a_duplicate_is_refused_naming_the_existing_post(api):
    first = (await api.pro.client.post("/api/scheduled-posts", json=post_body())).json()["posts"][0]
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(title="HELLO from the api"))
    assert response.status_code == 409
    assert response.json()["existingPostId"] == first["id"]
    assert str(first["id"]) in response.json()["detail"]


async def test_several_subreddits_make_one_post_each(api):
    response = await api.pro.client.post("/api/scheduled-posts",
                                         json=post_body(subreddit=None, subreddits=["test", "self_only"]))
    assert response.status_code == 201, response.text
    assert [p["subreddit"] for p in response.json()["posts"]] == ["test", "self_only"]
    response = await api.pro.client.post("/api/scheduled-posts",
                                         json=post_body(subreddit=None, subreddits=["a1", "A1"], title="x"))
    assert response.status_code == 422 and response.json()["field"] == "subreddits"


async def test_unknown_fields_and_bad_values_say_which_field(api):
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(colour="red"))
    assert response.status_code == 422 and "colour" in response.json()["detail"]
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(title="x" * 301))
    assert response.status_code == 422 and response.json()["field"] == "title"
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(kind="link"))
    assert response.status_code == 422 and response.json()["field"] == "url"
    response = await api.pro.client.post("/api/scheduled-posts", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"] == "Malformed JSON"


async def test_a_body_over_the_limit_is_refused(api):
    response = await api.pro.client.post("/api/scheduled-posts", content=b"x" * 1_100_000)
    assert response.status_code == 413


async def test_a_batch_is_all_or_nothing_with_errors_per_item(api):
    good = [post_body(title=f"batch {i}") for i in range(3)]
    bad = good + [post_body(title=""), post_body(title="batch 0")]
    response = await api.pro.client.post("/api/scheduled-posts/batch", json={"posts": bad})
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(3, "title")]
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert listed == []
    bad = good + [post_body(title="batch 0")]
    response = await api.pro.client.post("/api/scheduled-posts/batch", json={"posts": bad})
    assert response.status_code == 422 and response.json()["errors"][0]["index"] == 3
    response = await api.pro.client.post("/api/scheduled-posts/batch", json={"posts": good})
    assert response.status_code == 201 and len(response.json()["posts"]) == 3
    response = await api.pro.client.post("/api/scheduled-posts/batch", json={"posts": [good[0]] * 101})
    assert response.status_code == 422


async def test_listing_shows_own_posts_filtered_and_paginated(api):
    for hour in range(1, 6):
        await api.pro.client.post("/api/scheduled-posts", json=post_body(title=f"t{hour}", scheduledFor=at(hour * 3600)))
    await api.premium.client.post("/api/scheduled-posts", json=post_body(title="someone else's"))
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.pro.client.get("/api/scheduled-posts", params=params)).json()
        seen += [post["title"] for post in page["posts"]]
        if not (cursor := page["nextCursor"]):
            break
    assert seen == ["t1", "t2", "t3", "t4", "t5"]
    window = {"from": at(1.5 * 3600), "to": at(3.5 * 3600), "status": "scheduled"}
    page = (await api.pro.client.get("/api/scheduled-posts", params=window)).json()
    assert [post["title"] for post in page["posts"]] == ["t2", "t3"]
    response = await api.pro.client.get("/api/scheduled-posts", params={"limit": 0})
    assert response.status_code == 422 and response.json()["field"] == "limit"
    response = await api.pro.client.get("/api/scheduled-posts", params={"status": "sleeping"})
    assert response.status_code == 422


async def test_the_cached_list_follows_changes(api):
    assert (await api.pro.client.get("/api/scheduled-posts")).json()["posts"] == []
    created = (await api.pro.client.post("/api/scheduled-posts", json=post_body())).json()["posts"][0]
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert [post["id"] for post in listed] == [created["id"]]
    await api.pro.client.delete(f"/api/scheduled-posts/{created['id']}")
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert [post["status"] for post in listed] == ["cancelled"]


async def test_editing_and_rescheduling_while_scheduled(api):
    post = (await api.pro.client.post("/api/scheduled-posts", json=post_body())).json()["posts"][0]
    later = at(7200)
    response = await api.pro.client.patch(f"/api/scheduled-posts/{post['id']}",
                                          json={"title": "Edited", "scheduledFor": later, "flairText": None})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["title"] == "Edited" and changed["scheduledFor"][:19] == later[:19]
    job = await api.app.engine.get((await api.app.store.get_post(post["id"])).job_id)
    assert job.run_at.isoformat()[:19] == later[:19]
    response = await api.pro.client.patch(f"/api/scheduled-posts/{post['id']}", json={"nsfw": "yes"})
    assert response.status_code == 422 and response.json()["field"] == "nsfw"
    response = await api.pro.client.patch(f"/api/scheduled-posts/{post['id']}", json={"scheduledFor": at(-5)})
    assert response.status_code == 422


async def test_a_published_post_cannot_be_edited_or_cancelled(api):
    post = (await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=at(0.5)))).json()["posts"][0]
    await wait_for(api.pro.client, post["id"], "published")
    await trio.sleep(0.2)  # the job's own outcome settles just after the publication is recorded
    response = await api.pro.client.patch(f"/api/scheduled-posts/{post['id']}", json={"title": "late"})
    assert response.status_code == 409
    response = await api.pro.client.delete(f"/api/scheduled-posts/{post['id']}")
    assert response.status_code == 409


async def test_cancel_own_post_and_someone_elses_is_404(api):
    post = (await api.pro.client.post("/api/scheduled-posts", json=post_body())).json()["posts"][0]
    assert (await api.premium.client.delete(f"/api/scheduled-posts/{post['id']}")).status_code == 404
    assert (await api.premium.client.get(f"/api/scheduled-posts/{post['id']}")).status_code == 404
    response = await api.pro.client.delete(f"/api/scheduled-posts/{post['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert (await api.pro.client.get("/api/scheduled-posts/999999")).status_code == 404
    assert (await api.pro.client.get("/api/scheduled-posts/abc")).status_code == 404


async def test_an_account_must_be_linked_and_named_when_there_are_several(api):
    await link_with_password(api.app.scheduler, api.pro.id, "second_acct", "pw")
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body())
    assert response.status_code == 422 and response.json()["field"] == "account"
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(account="second_acct"))
    assert response.status_code == 201
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(account="nobody_here", title="x"))
    assert response.status_code == 422 and "nobody_here" in response.json()["detail"]


async def test_optimal_times_are_ranked_slots(api):
    response = await api.pro.client.post("/api/scheduled-posts/optimal-times", json={"subreddit": "test"})
    assert response.status_code == 200, response.text
    times = response.json()
    assert times["subreddit"] == "test" and times["source"] == "community"
    scores = [slot["score"] for slot in times["slots"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == 100
    assert all(0 <= slot["weekday"] <= 6 and 0 <= slot["hour"] <= 23 for slot in times["slots"])
    response = await api.pro.client.post("/api/scheduled-posts/optimal-times", json={"subreddit": "r/bad name"})
    assert response.status_code == 422 and response.json()["field"] == "subreddit"


async def test_a_recurring_post_names_a_real_time_zone(api):
    recurrence = {"frequency": "weekly", "timezone": "Mars/Olympus", "count": 3}
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(recurrence=recurrence))
    assert response.status_code == 422 and response.json()["field"] == "recurrence.timezone"
    recurrence["timezone"] = "Europe/Berlin"
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(recurrence=recurrence))
    assert response.status_code == 201 and response.json()["posts"][0]["recurrence"]["count"] == 3


async def test_the_cached_list_shows_a_publication_at_once(api):
    post = (await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=at(0.5)))).json()["posts"][0]
    assert (await api.pro.client.get("/api/scheduled-posts")).json()["posts"][0]["status"] == "scheduled"
    published = await wait_for(api.pro.client, post["id"], "published")
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert [(p["status"], p["redditUrl"]) for p in listed] == [("published", published["redditUrl"])]


async def test_the_cached_list_shows_a_failure_once_it_is_settled(api, sandbox):
    post = (await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=at(1)))).json()["posts"][0]
    assert (await api.pro.client.get("/api/scheduled-posts")).json()["posts"][0]["status"] == "scheduled"
    await sandbox.control("POST", "/_sandbox/subreddits", json=[{"name": "test", "state": "banned"}])
    failed = await wait_for(api.pro.client, post["id"], "failed")
    assert "SUBREDDIT_NOEXIST" in failed["error"]
    with trio.fail_after(5):  # the monitor evicts the cached list once the failure is settled
        while (await api.pro.client.get("/api/scheduled-posts")).json()["posts"][0]["status"] != "failed":
            await trio.sleep(0.05)
