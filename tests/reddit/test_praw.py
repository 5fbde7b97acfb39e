"""PRAW, Reddit's reference Python client, against the sandbox: unchanged, with only its
documented URL settings (``oauth_url``, ``reddit_url``, ``short_url``) pointed at it.

If the sandbox speaks Reddit's wire format the way Reddit does, an independent client works
against it as against reddit.com. PRAW prefixes media upload actions with ``https:`` and opens
the websocket Reddit names, so the sandbox runs over TLS here with a certificate made for the
test; requests and websocket-client trust it through their own CA-bundle environment variables.
PRAW is synchronous: each call runs in a worker thread while the sandbox serves in Trio.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

import praw
import prawcore
from praw.exceptions import MediaPostFailed, RedditAPIException
from praw.models import PostMedia

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, SandboxServer
from tests.reddit.test_submit import PNG
from tests.support.tls import self_signed_certificate
from thotto.reddit.sandbox import TEST_FLAIRS, SandboxConfig

USER_AGENT = "python:thotto-conformance:1.0 (by /u/thotto_dev)"
MOD_ONLY = {"id": "6c4b3e7a-0000-4000-8000-0000000000ff", "text": "Announcement", "mod_only": True}


@pytest.fixture
async def tls_sandbox(nursery, tmp_path, monkeypatch) -> SandboxServer:
    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", cert)
    server = SandboxServer(nursery, tmp_path / "sandbox", SandboxConfig(rate_budget=100_000),
                           tls=(cert, key))
    await server.start()
    return server


def reddit_for(sandbox: SandboxServer, **credentials) -> praw.Reddit:
    """PRAW as documented, its URLs pointed at the sandbox."""
    return praw.Reddit(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, user_agent=USER_AGENT,
                       oauth_url=sandbox.url, reddit_url=sandbox.url, short_url=sandbox.url,
                       check_for_updates=False, **credentials)


@pytest.fixture
def alice(tls_sandbox) -> praw.Reddit:
    """A script app's account, signed in with the password grant."""
    return reddit_for(tls_sandbox, username="alice", password="alice-password")


async def run(fn, *args):
    return await trio.to_thread.run_sync(fn, *args)


async def only_post(sandbox) -> dict:
    posts = await sandbox.posts()
    assert len(posts) == 1, posts
    return posts[0]


# --- token flows -------------------------------------------------------------------------------


async def test_password_grant_and_me(alice):
    me = await run(alice.user.me)
    assert me.name == "alice"


async def test_refresh_token_grant_and_refresh(tls_sandbox):
    web = reddit_for(tls_sandbox, redirect_uri=REDIRECT_URI)
    url = web.auth.url(scopes=["identity", "submit", "read", "history", "flair"], state="xyz",
                       duration="permanent")
    async with httpx.AsyncClient(verify=_verify(tls_sandbox)) as http:
        consent = await http.get(url)
    assert consent.status_code == 302
    answer = dict(httpx.URL(consent.headers["location"]).params)
    assert answer["state"] == "xyz"
    refresh_token = await run(web.auth.authorize, answer["code"])
    assert refresh_token
    linked = reddit_for(tls_sandbox, refresh_token=refresh_token)
    assert (await run(linked.user.me)).name == "sandbox_user"
    # Every access token dies; PRAW's next request is refused, it refreshes, and goes on.
    await tls_sandbox.faults(expire_tokens=True)
    assert (await run(linked.user.me)).name == "sandbox_user"


async def test_application_only_grant_reads(tls_sandbox, alice):
    submission = await run(lambda: alice.subreddit("test").submit("Public", selftext="x"))
    app_only = reddit_for(tls_sandbox)  # client credentials: no account
    assert app_only.read_only
    (seen,) = await run(lambda: list(app_only.info(fullnames=[f"t3_{submission.id}"])))
    assert seen.title == "Public"


async def test_invalid_grant(tls_sandbox, alice):
    await run(alice.user.me)  # alice's password is now "alice-password"
    impostor = reddit_for(tls_sandbox, username="alice", password="wrong")
    with pytest.raises(prawcore.OAuthException) as caught:
        await run(impostor.user.me)
    assert "invalid_grant" in str(caught.value)


# --- submissions -------------------------------------------------------------------------------


async def test_self_post(tls_sandbox, alice):
    submission = await run(lambda: alice.subreddit("test").submit("Hello from PRAW", selftext="Body"))
    post = await only_post(tls_sandbox)
    assert (submission.id, post["kind"], post["text"], post["author"]) == (post["id"], "self", "Body", "alice")
    assert post["validate_on_submit"] is True  # PRAW sends it too
    # Reading the submission back (GET /comments/{id}/) gives what was posted.
    assert await run(lambda: (submission.title, submission.selftext, submission.is_self)) == \
        ("Hello from PRAW", "Body", True)


async def test_link_post(tls_sandbox, alice):
    submission = await run(lambda: alice.subreddit("test").submit("A link", url="https://example.com/a"))
    post = await only_post(tls_sandbox)
    assert (submission.id, post["kind"], post["url"]) == (post["id"], "link", "https://example.com/a")


async def test_image_post_through_the_media_flow_and_its_websocket(tls_sandbox, alice, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    await tls_sandbox.configure(media_delay=0.5)  # the websocket waits for processing to end
    submission = await run(lambda: alice.subreddit("test").submit("A cat", image=PostMedia(str(image))))
    post = await only_post(tls_sandbox)
    assert (submission.id, post["kind"]) == (post["id"], "image")
    async with httpx.AsyncClient(verify=_verify(tls_sandbox)) as http:
        assert (await http.get(post["url"])).content == PNG  # uploaded through the lease, intact


async def test_image_post_whose_processing_fails(tls_sandbox, alice, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    await tls_sandbox.faults(media_failures=1)
    with pytest.raises(MediaPostFailed):
        await run(lambda: alice.subreddit("test").submit("Broken", image=PostMedia(str(image))))
    assert await tls_sandbox.posts() == []


async def test_gallery_post(tls_sandbox, alice, tmp_path):
    paths = []
    for name in ("one.png", "two.jpg"):
        (tmp_path / name).write_bytes(PNG)
        paths.append(str(tmp_path / name))
    gallery = [{"media": PostMedia(paths[0]), "caption": "first"}, PostMedia(paths[1])]
    submission = await run(lambda: alice.subreddit("test").submit("Two", gallery=gallery))
    post = await only_post(tls_sandbox)
    assert (submission.id, post["kind"], len(post["gallery"])) == (post["id"], "gallery", 2)


@pytest.mark.skip(reason="the sandbox leases images only: PRAW's video and videogif submissions "
                         "(Reddit's video processing, a poster image) are not modelled")
async def test_video_posts(tls_sandbox):
    raise AssertionError("not modelled")


@pytest.mark.skip(reason="the sandbox has no rich-text conversion (/api/convert_rte_body_format): "
                         "PRAW's inline media in self posts is not modelled")
async def test_inline_media_in_a_self_post(tls_sandbox):
    raise AssertionError("not modelled")


async def test_edit_and_delete(tls_sandbox, alice):
    submission = await run(lambda: alice.subreddit("test").submit("Editable", selftext="before"))
    await run(lambda: submission.edit("after"))
    (seen,) = await run(lambda: list(alice.info(fullnames=[submission.fullname])))
    assert seen.selftext == "after"
    await run(submission.delete)
    mine = await run(lambda: list(alice.redditor("alice").submissions.new(limit=10)))
    assert mine == []
    (gone,) = await run(lambda: list(alice.info(fullnames=[submission.fullname])))
    assert gone.author is None  # Reddit shows "[deleted]", which PRAW reads as no author


# --- reads -------------------------------------------------------------------------------------


async def test_a_users_submissions_and_info(tls_sandbox, alice):
    first = await run(lambda: alice.subreddit("test").submit("First", selftext="1"))
    second = await run(lambda: alice.subreddit("test").submit("Second", selftext="2"))
    mine = await run(lambda: [post.id for post in alice.redditor("alice").submissions.new(limit=10)])
    assert mine == [second.id, first.id]  # newest first
    seen = await run(lambda: [(post.id, post.title, post.score) for post in
                              alice.info(fullnames=[first.fullname, second.fullname])])
    assert seen == [(first.id, "First", 1), (second.id, "Second", 1)]


async def test_rules_and_post_requirements(alice):
    rules = await run(lambda: [rule.short_name for rule in alice.subreddit("test").rules])
    assert rules == ["Be kind", "Stay on topic"]
    requirements = await run(lambda: alice.subreddit("flair_required").post_requirements())
    assert requirements["is_flair_required"] is True


async def test_flair_choices_of_an_ordinary_user(tls_sandbox, alice):
    flairs = [msgspec.to_builtins(flair) for flair in TEST_FLAIRS] + [MOD_ONLY]
    await tls_sandbox.control("POST", "/_sandbox/subreddits", json=[
        {"name": "flairs", "flairs": flairs, "moderators": ["the_mod"]}])
    templates = alice.subreddit("flairs").flair.link_templates
    choices = await run(lambda: list(templates.user_selectable()))
    assert [choice["flair_template_id"] for choice in choices] == [flair.id for flair in TEST_FLAIRS]
    with pytest.raises(prawcore.Forbidden):  # the moderators' endpoint
        await run(lambda: list(templates))
    moderator = reddit_for(tls_sandbox, username="the_mod", password="mod-password")
    everything = await run(lambda: list(moderator.subreddit("flairs").flair.link_templates))
    assert len(everything) == 3


# --- the errors Thotto classifies --------------------------------------------------------------


@pytest.mark.parametrize("subreddit, error_type", [("no_such_place", "SUBREDDIT_NOEXIST"),
                                                   ("links_only", "NO_SELFS")])
async def test_refusals(alice, subreddit, error_type):
    with pytest.raises(RedditAPIException) as caught:
        await run(lambda: alice.subreddit(subreddit).submit("Refused", selftext="x"))
    assert caught.value.items[0].error_type == error_type


async def test_ratelimit(tls_sandbox, alice):
    await tls_sandbox.faults(ratelimit={"count": 1, "message": "you are doing that too much. try "
                                                               "again in 9 minutes.", "seconds": 540})
    with pytest.raises(RedditAPIException) as caught:
        await run(lambda: alice.subreddit("test").submit("Slow", selftext="x"))
    assert caught.value.items[0].error_type == "RATELIMIT"


async def test_too_many_requests(tls_sandbox, alice):
    await run(alice.user.me)  # signed in (PRAW keeps the answer: me is asked once)
    await tls_sandbox.faults(too_many_requests={"count": 1, "reset": 1})
    with pytest.raises(prawcore.TooManyRequests):
        await run(lambda: alice.subreddit("test").post_requirements())


def _verify(sandbox: SandboxServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sandbox.tls[0])


def test_the_certificate_helper_writes_pem(tmp_path: Path):
    cert, key = self_signed_certificate(tmp_path)
    assert Path(cert).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in Path(key).read_bytes()
