"""``thotto media upload`` while ``python run.py`` holds the SQLite file: the command runs in the
server (its control socket), which reads the image from the path the CLI resolved, and the
image is in the user's library through the API at once."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.acceptance.test_self_hosting import serving, thotto  # noqa: F401 (a fixture)
from tests.support import images

# These start run.py, whose demo sandbox listens on the default port 8765: under pytest-xdist they
# all run in one worker, one at a time.
pytestmark = pytest.mark.xdist_group("demo-port-8765")


def test_media_upload_works_while_the_server_runs(serving, tmp_path):  # noqa: F811
    url, token = serving
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    (elsewhere / "beach.webp").write_bytes(images.webp())
    # From another directory than the server's: the path is the CLI's, not the server's.
    result = thotto("media", "upload", "beach.webp", "--user", "admin", "--json",
                    "--data-dir", str(tmp_path / "thotto-data"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    media = json.loads(result.stdout)
    assert media["removed"] == ["EXIF (GPS, camera)", "XMP"]
    api = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"})
    assert [item["id"] for item in api.get("/api/media").json()["media"]] == [media["id"]]
    content = api.get(f"/api/media/{media['id']}/content")
    assert content.headers["content-type"] == "image/webp"
    assert images.pixels(content.content) == images.pixels(images.webp())
