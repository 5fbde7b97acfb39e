"""``/api/media`` over real HTTP: uploads of every kind Reddit takes, made by Pillow in the test;
metadata removed (or kept on request); what is not an image, too large, broken or a bomb refused
with nothing stored; other users' media invisible; media a pending post uses kept."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from tests.api.conftest import api_settings, serving
from tests.support import images
from tests.support.media_links import link_post_to_media
from thotto.engine.jobs import utcnow
from thotto.scheduler.media import UPLOAD_DIR_NAME

KINDS = [("png", images.png), ("jpeg", images.jpeg), ("gif", images.gif), ("webp", images.webp)]


async def upload(client, data: bytes, content_type: str = "image/png", **params):
    return await client.post("/api/media", content=data, headers={"content-type": content_type},
                             params=params)


async def content_of(client, media_id: int):
    response = await client.get(f"/api/media/{media_id}/content")
    assert response.status_code == 200, response.text
    return response


def media_rows(api) -> int:
    """Media rows of every state, unfinished uploads included, straight from the database."""
    with sqlite3.connect(api.app.settings.resolved_database_url()) as conn:
        return conn.execute("SELECT count(*) FROM media").fetchone()[0]


def temporary_files(api) -> list[Path]:
    return list((Path(api.app.settings.data_dir) / UPLOAD_DIR_NAME).glob("*"))


@pytest.mark.parametrize("kind, make", KINDS, ids=[kind for kind, _ in KINDS])
async def test_each_kind_made_by_pillow_is_uploaded_and_read_back(api, kind, make):
    original = make()
    # The Content-Type says nothing true here: the bytes decide.
    response = await upload(api.pro.client, original, "application/octet-stream")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == kind and (body["width"], body["height"]) == (64, 48)
    assert set(body) == {"id", "kind", "width", "height", "bytes", "sha256", "removed", "createdAt"}
    assert (await api.pro.client.get(f"/api/media/{body['id']}")).json() == body
    stored = await content_of(api.pro.client, body["id"])
    assert stored.headers["content-type"] == f"image/{kind}"
    assert len(stored.content) == body["bytes"] == int(stored.headers["content-length"])
    assert hashlib.sha256(stored.content).hexdigest() == body["sha256"]
    assert images.pixels(stored.content) == images.pixels(original)


async def test_a_phone_photo_comes_back_without_its_gps_and_camera_but_upright(api):
    original = images.jpeg(orientation=6)
    response = await upload(api.pro.client, original, "image/jpeg")
    assert response.status_code == 201, response.text
    assert response.json()["removed"] == ["EXIF (GPS, camera)", "XMP", "comment"]
    stored = (await content_of(api.pro.client, response.json()["id"])).content
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert dict(exif) == {0x0112: 6} and dict(exif.get_ifd(0x8825)) == {}
    assert b"Pixelmaker" not in stored and b"Paris" not in stored


async def test_keep_metadata_keeps_the_file_as_it_was(api):
    original = images.jpeg(orientation=6)
    response = await upload(api.pro.client, original, "image/jpeg", keepMetadata="true")
    assert response.status_code == 201 and response.json()["removed"] == []
    stored = (await content_of(api.pro.client, response.json()["id"])).content
    assert stored == original
    assert dict(Image.open(io.BytesIO(stored)).getexif().get_ifd(0x8825))  # the GPS position


async def test_a_multipart_form_with_one_file_field_is_an_upload(api):
    original = images.webp()
    response = await api.pro.client.post("/api/media", data={"note": "ignored"},
                                         files={"file": ("holiday.webp", original, "image/webp")})
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "webp" and response.json()["removed"] == ["EXIF (GPS, camera)", "XMP"]
    stored = (await content_of(api.pro.client, response.json()["id"])).content
    assert images.pixels(stored) == images.pixels(original)


async def test_a_form_without_a_file_or_with_two_is_refused(api):
    none = await api.pro.client.post("/api/media", data={"file": "not a file"},
                                     files={"other": (None, b"x")})
    assert none.status_code == 422 and none.json()["field"] == "file"
    two = await api.pro.client.post("/api/media", files=[("a", ("a.png", images.png(), "image/png")),
                                                          ("b", ("b.png", images.png(), "image/png"))])
    assert two.status_code == 422 and "one image" in two.json()["detail"]
    assert (await api.pro.client.get("/api/media")).json()["media"] == []


async def test_a_text_file_named_png_is_unsupported_media(api):
    response = await api.pro.client.post(
        "/api/media", files={"file": ("photo.png", b"hello, this is not an image at all\n", "image/png")})
    assert response.status_code == 415
    assert "PNG, JPEG, GIF or WebP" in response.json()["detail"]
    assert media_rows(api) == 0 and temporary_files(api) == []


async def test_a_decompression_bomb_is_refused_and_nothing_is_stored(api):
    response = await upload(api.pro.client, images.png_bomb(100_000, 100_000))
    assert response.status_code == 422, response.text
    assert "decompression bomb" in response.json()["detail"]
    assert media_rows(api) == 0 and temporary_files(api) == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
async def test_a_broken_image_is_refused(api, damage):
    original = bytearray(images.jpeg())
    if damage == "truncated":
        broken = bytes(original[: len(original) * 2 // 3])
    else:  # garbage in the middle of the compressed data
        scan = original.index(b"\xff\xda") + 20
        original[scan:scan + 200] = b"\xff\x01" * 100
        broken = bytes(original)
    response = await upload(api.pro.client, broken, "image/jpeg")
    assert response.status_code == 422, response.text
    assert media_rows(api) == 0 and temporary_files(api) == []


@pytest.fixture
async def small_limit_api(sandbox, tmp_path):
    async with serving(api_settings(tmp_path, sandbox.url, media_max_bytes=50_000)) as api:
        yield api


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_upload_is_413_and_leaves_nothing(small_limit_api, declared):
    api = small_limit_api
    data = images.noise_png(150, 150)  # about 67 kB of incompressible pixels
    assert len(data) > 50_000

    async def pieces():
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]

    response = await api.pro.client.post("/api/media", content=data if declared else pieces(),
                                         headers={"content-type": "image/png"})
    assert response.status_code == 413, response.text
    assert "50,000" in response.json()["detail"]
    assert media_rows(api) == 0 and temporary_files(api) == []
    assert (await api.pro.client.get("/api/media")).json()["media"] == []


async def test_another_users_media_is_not_found_everywhere(api):
    media_id = (await upload(api.pro.client, images.png())).json()["id"]
    other = api.premium.client
    for response in (await other.get(f"/api/media/{media_id}"),
                     await other.get(f"/api/media/{media_id}/content"),
                     await other.delete(f"/api/media/{media_id}")):
        assert response.status_code == 404
    assert (await other.get("/api/media")).json()["media"] == []
    assert (await api.pro.client.get(f"/api/media/{media_id}")).status_code == 200


async def test_media_are_listed_newest_first_a_page_at_a_time(api):
    made = [(await upload(api.pro.client, images.png(orientation=n))).json()["id"] for n in (2, 3, 4)]
    first = (await api.pro.client.get("/api/media", params={"limit": 2})).json()
    assert [media["id"] for media in first["media"]] == made[::-1][:2] and first["nextCursor"]
    rest = (await api.pro.client.get("/api/media", params={"limit": 2, "cursor": first["nextCursor"]})).json()
    assert [media["id"] for media in rest["media"]] == made[:1] and rest["nextCursor"] is None
    bad = await api.pro.client.get("/api/media", params={"cursor": "nonsense"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"


async def test_media_a_pending_post_uses_cannot_be_deleted(api):
    media_id = (await upload(api.pro.client, images.png())).json()["id"]
    post = await api.pro.client.post("/api/scheduled-posts", json={
        "subreddit": "test", "title": "With a picture", "text": "soon",
        "scheduledFor": (utcnow() + timedelta(hours=1)).isoformat()})
    post_id = post.json()["posts"][0]["id"]
    await link_post_to_media(api.app.settings.resolved_database_url(), post_id, media_id)
    refused = await api.pro.client.delete(f"/api/media/{media_id}")
    assert refused.status_code == 409 and refused.json()["postIds"] == [post_id]
    assert str(post_id) in refused.json()["detail"]
    assert (await api.pro.client.delete(f"/api/scheduled-posts/{post_id}")).status_code == 200
    deleted = await api.pro.client.delete(f"/api/media/{media_id}")
    assert deleted.status_code == 200 and deleted.json()["id"] == media_id
    assert (await api.pro.client.get(f"/api/media/{media_id}")).status_code == 404


async def test_memory_does_not_grow_with_the_size_of_an_upload(api):
    """A 12 MB image goes up and comes back down through the server in this process: what Python
    holds at any moment stays a few chunks, not the file (Pillow's own pixel buffers, outside
    Python's allocator, are bounded by media_max_pixels instead)."""
    data = images.noise_png(2000, 2000)
    assert len(data) > 11_000_000

    async def pieces():
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        response = await api.pro.client.post("/api/media", content=pieces(),
                                             headers={"content-type": "image/png"})
        assert response.status_code == 201, response.text
        digest = hashlib.sha256()
        async with api.pro.client.stream("GET", f"/api/media/{response.json()['id']}/content") as stream:
            async for piece in stream.aiter_bytes():
                digest.update(piece)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == response.json()["sha256"]
    assert peak < 8_000_000, f"{peak:,} bytes held at once for a {len(data):,}-byte image"


async def test_a_form_whose_other_fields_run_past_the_limit_is_413(small_limit_api):
    api = small_limit_api
    body = (b"--xyz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + b"n" * 200_000
            + b"\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + images.png() + b"\r\n--xyz--\r\n")

    async def pieces():  # no Content-Length: the limit is found while reading
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = await api.pro.client.post("/api/media", content=pieces(),
                                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 413, response.text
    assert media_rows(api) == 0 and temporary_files(api) == []


@pytest.fixture
async def postgres_api(sandbox, tmp_path, postgres_dsn):
    async with serving(api_settings(tmp_path, sandbox.url, database_url=postgres_dsn)) as api:
        yield api


async def test_the_media_library_over_postgres(postgres_api):
    api = postgres_api
    original = images.noise_png(700, 700)  # about 1.5 MB: two chunks
    response = await upload(api.pro.client, original)
    assert response.status_code == 201, response.text
    media = response.json()
    stored = await content_of(api.pro.client, media["id"])
    assert stored.content == original and hashlib.sha256(original).hexdigest() == media["sha256"]
    assert (await api.premium.client.get(f"/api/media/{media['id']}/content")).status_code == 404
    assert (await api.pro.client.get("/api/media")).json()["media"] == [media]
    assert (await api.pro.client.delete(f"/api/media/{media['id']}")).status_code == 200
    assert (await api.pro.client.get(f"/api/media/{media['id']}")).status_code == 404
