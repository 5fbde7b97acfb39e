"""No input ends in a 500, over real HTTP: every edge below once did (or was stored as it came),
and each is now a 4xx with ``{error, detail, field}`` naming the field to fix."""

from __future__ import annotations

import base64

import pytest

from tests.api.conftest import api_settings, serving
from tests.api.test_scheduled_posts import at, post_body

EARLY_EDGE = "0001-01-01T00:00:00+01:00"  # year 0 in UTC
LATE_EDGE = "9999-12-31T23:59:59-01:00"  # year 10000 in UTC


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request, sandbox, tmp_path):
    """The API on each store: some inputs only broke one of them (Postgres refuses NUL in text,
    SQLite integers past 64 bits)."""
    database = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("postgres_dsn")}
    async with serving(api_settings(tmp_path, sandbox.url, **database)) as api:
        yield api


def refused(response, field: str | None, status: int = 422) -> dict:
    """The response is a ``status`` error naming ``field``, with a detail saying what to fix."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] and body["detail"]
    assert body.get("field") == field, body
    return body


def forged_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


# --- cursors and query parameters ------------------------------------------------------------------


@pytest.mark.parametrize("cursor", [
    forged_cursor("99999999999999999999999:1"), forged_cursor("1:99999999999999999999999"),
], ids=["time-overflows", "id-overflows"])
async def test_a_forged_cursor_that_overflows_is_refused(api, cursor):
    refused(await api.pro.client.get("/api/scheduled-posts", params={"cursor": cursor}), "cursor")


@pytest.mark.parametrize("edge", [EARLY_EDGE, LATE_EDGE])
@pytest.mark.parametrize("bound", ["from", "to"])
async def test_a_listing_bound_at_the_edge_of_the_calendar_is_refused(api, bound, edge):
    body = refused(await api.pro.client.get("/api/scheduled-posts", params={bound: edge}), bound)
    assert "9999-12-31T23:59:59Z" in body["detail"]  # says what is allowed


# --- dates at the edge of the calendar ---------------------------------------------------------------


@pytest.mark.parametrize("edge", [EARLY_EDGE, LATE_EDGE])
async def test_scheduled_for_at_the_edge_of_the_calendar_is_refused(api, edge):
    response = await api.pro.client.post("/api/scheduled-posts", json=post_body(scheduledFor=edge))
    refused(response, "scheduledFor")


@pytest.mark.parametrize("edge", [EARLY_EDGE, LATE_EDGE])
async def test_recurrence_until_at_the_edge_of_the_calendar_is_refused(api, edge):
    body = post_body(recurrence={"frequency": "daily", "until": edge})
    refused(await api.pro.client.post("/api/scheduled-posts", json=body), "recurrence.until")


@pytest.mark.parametrize("edge", [EARLY_EDGE, LATE_EDGE])
async def test_rescheduling_to_the_edge_of_the_calendar_is_refused(api, edge):
    created = await api.pro.client.post("/api/scheduled-posts", json=post_body())
    post_id = created.json()["posts"][0]["id"]
    response = await api.pro.client.patch(f"/api/scheduled-posts/{post_id}", json={"scheduledFor": edge})
    refused(response, "scheduledFor")


async def test_a_batch_item_at_the_edge_of_the_calendar_is_named_by_index(api):
    body = {"posts": [post_body(title="fine"), post_body(title="edge", scheduledFor=LATE_EDGE)]}
    response = await api.pro.client.post("/api/scheduled-posts/batch", json=body)
    (error,) = refused(response, None)["errors"]
    assert (error["index"], error["field"]) == (1, "scheduledFor")


@pytest.mark.parametrize("until", [
    pytest.param(lambda: "2020-01-01T00:00:00Z", id="in-the-past"),
    pytest.param(lambda: at(1800), id="before-the-first-occurrence"),
])
async def test_a_recurrence_that_ends_before_it_starts_is_refused(api, until):
    body = post_body(scheduledFor=at(3600), recurrence={"frequency": "daily", "until": until()})
    refused(await api.pro.client.post("/api/scheduled-posts", json=body), "recurrence.until")


# --- patterns match the whole value ----------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field"), [
    ({"subreddit": "test\n"}, "subreddit"),
    ({"recurrence": {"frequency": "daily\n"}}, "recurrence.frequency"),
], ids=["subreddit", "frequency"])
async def test_a_scheduling_field_with_a_trailing_newline_is_refused(api, fields, field):
    refused(await api.pro.client.post("/api/scheduled-posts", json=post_body(**fields)), field)


async def test_names_with_a_trailing_newline_are_refused(api):
    body = refused(await api.admin.client.post("/api/users", json={"name": "bob\n"}), "name")
    document = (await api.admin.client.get("/openapi.json")).json()
    pattern = document["components"]["schemas"]["UserRequest"]["properties"]["name"]["pattern"]
    assert f"'{pattern}'" in body["detail"]  # the pattern as the document spells it
    refused(await api.pro.client.post("/api/tokens", json={"name": "laptop\n"}), "name")
    refused(await api.pro.client.post("/api/scheduled-posts/optimal-times", json={"subreddit": "test\n"}),
            "subreddit")


# --- titles Reddit would refuse ----------------------------------------------------------------------


@pytest.mark.parametrize("title", [
    pytest.param("   ", id="blank"),
    pytest.param("\u3000\u00a0", id="blank-unicode-spaces"),
    pytest.param("\u200b\u200b", id="zero-width-only"),
    pytest.param(" \u2060\ufeff\u200d ", id="invisible-only"),
    pytest.param("Hello\nworld", id="newline"),
    pytest.param("Hello\u0007world", id="bell"),
    pytest.param("Hello\tworld", id="tab"),
    pytest.param("Hello\u2028world", id="line-separator"),
])
async def test_a_title_reddit_would_refuse_is_refused_when_scheduling(api, title):
    refused(await api.pro.client.post("/api/scheduled-posts", json=post_body(title=title)), "title")
    batch = await api.pro.client.post("/api/scheduled-posts/batch", json={"posts": [post_body(title=title)]})
    assert refused(batch, None)["errors"][0]["field"] == "title"


async def test_an_edit_to_a_blank_title_is_refused(api):
    created = await api.pro.client.post("/api/scheduled-posts", json=post_body())
    post_id = created.json()["posts"][0]["id"]
    refused(await api.pro.client.patch(f"/api/scheduled-posts/{post_id}", json={"title": "\u200b "}), "title")


# --- link urls -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param("http://[::1/page", id="broken-ipv6"),
    pytest.param("https://example.com:99999999/", id="port-out-of-range"),
    pytest.param("https://exa\u0000mple.com/", id="nul"),
    pytest.param("https://example.com/a page", id="space"),
])
async def test_a_link_url_that_is_no_address_is_refused(api, url):
    body = post_body(kind="link", text=None, url=url)
    refused(await api.pro.client.post("/api/scheduled-posts", json=body), "url")


# --- text no store can keep -----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field"), [
    ({"text": "a\u0000b"}, "text"),
    ({"flairText": "a\u0000b"}, "flairText"),
    ({"flairText": "two\nlines"}, "flairText"),
], ids=["text-nul", "flair-text-nul", "flair-text-newline"])
async def test_control_characters_no_store_or_reddit_takes_are_refused(api, fields, field):
    refused(await api.pro.client.post("/api/scheduled-posts", json=post_body(**fields)), field)


async def test_an_edit_to_text_with_nul_is_refused(api):
    created = await api.pro.client.post("/api/scheduled-posts", json=post_body())
    post_id = created.json()["posts"][0]["id"]
    refused(await api.pro.client.patch(f"/api/scheduled-posts/{post_id}", json={"text": "\u0000"}), "text")


# --- deeply nested JSON ----------------------------------------------------------------------------


async def test_deeply_nested_json_in_a_batch_item_is_refused_naming_it(api):
    nested = "[" * 100_000 + "]" * 100_000
    body = '{"posts": [{"title": "fine"}, {"title": ' + nested + "}]}"
    response = await api.pro.client.post("/api/scheduled-posts/batch", content=body,
                                         headers={"content-type": "application/json"})
    refused(response, "posts[1].title")
    response = await api.pro.client.post("/api/scheduled-posts/batch", content='{"posts": [' + nested + "]}",
                                         headers={"content-type": "application/json"})
    refused(response, "posts[0][0]")
