"""Duplicates over real HTTP: a post repeating the account, subreddit and title of a live one is
refused, titles compared as a person reads them (width, case, spacing), the same for single
requests, batches (against stored posts and within the batch) and edits."""

from __future__ import annotations

from tests.api.test_scheduled_posts import post_body


async def schedule(client, title: str) -> dict:
    response = await client.post("/api/scheduled-posts", json=post_body(title=title))
    assert response.status_code == 201, response.text
    return response.json()["posts"][0]


async def test_a_single_request_with_the_title_in_another_form_is_a_duplicate(api):
    first = await schedule(api.pro.client, "Ｔｈｅ  Big\u00a0News")
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(title="the big news"))
    assert response.status_code == 409, response.text
    assert response.json()["existingPostId"] == first["id"]


async def test_a_batch_item_repeating_a_stored_post_is_refused_naming_it(api):
    first = await schedule(api.pro.client, "Ｓｔｒａße closed")
    body = {"posts": [post_body(title="Something else"), post_body(title="STRASSE CLOSED")]}
    response = await api.pro.client.post("/api/scheduled-posts/batch", json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["index"] == 1 and str(first["id"]) in error["error"]
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert [post["id"] for post in listed] == [first["id"]]  # nothing of the batch was stored


async def test_a_batch_repeating_a_title_within_itself_is_refused(api):
    body = {"posts": [post_body(title="Weekly\u3000update"), post_body(title="ＷＥＥＫＬＹ update ")]}
    response = await api.pro.client.post("/api/scheduled-posts/batch", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"index": 1, "error": "The batch has this title for r/test twice", "field": "title"}]


async def test_single_and_batch_agree(api):
    """What a single request calls a duplicate, a batch does too, and the other way round."""
    await schedule(api.pro.client, "Ｏｎｅ Title")
    single = await api.pro.client.post("/api/scheduled-posts", json=post_body(title="one\u00a0title"))
    batch = await api.pro.client.post("/api/scheduled-posts/batch",
                                      json={"posts": [post_body(title="one\u00a0title")]})
    assert (single.status_code, batch.status_code) == (409, 422)
    assert str(single.json()["existingPostId"]) in batch.json()["errors"][0]["error"]


async def test_an_edit_into_another_posts_title_is_a_duplicate(api):
    first = await schedule(api.pro.client, "Launch day")
    second = await schedule(api.pro.client, "Something else")
    response = await api.pro.client.patch(f"/api/scheduled-posts/{second['id']}",
                                          json={"title": "ＬＡＵＮＣＨ\u00a0DAY"})
    assert response.status_code == 409, response.text
    assert response.json()["existingPostId"] == first["id"]
