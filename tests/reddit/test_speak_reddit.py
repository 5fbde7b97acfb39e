"""Speaking Reddit as Reddit does (issue #16): each request the client makes where Reddit is
stricter than a kind sandbox would be, against the sandbox made as strict as Reddit there."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import msgspec
import pytest

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto import __version__
from thotto.config import Settings
from thotto.errors import RedditOutcomeUnknown, RedditPermanent, RedditRetryable
from thotto.reddit import RedditClient, RedditConfig
from thotto.reddit.sandbox import TEST_FLAIRS
from thotto.scheduler.community import fetch_rules, rule_problems
from thotto.scheduler.records import PostContent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
MOD_ONLY = {"id": "6c4b3e7a-0000-4000-8000-0000000000ff", "text": "Announcement", "mod_only": True}


def now() -> datetime:
    return NOW


async def strict_flairs(sandbox, name="flairs", **rules) -> None:
    """A subreddit whose flairs include a moderator-only one; u/the_mod moderates it."""
    flairs = [msgspec.to_builtins(flair) for flair in TEST_FLAIRS] + [MOD_ONLY]
    await sandbox.control("POST", "/_sandbox/subreddits", json=[
        {"name": name, "flairs": flairs, "moderators": ["the_mod"], **rules}])


async def raw_token(sandbox, username: str) -> str:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.post("/api/v1/access_token", auth=(CLIENT_ID, CLIENT_SECRET), data={
            "grant_type": "password", "username": username, "password": f"{username}-password"})
    return response.json()["access_token"]


# --- flair discovery ---------------------------------------------------------------------------


async def test_the_moderators_flair_endpoint_refuses_ordinary_users(sandbox):
    await strict_flairs(sandbox)
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        for user, status in (("alice", 403), ("the_mod", 200)):
            token = await raw_token(sandbox, user)
            response = await http.get("/r/flairs/api/link_flair_v2",
                                      headers={"Authorization": f"bearer {token}"})
            assert response.status_code == status, user


async def test_an_ordinary_user_learns_the_flairs_it_may_pick(sandbox, alice):
    await strict_flairs(sandbox, flair_required=True, title_min=5)
    flairs = await alice.link_flairs("flairs")
    assert [flair.id for flair in flairs] == [flair.id for flair in TEST_FLAIRS]  # no mod-only one
    assert [flair.text_editable for flair in flairs] == [True, False]
    rules = await fetch_rules(alice, "flairs", now)
    # Every rule is kept: about page, post requirements and the flairs this user may pick.
    assert (rules.subreddit_type, rules.flair_required, rules.title_min_length) == ("public", True, 5)
    assert rules.flair_ids == [flair.id for flair in TEST_FLAIRS]
    (problem,) = rule_problems(PostContent(subreddit="flairs", title="Hello", flair_id=MOD_ONLY["id"]),
                               rules)
    assert problem[0] == "flair_id"


async def test_a_subreddit_where_users_pick_no_flair_keeps_its_other_rules(sandbox, alice):
    await strict_flairs(sandbox, users_assign_flair=False, title_min=5)
    assert (await alice.about("flairs")).can_assign_link_flair is False
    assert await alice.link_flairs("flairs") == []
    rules = await fetch_rules(alice, "flairs", now)
    assert (rules.title_min_length, rules.flair_ids) == (5, [])


async def test_a_moderator_only_flair_picked_by_an_ordinary_user_is_an_invalid_flair(sandbox, alice):
    await strict_flairs(sandbox)
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("flairs", "Mine", text="x", flair_id=MOD_ONLY["id"])
    assert (caught.value.error_type, caught.value.field, caught.value.status) == \
        ("INVALID_FLAIR", "flair_id", 400)
    assert await sandbox.posts() == []


# --- flair text --------------------------------------------------------------------------------


async def test_reddit_refuses_flair_text_without_a_template(sandbox):
    token = await raw_token(sandbox, "alice")
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.post("/api/submit", headers={"Authorization": f"bearer {token}"}, data={
            "api_type": "json", "sr": "test", "title": "t", "kind": "self", "text": "x",
            "flair_text": "Discussion"})
    assert response.status_code == 400
    assert await sandbox.posts() == []


async def test_flair_text_alone_is_refused_before_sending_and_meets_no_requirement(sandbox, alice):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("flair_required", "Text only", text="x", flair_text="Discussion")
    assert (caught.value.error_type, caught.value.field) == ("FLAIR_TEXT_WITHOUT_ID", "flair_text")
    assert alice.token_requests == 0 and await sandbox.posts() == []
    rules = await fetch_rules(alice, "flair_required", now)
    problems = rule_problems(PostContent(subreddit="flair_required", title="Hi", text="x",
                                         flair_text="Discussion"), rules)
    assert [field for field, _ in problems] == ["flair_text"]
    assert "template id" in problems[0][1]


async def test_flair_text_of_a_template_that_is_not_editable_is_the_templates(sandbox, alice):
    news = TEST_FLAIRS[1]  # not editable
    await alice.submit("test", "News", text="x", flair_id=news.id, flair_text="My own words")
    (post,) = await sandbox.posts()
    assert post["flair_text"] == news.text


# --- HTML "blocked" pages and other 403/404s without a reason ----------------------------------


async def test_an_html_403_is_retryable_not_permanent(sandbox, alice):
    await sandbox.faults(errors=[{"status": 403, "html": True, "count": 1, "path": "/r/test/about"}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.about("test")
    assert (caught.value.error_type, caught.value.status) == ("BLOCKED", 403)
    assert (await alice.about("test")).display_name == "test"  # it passed


async def test_an_html_403_on_submit_is_retryable_and_posted_nothing(sandbox, alice):
    await alice.me()
    await sandbox.faults(errors=[{"status": 403, "html": True, "count": 1, "path": "/api/submit"}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.submit("test", "Blocked", text="x")
    assert not isinstance(caught.value, RedditOutcomeUnknown)  # the edge refused: nothing was done
    assert await sandbox.posts() == []


@pytest.mark.parametrize("html", [True, False])
async def test_a_403_without_a_reason_on_about_does_not_close_the_subreddit(sandbox, alice, html):
    await sandbox.faults(errors=[{"status": 403, "html": html, "count": 1, "path": "/r/test/about"}])
    with pytest.raises((RedditRetryable, RedditPermanent)):
        await fetch_rules(alice, "test", now)  # unknown (scheduling goes on without them)...
    rules = await fetch_rules(alice, "test", now)  # ...never recorded as closed
    assert rules.subreddit_type == "public" and rules.allows_self


# --- SUBREDDIT_NOEXIST for a subreddit that exists ---------------------------------------------


async def test_a_transient_subreddit_noexist_is_tried_again(sandbox, reddit):
    reddit.config = msgspec.structs.replace(reddit.config, subreddit_noexist_pause=0.01)
    alice = reddit.account_from_password("alice", "alice-password")
    await sandbox.faults(submit_errors=[{"type": "SUBREDDIT_NOEXIST", "count": 1}])
    result = await alice.submit("test", "Exists", text="x")
    (post,) = await sandbox.posts()
    assert post["id"] == result.id
    # A subreddit that really does not exist is still refused for good.
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("no_such_place", "Nowhere", text="x")
    assert caught.value.error_type == "SUBREDDIT_NOEXIST"


async def test_a_persistent_subreddit_noexist_for_an_existing_subreddit_is_retryable(sandbox, reddit):
    reddit.config = msgspec.structs.replace(reddit.config, subreddit_noexist_pause=0.01)
    alice = reddit.account_from_password("alice", "alice-password")
    await sandbox.faults(submit_errors=[{"type": "SUBREDDIT_NOEXIST", "count": 5}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.submit("test", "Exists", text="x")
    assert caught.value.error_type == "SUBREDDIT_NOEXIST"
    assert not isinstance(caught.value, RedditOutcomeUnknown)
    assert await sandbox.posts() == []


# --- what every submission carries -------------------------------------------------------------


async def test_the_user_agent_names_who_is_responsible(sandbox, tmp_path):
    # The installation's own username when configured, else the account posting.
    for configured in (None, "the_owner"):
        settings = Settings(data_dir=str(tmp_path), reddit_url=sandbox.url, reddit_client_id=CLIENT_ID,
                            reddit_client_secret=CLIENT_SECRET, reddit_user_agent_username=configured)
        async with RedditClient(RedditConfig.from_settings(settings)) as reddit:
            await reddit.account_from_password("alice", "alice-password").submit(
                "test", f"UA {configured}", text="x")
    agents = [post["user_agent"] for post in await sandbox.posts()]
    assert agents == [f"python:thotto:{__version__} (by /u/alice)",
                      f"python:thotto:{__version__} (by /u/the_owner)"]


async def test_submissions_ask_reddit_to_validate_them(sandbox, alice):
    await alice.submit("test", "Validated", text="x")
    (post,) = await sandbox.posts()
    assert post["validate_on_submit"] is True


async def test_a_long_profile_subreddit_is_a_subreddit(sandbox, alice):
    profile = "u_" + "a_rather_long_name_2"  # 22 characters: a 20-character username
    await sandbox.control("POST", "/_sandbox/subreddits", json=[{"name": profile}])
    content = msgspec.convert({"subreddit": profile, "title": "On my profile"}, PostContent)
    await alice.submit(content.subreddit, content.title, text="x")
    (post,) = await sandbox.posts()
    assert post["subreddit"] == profile


# --- titles as Reddit keeps them ---------------------------------------------------------------


async def test_reddit_trims_titles_and_reconciliation_still_finds_the_post(sandbox, alice):
    title = "  Spaced out title \t"
    result = await alice.submit("test", title, text="x")
    (post,) = await sandbox.posts()
    assert post["title"] == "Spaced out title"
    found = await alice.find_submission("test", title, since=post["created_utc"] - 5)
    assert found is not None and found.id == result.id
