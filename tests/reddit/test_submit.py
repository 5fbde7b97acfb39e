"""Submitting over HTTP: each kind, options passed through to the record, validation, refusals."""

import httpx
import pytest

from tests.reddit.conftest import make_config
from thotto.engine.errors import DeferJob, PermanentJobError, RetryableJobError
from thotto.errors import RedditMediaPending, RedditOutcomeUnknown, RedditPermanent
from thotto.reddit import RedditClient
from thotto.reddit.sandbox import TEST_FLAIRS

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def only_post(sandbox) -> dict:
    posts = await sandbox.posts()
    assert len(posts) == 1, posts
    return posts[0]


async def test_self_post(sandbox, alice):
    result = await alice.submit("test", "Hello from Thotto", text="Body *markdown*")
    post = await only_post(sandbox)
    assert (post["id"], post["name"]) == (result.id, result.name)
    assert result.name == f"t3_{result.id}"
    assert result.url == f"{sandbox.url}/r/test/comments/{result.id}/hello_from_thotto/"
    assert (post["kind"], post["subreddit"], post["title"], post["author"], post["text"]) == \
        ("self", "test", "Hello from Thotto", "alice", "Body *markdown*")
    assert post["created_utc"] > 1.6e9


async def test_title_only_self_post(sandbox, alice):
    await alice.submit("test", "Just a title")
    assert (await only_post(sandbox))["text"] == ""


async def test_link_post(sandbox, alice):
    result = await alice.submit("test", "A link", url="https://example.com/article?id=1")
    post = await only_post(sandbox)
    assert (post["kind"], post["url"], post["id"]) == ("link", "https://example.com/article?id=1", result.id)


async def test_image_post_uploads_then_submits(sandbox, alice):
    result = await alice.submit("test", "A picture", image=PNG, image_name="cat.png")
    post = await only_post(sandbox)
    assert post["kind"] == "image" and post["id"] == result.id
    assert result.url == f"{sandbox.url}{post['permalink']}"
    # The post points at the uploaded asset, and the bytes arrived intact.
    assert post["url"].startswith(f"{sandbox.url}/_sandbox/media/") and post["url"].endswith("/cat.png")
    async with httpx.AsyncClient() as http:
        assert (await http.get(post["url"])).content == PNG


async def test_options_are_passed_through(sandbox, alice):
    flair = TEST_FLAIRS[0]
    await alice.submit("test", "Options", text="x", nsfw=True, spoiler=True, flair_id=flair.id,
                       flair_text="My own text", send_replies=False)
    post = await only_post(sandbox)
    assert (post["nsfw"], post["spoiler"], post["flair_id"], post["flair_text"], post["send_replies"]) \
        == (True, True, flair.id, "My own text", False)


async def test_defaults_are_sent_too(sandbox, alice):
    await alice.submit("test", "Defaults", text="x", flair_id=TEST_FLAIRS[1].id)
    post = await only_post(sandbox)
    assert (post["nsfw"], post["spoiler"], post["send_replies"]) == (False, False, True)
    assert post["flair_text"] == TEST_FLAIRS[1].text  # the template's own text


@pytest.mark.parametrize("subreddit, title, options, field", [
    ("test", "", {}, "title"),
    ("test", "   ", {}, "title"),
    ("test", "x" * 301, {}, "title"),
    ("test", "ok", {"flair_text": "f" * 65, "flair_id": TEST_FLAIRS[0].id}, "flair_text"),
    ("test", "ok", {"flair_id": "i" * 37}, "flair_id"),
    ("test", "ok", {"url": "ftp://example.com/file"}, "url"),
    ("test", "ok", {"url": "not a url"}, "url"),
    ("test", "ok", {"text": "t", "url": "https://example.com"}, "kind"),
    ("test", "ok", {"image": b""}, "image"),
    ("test", "ok", {"image": PNG, "image_name": "notes.txt"}, "image"),
    ("r/no such", "ok", {}, "sr"),
])
async def test_invalid_posts_are_refused_before_anything_is_sent(sandbox, alice, subreddit, title,
                                                                 options, field):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit(subreddit, title, **options)
    assert caught.value.field == field
    assert isinstance(caught.value, PermanentJobError)
    assert alice.token_requests == 0  # not even a token was asked for
    assert await sandbox.posts() == []


async def test_limits_are_inclusive(sandbox, alice):
    await alice.submit("test", "x" * 300, flair_id=TEST_FLAIRS[0].id, flair_text="f" * 64)
    assert len((await only_post(sandbox))["title"]) == 300


@pytest.mark.parametrize("subreddit, options, error_type, field", [
    ("does_not_exist", {"text": "x"}, "SUBREDDIT_NOEXIST", "sr"),
    ("banned_sub", {"text": "x"}, "SUBREDDIT_NOEXIST", "sr"),
    ("private_sub", {"text": "x"}, "SUBREDDIT_NOTALLOWED", "sr"),
    ("links_only", {"text": "x"}, "NO_SELFS", "sr"),
    ("self_only", {"url": "https://example.com"}, "NO_LINKS", "sr"),
    ("self_only", {"image": PNG}, "NO_LINKS", "sr"),
    ("no_images", {"image": PNG}, "NO_IMAGES", "sr"),
    ("flair_required", {"text": "x"}, "SUBMIT_VALIDATION_FLAIR_REQUIRED", "flair"),
    ("test", {"text": "x", "flair_id": "00000000-0000-4000-8000-00000000dead"}, "INVALID_FLAIR",
     "flair_id"),
])
async def test_reddit_refusals_are_permanent_with_reddits_message(sandbox, alice, subreddit, options,
                                                                  error_type, field):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit(subreddit, "A post", **options)
    error = caught.value
    assert (error.error_type, error.field) == (error_type, field)
    assert error.message  # Reddit's words, for the user
    assert f"r/{subreddit}" in str(error)
    assert await sandbox.posts() == []


async def test_invalid_flair_is_http_400(sandbox, alice):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("test", "A post", flair_id="00000000-0000-4000-8000-00000000dead")
    assert caught.value.status == 400


async def test_required_flair_satisfied(sandbox, alice):
    await alice.submit("flair_required", "With flair", text="x", flair_id=TEST_FLAIRS[1].id)
    assert (await only_post(sandbox))["flair_text"] == "News"


async def test_already_submitted_link_unless_resubmit(sandbox, alice):
    url = "https://example.com/once"
    await alice.submit("test", "First", url=url)
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("test", "Second", url=url, resubmit=False)
    assert (caught.value.error_type, caught.value.field) == ("ALREADY_SUB", "url")
    await alice.submit("test", "Third", url=url)  # resubmit=True is the default
    assert [post["title"] for post in await sandbox.posts()] == ["First", "Third"]


async def test_subreddit_names_are_case_insensitive_and_may_carry_r_slash(sandbox, alice):
    await alice.submit("r/TEST", "Case", text="x")
    assert (await only_post(sandbox))["subreddit"] == "test"


async def test_image_post_is_found_once_reddit_has_processed_it(sandbox, alice):
    await sandbox.configure(media_delay=0.1)  # the client looks after 0, 0.05, 0.15, 0.35 s
    result = await alice.submit("test", "Processing", image=PNG)
    assert (await only_post(sandbox))["id"] == result.id


async def test_image_post_still_processing_is_pending_not_an_outage(sandbox, alice):
    # Reddit answers media posts without naming the post; if it does not show up in the
    # listing the client cannot claim success: the caller defers (no breaker counts a
    # deferral) and looks for the post before submitting anything again.
    await sandbox.configure(media_delay=30)
    with pytest.raises(RedditMediaPending) as caught:
        await alice.submit("test", "Processing", image=PNG)
    error = caught.value
    assert error.error_type == "MEDIA_PROCESSING" and isinstance(error, DeferJob)
    assert not isinstance(error, RetryableJobError)
    assert len(await sandbox.posts()) == 1


async def test_failing_to_look_up_an_accepted_image_post_is_an_unknown_outcome(sandbox, alice):
    await alice.me()
    await sandbox.faults(errors=[{"status": 503, "path": "/user/"}])
    with pytest.raises(RedditOutcomeUnknown) as caught:
        await alice.submit("test", "Processing", image=PNG)
    assert caught.value.error_type == "MEDIA_LOOKUP_FAILED"
    assert len(await sandbox.posts()) == 1


async def test_media_lease_is_protocol_relative_and_resolved_against_the_api_host(sandbox):
    # Reddit's lease action is "//bucket-host"; the client must add the API's scheme.
    transport_requests: list[httpx.Request] = []

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request):
            transport_requests.append(request)
            return await super().handle_async_request(request)

    async with RedditClient(make_config(sandbox.url), transport=Recording()) as reddit:
        account = reddit.account_from_password("alice", "pw")
        url = await account.upload_image(PNG, "dog.jpg")
    upload = next(r for r in transport_requests if r.url.path == "/_sandbox/media")
    assert str(upload.url) == f"{sandbox.url}/_sandbox/media"
    assert "authorization" not in upload.headers  # the bucket gets no Reddit token
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert url.startswith(f"{sandbox.url}/_sandbox/media/") and url.endswith("/dog.jpg")
