"""Image and gallery posts over real HTTP (issue #15): upload to the media library, schedule by
media id, publish through Reddit's media flow (lease, upload, websocket) to the sandbox; what
Reddit receives carries no location; nothing on the server is reachable by naming it."""

from __future__ import annotations

import io

import httpx
import pytest
import trio
from PIL import Image

from tests.api.conftest import api_settings, serving
from tests.api.test_scheduled_posts import at, post_body, wait_for
from tests.support.images import jpeg, png


@pytest.fixture
async def api(sandbox, tmp_path):
    async with serving(api_settings(tmp_path, sandbox.url, reddit_media_confirm_seconds=5)) as api:
        yield api


async def upload(client, image: bytes, content_type: str = "image/png") -> dict:
    response = await client.post("/api/media", content=image, headers={"content-type": content_type})
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_uploaded_image_is_scheduled_by_id_and_published_once(api, sandbox):
    media = await upload(api.pro.client, png(orientation=1))
    body = post_body(title="A picture", kind="image", text=None, mediaIds=[media["id"]], scheduledFor=at(0.5))
    response = await api.pro.client.post("/api/scheduled-posts", json=body)
    assert response.status_code == 201, response.text
    (post,) = response.json()["posts"]
    assert post["mediaIds"] == [{"id": media["id"], "caption": None, "outboundUrl": None}]
    published = await wait_for(api.pro.client, post["id"], "published", timeout=30)
    (record,) = [r for r in await sandbox.posts() if r["title"] == "A picture"]
    assert (record["kind"], record["id"]) == ("image", published["redditId"])
    async with httpx.AsyncClient() as http:
        received = (await http.get(record["url"])).content
    stored = (await api.pro.client.get(f"/api/media/{media['id']}/content")).content
    assert received == stored  # byte for byte what the library holds


async def test_a_gallery_of_three_with_captions_publishes_once(api, sandbox):
    ids = [(await upload(api.pro.client, png(orientation=1)))["id"] for _ in range(3)]
    items = [{"id": ids[0], "caption": "First", "outboundUrl": "https://example.com/1"},
             ids[1], {"id": ids[2], "caption": "Third"}]
    body = post_body(title="Three pictures", kind="gallery", text=None, mediaIds=items, scheduledFor=at(0.5))
    response = await api.pro.client.post("/api/scheduled-posts", json=body)
    assert response.status_code == 201, response.text
    (post,) = response.json()["posts"]
    published = await wait_for(api.pro.client, post["id"], "published", timeout=30)
    (record,) = [r for r in await sandbox.posts() if r["title"] == "Three pictures"]
    assert record["kind"] == "gallery" and record["id"] == published["redditId"]
    assert record["gallery_captions"] == ["First", "", "Third"]
    assert record["gallery_links"] == ["https://example.com/1", "", ""]


async def test_what_reddit_receives_has_no_location(api, sandbox):
    photo = jpeg(orientation=6)  # a phone photo: GPS and camera EXIF, taken sideways
    assert b"GPS" in photo or b"\x88\x25" in photo
    media = await upload(api.pro.client, photo, "image/jpeg")
    assert any("GPS" in removed for removed in media["removed"])
    body = post_body(title="My garden", kind="image", text=None, mediaIds=[media["id"]], scheduledFor=at(0.5))
    (post,) = (await api.pro.client.post("/api/scheduled-posts", json=body)).json()["posts"]
    await wait_for(api.pro.client, post["id"], "published", timeout=30)
    (record,) = [r for r in await sandbox.posts() if r["title"] == "My garden"]
    async with httpx.AsyncClient() as http:
        received = (await http.get(record["url"])).content
    exif = Image.open(io.BytesIO(received)).getexif()
    assert 0x8825 not in exif  # no GPS IFD
    assert exif.get(0x0112) == 6  # the orientation kept, so it is not shown sideways
    assert 0x010F not in exif and 0x0110 not in exif  # no camera make or model


async def test_a_file_on_the_server_cannot_be_named(api, tmp_path):
    secret = tmp_path / "thotto" / "secret.key"
    body = post_body(kind="image", text=None, imagePath=str(secret))
    response = await api.pro.client.post("/api/scheduled-posts", json=body)
    assert response.status_code == 422
    assert "POST /api/media" in response.json()["detail"] and "mediaIds" in response.json()["detail"]
    assert str(secret) not in response.text  # says nothing of which files exist


async def test_media_ids_are_checked_when_scheduling(api):
    theirs = await upload(api.premium.client, png(orientation=1))
    mine = await upload(api.pro.client, png(orientation=1))
    cases = [
        (dict(kind="image", mediaIds=[theirs["id"]]), "is not one of your uploads"),
        (dict(kind="image", mediaIds=[999999]), "is not one of your uploads"),
        (dict(kind="image", mediaIds=[mine["id"], mine["id"]]), "one id"),
        (dict(kind="gallery", mediaIds=[mine["id"]]), "2 to 20"),
        (dict(kind="gallery", mediaIds=[mine["id"], mine["id"]]), "twice"),
        (dict(kind="self", text="x", mediaIds=[mine["id"]]), "does not go with a self post"),
        (dict(kind="image", mediaIds=[{"id": mine["id"], "caption": "no"}]), "gallery images"),
    ]
    for fields, message in cases:
        body = post_body(**{"text": None, **fields})
        response = await api.pro.client.post("/api/scheduled-posts", json=body)
        assert response.status_code == 422, (fields, response.text)
        assert message in response.json()["detail"] and response.json()["field"] == "mediaIds", response.json()


async def test_media_a_pending_post_uses_cannot_be_deleted(api):
    media = await upload(api.pro.client, png(orientation=1))
    body = post_body(title="Later", kind="image", text=None, mediaIds=[media["id"]])
    (post,) = (await api.pro.client.post("/api/scheduled-posts", json=body)).json()["posts"]
    refused = await api.pro.client.delete(f"/api/media/{media['id']}")
    assert refused.status_code == 409 and refused.json()["postIds"] == [post["id"]]
    await api.pro.client.delete(f"/api/scheduled-posts/{post['id']}")
    with trio.fail_after(5):
        assert (await api.pro.client.delete(f"/api/media/{media['id']}")).status_code == 200
