"""The reads Thotto needs, decoded into typed results, over HTTP against the sandbox."""

import pytest

from thotto.reddit import LinkFlair, PostRequirements, Submission, SubredditAbout
from thotto.reddit.sandbox import TEST_FLAIRS


async def test_me(sandbox, alice):
    me = await alice.me()
    assert me.name == "alice" and me.id


async def test_submitted_lists_the_accounts_posts_newest_first(sandbox, reddit, alice):
    bob = reddit.account_from_password("bob_poster", "pw")
    for number in range(3):
        await alice.submit("test", f"Alice {number}", text="x")
    await bob.submit("test", "Bob's", url="https://example.com/bob")

    posts = await alice.submitted()
    assert [post.title for post in posts] == ["Alice 2", "Alice 1", "Alice 0"]
    assert all(isinstance(post, Submission) and post.author == "alice" for post in posts)
    assert posts[0].is_self and posts[0].subreddit == "test" and posts[0].name == f"t3_{posts[0].id}"
    assert posts[0].created_utc >= posts[-1].created_utc

    assert [post.title for post in await alice.submitted(limit=2)] == ["Alice 2", "Alice 1"]
    others = await alice.submitted("bob_poster")
    assert [(post.title, post.url, post.is_self) for post in others] == \
        [("Bob's", "https://example.com/bob", False)]


async def test_submitted_carries_what_reconciliation_compares(sandbox, alice):
    result = await alice.submit("test", "Flaired", text="x", nsfw=True, flair_id=TEST_FLAIRS[1].id)
    [post] = await alice.submitted()
    assert (post.id, post.over_18, post.link_flair_template_id, post.link_flair_text) == \
        (result.id, True, TEST_FLAIRS[1].id, "News")
    assert result.url.endswith(post.permalink)


async def test_find_submission_matches_subreddit_title_and_time(sandbox, alice):
    first = await alice.submit("test", "Same title", text="x")
    [post] = await alice.submitted()
    assert (await alice.find_submission("TEST", "Same title", since=post.created_utc)).id == first.id
    assert await alice.find_submission("test", "Same title", since=post.created_utc + 1) is None
    assert await alice.find_submission("nsfw_sub", "Same title", since=0) is None
    second = await alice.submit("test", "Same title", text="x")
    assert second.id != first.id
    # Several matches: the earliest is the one the first attempt made.
    assert (await alice.find_submission("test", "Same title", since=0)).id == first.id


async def test_find_submission_looks_past_the_first_page_of_a_busy_account(sandbox, alice):
    # Found by the chaos suite: a post accepted before a crash had 100+ newer posts by the time
    # it was looked for, fell off the first page, and was submitted a second time.
    first = await alice.submit("test", "Before the crash", text="x")
    for number in range(120):
        await alice.submit("test", f"Backlog {number}", text="x")
    found = await alice.find_submission("test", "Before the crash", since=0)
    assert found is not None and found.id == first.id


async def test_submitted_of_an_unknown_user_is_permanent(sandbox, alice):
    from thotto.errors import RedditPermanent

    with pytest.raises(RedditPermanent) as caught:
        await alice.submitted("nobody_here")
    assert caught.value.status == 404


async def test_post_requirements(sandbox, alice):
    required = await alice.post_requirements("flair_required")
    assert isinstance(required, PostRequirements) and required.is_flair_required
    assert not (await alice.post_requirements("test")).is_flair_required
    assert (await alice.post_requirements("links_only")).body_restriction_policy == "notAllowed"


async def test_link_flairs(sandbox, alice):
    flairs = await alice.link_flairs("test")
    assert flairs == [LinkFlair(id=flair.id, text=flair.text, text_editable=flair.text_editable)
                      for flair in TEST_FLAIRS]
    assert await alice.link_flairs("self_only") == []


async def test_about(sandbox, alice):
    about = await alice.about("test")
    assert isinstance(about, SubredditAbout)
    assert (about.display_name, about.subreddit_type, about.submission_type, about.over18,
            about.subscribers) == ("test", "public", "any", False, 12000)
    assert (await alice.about("nsfw_sub")).over18
    assert (await alice.about("self_only")).submission_type == "self"
    assert (await alice.about("no_images")).allow_images is False


async def test_subreddits_set_through_the_control_api(sandbox, alice):
    await sandbox.control("POST", "/_sandbox/subreddits", json=[
        {"name": "BrandNew", "submission_type": "link", "subscribers": 7, "flair_required": True,
         "flairs": [{"id": "f1", "text": "Only"}]}])
    about = await alice.about("brandnew")
    assert (about.display_name, about.submission_type, about.subscribers) == ("BrandNew", "link", 7)
    assert (await alice.post_requirements("BrandNew")).is_flair_required
    await alice.submit("BrandNew", "Link", url="https://example.com", flair_id="f1")
    # Replacing a subreddit by name (any case) changes its rules.
    await sandbox.control("POST", "/_sandbox/subreddits", json=[{"name": "brandnew", "state": "private"}])
    from thotto.errors import RedditPermanent

    with pytest.raises(RedditPermanent):
        await alice.about("BrandNew")


async def test_post_url_of_a_listed_post_matches_the_submit_result(sandbox, reddit, alice):
    result = await alice.submit("test", "Where am I", text="x")
    [post] = await alice.submitted()
    assert reddit.post_url(post) == result.url
