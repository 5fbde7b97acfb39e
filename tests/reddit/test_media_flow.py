"""Reddit's media flow from Thotto's own client (issue #15): ``RedditAccount.submit_media``
leases an upload slot per image, streams the image to the bucket, submits, and waits for the
websocket Reddit names; galleries answer with their post. Against the sandbox over real HTTP and
a real websocket; the sandbox's processing is ended by moving its own clock, never by waiting."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from tests.chaos.harness import SandboxProcess
from tests.reddit.conftest import SandboxServer, make_config
from tests.reddit.test_submit import PNG
from tests.support.tls import self_signed_certificate
from thotto.config import Settings
from thotto.errors import DeferJob, RedditMediaPending, RedditPermanent, RetryableJobError
from thotto.scheduler.records import MediaKind, NewMedia, NewUser
from thotto.reddit import ImageUpload, RedditClient, RedditConfig
from thotto.reddit.sandbox import SandboxConfig
from thotto.store import open_store

MB = 1024 * 1024


class SandboxClock:
    """The sandbox's wall clock: real time plus however far a test moved it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
async def sandbox_clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
async def sandbox(nursery, tmp_path, sandbox_clock) -> SandboxServer:
    server = SandboxServer(nursery, tmp_path / "sandbox", SandboxConfig(rate_budget=100_000),
                           clock=sandbox_clock)
    await server.start()
    return server


def item_of(data: bytes, name: str = "cat.png", *, mime_type: str = "image/png",
            chunk_size: int = 4096, size: int | None = None, **gallery: str) -> ImageUpload:
    """An item whose bytes come in ``chunk_size`` pieces, as the store's chunks do."""
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk_size):
            yield data[start:start + chunk_size]

    return ImageUpload(file_name=name, mime_type=mime_type, size=len(data) if size is None else size,
                     chunks=chunks, **gallery)


def uploaded_files(sandbox_dir: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((sandbox_dir / "media").iterdir())]


async def listings_fail(sandbox: SandboxServer) -> None:
    """Every read of an account's listing fails: only the websocket can confirm a post."""
    await sandbox.faults(errors=[{"status": 503, "path": "/user/"}])


async def test_an_image_post_is_confirmed_over_reddits_websocket(sandbox, alice):
    await listings_fail(sandbox)
    result = await alice.submit_media("test", "A cat", [item_of(PNG)], nsfw=True)
    (record,) = await sandbox.posts()
    assert (record["id"], record["name"], record["kind"], record["title"], record["nsfw"]) == \
        (result.id, result.name, "image", "A cat", True)
    assert result.url == sandbox.url + record["permalink"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(record["url"])).content == PNG  # streamed through the lease, intact
    assert uploaded_files(sandbox.data_dir) == [PNG]


async def test_over_https_the_websocket_is_wss_with_the_same_trust(nursery, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # trusted by httpx, and so by the websocket
    sandbox = SandboxServer(nursery, tmp_path / "sandbox", SandboxConfig(rate_budget=100_000),
                            tls=(cert, key))
    await sandbox.start()
    await listings_fail(sandbox)
    async with RedditClient(make_config(sandbox.url)) as reddit:
        alice = reddit.account_from_password("alice", "alice-password")
        result = await alice.submit_media("test", "A secure cat", [item_of(PNG)])
    (record,) = await sandbox.posts()
    assert record["id"] == result.id and result.url.startswith("https://")


async def test_a_gallery_of_three_with_captions_and_links(sandbox, alice):
    since = time.time() - 60
    images = [PNG + bytes([n]) * n for n in (1, 2, 3)]  # three different files
    items = [item_of(images[0], "one.png", caption="First", outbound_url="https://example.com/1"),
             item_of(images[1], "two.png", caption="Second"),
             item_of(images[2], "three.png", outbound_url="https://example.com/3")]
    flair = "6c4b3e7a-0000-4000-8000-000000000001"  # r/test's editable "Discussion"
    result = await alice.submit_media("test", "Three pictures", items, spoiler=True,
                                      flair_id=flair, flair_text="Pictures")
    (record,) = await sandbox.posts()
    assert (record["id"], record["name"], record["kind"]) == (result.id, result.name, "gallery")
    assert result.url == sandbox.url + record["permalink"]
    assert record["gallery_captions"] == ["First", "Second", ""]
    assert record["gallery_links"] == ["https://example.com/1", "", "https://example.com/3"]
    assert (record["spoiler"], record["flair_id"], record["flair_text"]) == (True, flair, "Pictures")
    assert len(record["gallery"]) == 3
    assert sorted(uploaded_files(sandbox.data_dir)) == sorted(images)
    # Reconciliation after a crash finds a gallery post by its title.
    found = await alice.find_submission("test", "Three pictures", since=since)
    assert found is not None and found.id == result.id


async def test_an_image_from_the_media_library_is_streamed_from_the_store(sandbox, alice, tmp_path):
    image = PNG + bytes(range(256)) * 10_000  # 2.5 MB: three of the store's chunks
    async with open_store(str(tmp_path / "thotto.db")) as store:
        user = await store.create_user(NewUser(name="alice"))

        async def pieces() -> AsyncIterator[bytes]:
            yield image

        media = await store.create_media(
            NewMedia(user_id=user.id, kind=MediaKind.PNG, width=64, height=48), pieces())
        item = ImageUpload.from_store(store, media)
        result = await alice.submit_media("test", "From the library", [item])
    (record,) = await sandbox.posts()
    assert (record["id"], record["kind"]) == (result.id, "image")
    assert record["url"].endswith(f"/image-{media.id}.png")
    assert uploaded_files(sandbox.data_dir) == [image]


async def test_processing_longer_than_the_confirm_wait_is_pending_then_found(sandbox, sandbox_clock):
    config = make_config(sandbox.url, media_confirm_seconds=0.2, media_pending_seconds=45)
    since = time.time() - 60
    await sandbox.configure(media_delay=600)  # ends only when the test moves the clock
    async with RedditClient(config) as reddit:
        alice = reddit.account_from_password("alice", "alice-password")
        with pytest.raises(RedditMediaPending) as caught:
            await alice.submit_media("test", "Slow cat", [item_of(PNG)])
        error = caught.value
        assert error.error_type == "MEDIA_PROCESSING"
        assert isinstance(error, DeferJob) and not isinstance(error, RetryableJobError)
        assert 40 < (error.until.timestamp() - time.time()) <= 45  # looks again media_pending_seconds on
        (record,) = await sandbox.posts()  # accepted, once
        assert await alice.find_submission("test", "Slow cat", since=since) is None  # processing
        sandbox_clock.advance(601)
        found = await alice.find_submission("test", "Slow cat", since=since)
    assert found is not None and found.id == record["id"]
    assert len(await sandbox.posts()) == 1 and uploaded_files(sandbox.data_dir) == [PNG]


async def test_processing_that_ends_during_the_wait_is_announced(sandbox, alice, sandbox_clock):
    await sandbox.configure(media_delay=600)
    await listings_fail(sandbox)
    results = []

    async def submit() -> None:
        results.append(await alice.submit_media("test", "Patient cat", [item_of(PNG)]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        with trio.fail_after(10):
            while not await sandbox.posts():  # accepted, now processing
                await trio.sleep(0.02)
        assert not results
        sandbox_clock.advance(601)  # processing ends: the websocket announces the post
    (record,) = await sandbox.posts()
    assert results[0].id == record["id"]


async def test_failed_processing_is_permanent_with_reddits_reason_and_nothing_is_sent_again(
        sandbox, alice):
    await sandbox.faults(media_failures=1)
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit_media("test", "Broken cat", [item_of(PNG)])
    error = caught.value
    assert (error.error_type, error.message, error.field) == ("MEDIA_FAILED", "processing failed", "media")
    assert "processing failed" in str(error)
    assert await sandbox.posts() == []
    assert uploaded_files(sandbox.data_dir) == [PNG]  # uploaded once, never again


@pytest.mark.parametrize(("items", "error_type", "words"), [
    ([item_of(PNG, caption="A caption")], "BAD_GALLERY", "only a gallery"),
    ([item_of(PNG)] * 21, "BAD_GALLERY", "not 21"),
    ([], "BAD_GALLERY", "not 0"),
    ([item_of(PNG, caption="x" * 181), item_of(PNG)], "TOO_LONG", "181 characters"),
    ([item_of(PNG, outbound_url="example.com"), item_of(PNG)], "BAD_URL", "not an http(s) URL"),
    ([item_of(PNG, "notes.txt", mime_type="text/plain")], "BAD_IMAGE", "PNG, JPEG, GIF or WebP"),
    ([item_of(PNG, size=21 * MB)], "TOO_LARGE", "20 MB"),
])
async def test_media_posts_reddit_would_refuse_are_refused_before_anything_is_sent(
        sandbox, alice, items, error_type, words):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit_media("test", "Refused", items)
    assert caught.value.error_type == error_type and words in str(caught.value)
    assert await sandbox.posts() == [] and uploaded_files(sandbox.data_dir) == []


@pytest.mark.parametrize("size", [len(PNG) - 1, len(PNG) + 1])
async def test_chunks_that_disagree_with_the_declared_size_fail_the_post_clearly(sandbox, alice, size):
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit_media("test", "Wrong size", [item_of(PNG, size=size)])
    assert caught.value.error_type == "MEDIA_SIZE_MISMATCH" and str(size) in str(caught.value)
    assert await sandbox.posts() == [] and uploaded_files(sandbox.data_dir) == []


async def test_a_5_mb_image_is_streamed_with_an_exact_length(tmp_path):
    # The sandbox runs in its own process, so that what is traced below is the client alone.
    sandbox = SandboxProcess(tmp_path / "sandbox", tmp_path / "sandbox.log")
    await sandbox.start()
    try:
        image = PNG + bytes(range(256)) * (5 * MB // 256)
        chunk_size = 64 * 1024
        produced = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal produced
            for start in range(0, len(image), chunk_size):
                produced += 1
                yield image[start:start + chunk_size]  # a fresh copy each, as a store read makes

        uploads: list[httpx.Request] = []

        class Recording(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request):
                if request.url.path == "/_sandbox/media":
                    uploads.append(request)
                return await super().handle_async_request(request)

        item = ImageUpload(file_name="big.png", mime_type="image/png", size=len(image), chunks=chunks)
        async with RedditClient(make_config(sandbox.url), transport=Recording()) as reddit:
            alice = reddit.account_from_password("alice", "alice-password")
            await alice.me()  # the token, before tracing
            tracemalloc.start()
            try:
                result = await alice.submit_media("test", "Big cat", [item])
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        (upload,) = uploads
        assert int(upload.headers["content-length"]) > len(image)
        assert "transfer-encoding" not in upload.headers  # Reddit's bucket takes no chunked uploads
        assert produced == -(-len(image) // chunk_size)
        # Held at once: a few chunks, never the image (5 MB) or the body.
        assert peak < 16 * chunk_size, f"the client held {peak / MB:.1f} MB at its peak"
        (stored,) = (sandbox.data_dir / "media").iterdir()
        assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(image).digest()
        (record,) = sandbox.record()
        assert record["id"] == result.id
    finally:
        sandbox.stop()


async def test_the_confirm_wait_is_a_setting():
    settings = Settings(reddit_client_id="app", reddit_media_confirm_seconds=12.5)
    assert RedditConfig.from_settings(settings).media_confirm_seconds == 12.5
    assert RedditConfig.from_settings(Settings(reddit_client_id="app")).media_confirm_seconds == 30.0
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"reddit_media_confirm_seconds": 0}, Settings)
