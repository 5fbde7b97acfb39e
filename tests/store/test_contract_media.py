"""Store contract: the media library (runs on every adapter, like ``test_contract.py``).

Media are stored chunk by chunk from an async iterator and read back chunk by chunk; deleting
obeys the ``post_media`` links (rows the tests insert themselves, see tests/support/media_links).
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import pytest
import trio

from tests.store.test_contract import claim_job, make_account, schedule, seconds
from tests.support.media_links import link_post_to_media
from thotto.engine.errors import NotFound, StoreError, ValidationError
from thotto.errors import MediaInUse
from thotto.scheduler.records import MediaKind, NewMedia, NewUser
from thotto.store.base import MEDIA_CHUNK_BYTES


async def chunks_of(data: bytes, size: int):
    for start in range(0, len(data), size):
        await trio.lowlevel.checkpoint()
        yield data[start:start + size]


def image(user_id: int, kind: MediaKind = MediaKind.PNG, **fields) -> NewMedia:
    return NewMedia(user_id=user_id, kind=kind, width=fields.pop("width", 640),
                    height=fields.pop("height", 480), **fields)


async def stored(store, user_id: int, data: bytes = b"\x89PNG fake image bytes", size: int = 7,
                 **fields):
    return await store.create_media(image(user_id, **fields), chunks_of(data, size))


async def read_all(store, media_id: int, user_id: int | None = None) -> list[bytes]:
    async with contextlib.aclosing(store.read_media(media_id, user_id)) as chunks:
        return [chunk async for chunk in chunks]


@pytest.fixture
async def alice(store):
    return await store.create_user(NewUser(name="alice"))


@pytest.fixture
async def bob(store):
    return await store.create_user(NewUser(name="bob"))


async def test_create_media_counts_hashes_and_keeps_what_it_was_given(store, clock, alice):
    data = os.urandom(5000)
    media = await stored(store, alice.id, data, 333, kind=MediaKind.WEBP, width=10, height=20,
                         removed=["EXIF (GPS, camera)", "XMP"])
    assert (media.user_id, media.kind, media.width, media.height) == (alice.id, MediaKind.WEBP, 10, 20)
    assert media.bytes == 5000 and media.sha256 == hashlib.sha256(data).hexdigest()
    assert media.removed == ["EXIF (GPS, camera)", "XMP"] and media.created_at == clock()
    assert await store.get_media(media.id) == media


async def test_media_is_read_back_in_chunks_of_at_most_a_megabyte(store, alice):
    data = os.urandom(MEDIA_CHUNK_BYTES * 2 + 12345)
    media = await stored(store, alice.id, data, 700_000)  # pieces that straddle chunk borders
    chunks = await read_all(store, media.id, alice.id)
    assert b"".join(chunks) == data
    assert [len(chunk) for chunk in chunks] == [MEDIA_CHUNK_BYTES, MEDIA_CHUNK_BYTES, 12345]


async def test_a_big_piece_is_stored_as_several_chunks(store, alice):
    data = os.urandom(MEDIA_CHUNK_BYTES + 1)
    media = await stored(store, alice.id, data, len(data))
    assert [len(chunk) for chunk in await read_all(store, media.id)] == [MEDIA_CHUNK_BYTES, 1]


async def test_another_users_media_is_not_found(store, alice, bob):
    media = await stored(store, alice.id)
    with pytest.raises(NotFound):
        await store.get_media(media.id, bob.id)
    with pytest.raises(NotFound):
        await read_all(store, media.id, bob.id)
    with pytest.raises(NotFound):
        await store.delete_media(media.id, bob.id)
    assert (await store.list_media(bob.id)).media == []
    assert await store.get_media(media.id, alice.id) == media


async def test_unknown_media_and_users_are_not_found(store, alice):
    with pytest.raises(NotFound):
        await store.get_media(10**9)
    with pytest.raises(NotFound):
        await read_all(store, 10**9)
    with pytest.raises(NotFound):
        await stored(store, 10**9)


async def test_empty_media_is_refused_and_leaves_nothing(store, alice, clock):
    with pytest.raises(ValidationError):
        await stored(store, alice.id, b"")
    assert (await store.list_media(alice.id)).media == []
    assert await store.purge_media(clock() + seconds(1)) == 0  # nothing unfinished was left


async def test_an_upload_whose_chunks_fail_leaves_nothing(store, alice, clock):
    async def failing():
        yield b"x" * 1000
        raise OSError("the client went away")

    with pytest.raises(OSError):
        await store.create_media(image(alice.id), failing())
    assert (await store.list_media(alice.id)).media == []
    assert await store.purge_media(clock() + seconds(1)) == 0


class StalledUpload:
    """Chunks that stop after the first full chunk until released: ``stored`` is set once the
    store has written that chunk (it asks for the next only then)."""

    def __init__(self):
        self.stored = trio.Event()
        self.release = trio.Event()

    async def chunks(self):
        yield b"a" * MEDIA_CHUNK_BYTES
        self.stored.set()
        await self.release.wait()
        yield b"the rest"


async def test_an_upload_is_invisible_until_its_last_chunk_is_stored(store, alice):
    upload, done = StalledUpload(), []
    async with trio.open_nursery() as nursery:
        async def create():
            done.append(await store.create_media(image(alice.id), upload.chunks()))

        nursery.start_soon(create)
        await upload.stored.wait()
        assert (await store.list_media(alice.id)).media == []
        upload.release.set()
    (media,) = done
    assert (await store.list_media(alice.id)).media == [media]
    assert b"".join(await read_all(store, media.id)) == b"a" * MEDIA_CHUNK_BYTES + b"the rest"


async def test_a_cancelled_upload_leaves_nothing(store, alice, clock):
    upload = StalledUpload()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.create_media, image(alice.id), upload.chunks())
        await upload.stored.wait()
        nursery.cancel_scope.cancel()
    assert (await store.list_media(alice.id)).media == []
    assert await store.purge_media(clock() + seconds(1)) == 0


async def test_list_media_pages_newest_first_without_skips_or_repeats(store, alice, bob):
    made = [await stored(store, alice.id, bytes([n]) * 10) for n in range(7)]
    await stored(store, bob.id)
    pages, cursor = [], None
    while True:
        page = await store.list_media(alice.id, cursor=cursor, limit=3)
        pages.append([media.id for media in page.media])
        cursor = page.next_cursor
        if cursor is None:
            break
    ids = [media.id for media in reversed(made)]
    assert pages == [ids[:3], ids[3:6], ids[6:]]


@pytest.mark.parametrize("cursor", ["garbage", "bWVkaWE6eA", "cG9zdHM6MQ"])
async def test_list_media_refuses_a_malformed_cursor(store, alice, cursor):
    with pytest.raises(ValidationError) as caught:
        await store.list_media(alice.id, cursor=cursor)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize("limit", [0, 501])
async def test_list_media_refuses_a_limit_out_of_range(store, alice, limit):
    with pytest.raises(ValidationError):
        await store.list_media(alice.id, limit=limit)


async def test_delete_media_removes_it_and_its_bytes(store, alice, clock):
    media = await stored(store, alice.id, os.urandom(MEDIA_CHUNK_BYTES + 10), 50_000)
    assert await store.delete_media(media.id, alice.id) == media
    with pytest.raises(NotFound):
        await store.get_media(media.id)
    with pytest.raises(NotFound):
        await read_all(store, media.id)
    with pytest.raises(NotFound):  # a repeated delete
        await store.delete_media(media.id, alice.id)


async def test_media_of_a_pending_post_cannot_be_deleted(store, store_url, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(3600))
    media = await stored(store, account.user_id)
    await link_post_to_media(store_url, post.id, media.id)
    with pytest.raises(MediaInUse) as caught:
        await store.delete_media(media.id, account.user_id)
    assert caught.value.post_ids == [post.id] and f"post {post.id}" in str(caught.value)
    await claim_job(store, post.job_id)  # publishing now: still in use
    with pytest.raises(MediaInUse):
        await store.delete_media(media.id, account.user_id)
    assert await store.get_media(media.id) == media


async def test_media_of_a_finished_post_can_be_deleted(store, store_url, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(3600))
    media = await stored(store, account.user_id)
    await link_post_to_media(store_url, post.id, media.id)
    await store.cancel_post(post.id, account.user_id)
    assert await store.delete_media(media.id, account.user_id) == media


async def test_purge_media_removes_old_unused_media_only(store, store_url, clock):
    account = await make_account(store)
    old_unused = await stored(store, account.user_id)
    old_used = await stored(store, account.user_id)
    post = await schedule(store, account, clock() + seconds(3600))
    await link_post_to_media(store_url, post.id, old_used.id)
    clock.advance(86400)
    recent = await stored(store, account.user_id)
    assert await store.purge_media(clock() - seconds(3600)) == 1
    left = {media.id for media in (await store.list_media(account.user_id)).media}
    assert left == {old_used.id, recent.id} and old_unused.id not in left
    with pytest.raises(NotFound):
        await read_all(store, old_unused.id)
    assert await store.purge_media(clock() - seconds(3600)) == 0


async def test_purge_media_frees_media_once_its_post_is_purged(store, store_url, clock):
    account = await make_account(store)
    post = await schedule(store, account, clock() + seconds(3600))
    media = await stored(store, account.user_id)
    await link_post_to_media(store_url, post.id, media.id)
    await store.cancel_post(post.id, account.user_id)
    clock.advance(86400)
    assert await store.purge_media(clock()) == 0  # a cancelled post still uses it
    await store.purge(clock())  # the finished post goes
    assert await store.purge_media(clock()) == 1


async def test_purge_media_removes_unfinished_uploads_by_their_own_date(store, alice, clock):
    upload, failures = StalledUpload(), []

    async def create():
        try:
            await store.create_media(image(alice.id), upload.chunks())
        except (NotFound, StoreError) as error:
            failures.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(create)
        await upload.stored.wait()
        clock.advance(7200)
        # Unused media must be a month old here, an unfinished upload only an hour.
        assert await store.purge_media(clock() - seconds(30 * 86400),
                                       unfinished_before=clock() - seconds(3600)) == 1
        upload.release.set()
    assert len(failures) == 1  # its rows went: the upload fails rather than half-exist
    assert (await store.list_media(alice.id)).media == []
    assert await store.purge_media(clock()) == 0
