"""The ``thotto`` command as a user runs it: tables by default, --json for scripts, one clear
line and exit 2 for mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET


def thotto(*args: str, cwd: Path, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thotto.cli", *args], cwd=cwd, input=stdin,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)


async def run(*args: str, **options) -> subprocess.CompletedProcess:
    return await trio.to_thread.run_sync(lambda: thotto(*args, **options))


async def test_init_makes_an_admin_with_a_token_once(tmp_path):
    result = await run("init", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["admin"] == "admin" and created["token"].startswith("thotto_")
    assert (tmp_path / "thotto-data" / "secret.key").exists()
    again = await run("init", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("thotto: ") and "already initialised" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


async def test_users_tokens_and_tiers(tmp_path):
    await run("migrate", cwd=tmp_path)  # a new installation with no users yet
    assert (await run("user", "add", "bob", cwd=tmp_path)).returncode == 0
    result = await run("user", "set-tier", "bob", "pro", "--json", cwd=tmp_path)
    assert json.loads(result.stdout)["tier"] == "pro"
    table = (await run("user", "list", cwd=tmp_path)).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "TIER", "ROLE", "CREATED_AT"] and table[1].split()[:3] == ["1", "bob", "pro"]
    token = json.loads((await run("token", "create", "--user", "bob", "--json", cwd=tmp_path)).stdout)
    assert token["token"].startswith("thotto_")
    revoked = json.loads((await run("token", "revoke", str(token["id"]), "--json", cwd=tmp_path)).stdout)
    assert revoked["revoked_at"]
    missing = await run("token", "create", "--user", "nobody", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nobody" in missing.stderr


async def test_posts_are_scheduled_listed_and_cancelled_with_the_apis_rules(sandbox, tmp_path):
    env = {"THOTTO_REDDIT_URL": sandbox.url, "THOTTO_REDDIT_CLIENT_ID": CLIENT_ID,
           "THOTTO_REDDIT_CLIENT_SECRET": CLIENT_SECRET}
    await run("migrate", cwd=tmp_path)
    await run("user", "add", "carol", "--tier", "pro", cwd=tmp_path)
    await run("account", "link", "--user", "carol", "--reddit-username", "carol_r", "--password-stdin",
              cwd=tmp_path, env=env, stdin="pw\n")
    result = await run("post", "schedule", "--user", "carol", "--subreddit", "test", "--title", "From the CLI",
                       "--text", "hi", "--at", "+2h", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (post,) = json.loads(result.stdout)
    assert post["status"] == "scheduled" and post["subreddit"] == "test"
    duplicate = await run("post", "schedule", "--user", "carol", "--subreddit", "test", "--title", "from the cli",
                          "--text", "hi", "--at", "+3h", cwd=tmp_path, env=env)
    assert duplicate.returncode == 2 and f"Post {post['id']}" in duplicate.stderr
    too_far = await run("post", "schedule", "--user", "carol", "--subreddit", "test", "--title", "later",
                        "--at", "+9d", cwd=tmp_path, env=env)
    assert too_far.returncode == 2 and "Premium" in too_far.stderr
    bad_time = await run("post", "schedule", "--user", "carol", "--subreddit", "test", "--title", "x",
                         "--at", "tomorrow", cwd=tmp_path, env=env)
    assert bad_time.returncode == 2 and "--at" in bad_time.stderr
    listed = await run("post", "list", "--user", "carol", cwd=tmp_path)
    assert "From the CLI" in listed.stdout and "scheduled" in listed.stdout
    cancelled = await run("post", "cancel", "--user", "carol", str(post["id"]), "--json", cwd=tmp_path)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"


async def test_a_title_that_is_not_utf8_is_one_clear_line(tmp_path):
    """Bytes that are not UTF-8 reach Python as lone surrogates (here U+DCFF, the byte 0xFF)."""
    await run("migrate", cwd=tmp_path)
    await run("user", "add", "dave", "--tier", "pro", cwd=tmp_path)
    result = await run("post", "schedule", "--user", "dave", "--subreddit", "test", "--title", "bad\udcff",
                       "--at", "+2h", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "title" in result.stderr and "UTF-8" in result.stderr


async def test_status_shows_queues_and_cron_jobs(tmp_path):
    await run("init", cwd=tmp_path)
    result = await run("status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [cron["name"] for cron in report["crons"]] == ["retention", "media-retention"]
    assert "THOTTO_TOKEN" in report["breakers"]


async def test_the_openapi_and_settings_commands_print_documents(tmp_path):
    document = json.loads((await run("openapi", cwd=tmp_path)).stdout)
    assert document["openapi"] == "3.1.0" and "/api/scheduled-posts" in document["paths"]
    table = (await run("settings", cwd=tmp_path)).stdout
    assert "| `api_port` | `THOTTO_API_PORT` | `8000` |" in table


async def test_media_upload_stores_an_image_without_its_metadata(tmp_path):
    from tests.support import images

    await run("init", cwd=tmp_path)
    (tmp_path / "photo.jpg").write_bytes(images.jpeg(orientation=6))
    result = await run("media", "upload", "photo.jpg", "--user", "admin", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    media = json.loads(result.stdout)
    assert media["kind"] == "jpeg" and media["removed"] == ["EXIF (GPS, camera)", "XMP", "comment"]
    table = await run("media", "upload", "photo.jpg", "--user", "admin", "--keep-metadata", cwd=tmp_path)
    assert table.returncode == 0 and "removed: nothing" in table.stdout
    (tmp_path / "notes.png").write_text("not an image")
    refused = await run("media", "upload", "notes.png", "--user", "admin", cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "PNG, JPEG, GIF or WebP" in refused.stderr
    assert list((tmp_path / "thotto-data" / "media-uploads").iterdir()) == []
