"""A self-hoster's day (issue #18): a first start that cannot lose the token, and the ``thotto``
command working while ``python run.py`` serves on SQLite, through its control socket. Real
processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.acceptance.test_readme import ROOT, start_run_py

# These start run.py, whose demo sandbox listens on the default port 8765: under pytest-xdist they
# all run in one worker, one at a time.
pytestmark = pytest.mark.xdist_group("demo-port-8765")


def thotto(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thotto", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_a_first_start_on_a_taken_port_is_one_line_and_the_next_start_lets_the_admin_in(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = subprocess.run([sys.executable, str(ROOT / "run.py")], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60, env={**os.environ, "THOTTO_API_PORT": str(port),
                                                                 "THOTTO_DEMO_SANDBOX_PORT": "0"})
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"thotto: Cannot listen on 127.0.0.1:{port} (Address already in use); set api_port "
        "(THOTTO_API_PORT) to a free port, or stop what uses it"]
    process, output = start_run_py(tmp_path)
    try:
        url = output.wait_for(r"serving \(API on (http://\S+);")[1]
        token = output.wait_for(r"export THOTTO_TOKEN=(\S+)")[1]
        me = httpx.get(f"{url}/api/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["name"] == "admin"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def serving(tmp_path):
    """``python run.py`` serving on SQLite in tmp_path, with its URL and the admin's token."""
    process, output = start_run_py(tmp_path)
    try:
        url = output.wait_for(r"serving \(API on (http://\S+);")[1]
        token = output.wait_for(r"export THOTTO_TOKEN=(\S+)")[1]
        yield url, token
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_the_cli_works_while_the_server_holds_the_sqlite_file(serving, tmp_path):
    url, token = serving
    api = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"})
    scheduled = thotto("post", "schedule", "--user", "admin", "--subreddit", "test", "--title", "From the CLI",
                       "--text", "hi", "--at", "+1h", "--json", cwd=tmp_path)
    assert scheduled.returncode == 0, scheduled.stderr
    (post,) = json.loads(scheduled.stdout)
    listed = thotto("post", "list", "--user", "admin", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    through_api = api.get("/api/scheduled-posts").json()["posts"]
    assert [(p["id"], p["title"], p["status"]) for p in json.loads(listed.stdout)] == \
        [(p["id"], p["title"], p["status"]) for p in through_api] == [(post["id"], "From the CLI", "scheduled")]
    users = thotto("user", "list", "--json", cwd=tmp_path)
    assert [u["name"] for u in json.loads(users.stdout)] == ["admin"]


def test_the_cli_meets_the_servers_checks_and_says_so_in_one_line(serving, tmp_path):
    """The server knows its Reddit (here the demo sandbox): a subreddit that does not exist is
    refused by the CLI as by the API."""
    refused = thotto("post", "schedule", "--user", "admin", "--subreddit", "no_such_place", "--title", "Lost",
                     "--text", "hi", "--at", "+1h", cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "no_such_place" in refused.stderr and "Traceback" not in refused.stderr
    unknown = thotto("post", "list", "--user", "nobody", cwd=tmp_path)
    assert unknown.returncode == 2 and "nobody" in unknown.stderr


def test_status_shows_the_running_servers_breakers(serving, tmp_path):
    status = thotto("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    breakers = json.loads(status.stdout)["breakers"]
    assert isinstance(breakers, list), breakers


def test_a_lost_first_token_is_recovered_with_one_command(serving, tmp_path):
    url, _lost = serving
    created = thotto("token", "create", "--user", "admin", "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    assert httpx.get(f"{url}/api/me", headers={"authorization": f"Bearer {token}"}).json()["name"] == "admin"


def test_the_control_socket_is_for_the_owner_only(serving, tmp_path):
    sock = tmp_path / "thotto-data" / "control.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_the_cli_elsewhere_names_where_it_looked_instead_of_making_an_empty_installation(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = thotto("user", "list", cwd=elsewhere)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(elsewhere / "thotto-data") in result.stderr and "--data-dir" in result.stderr
    assert not (elsewhere / "thotto-data").exists()


def test_the_cli_shows_edits_and_repeats_posts_as_the_api_does(serving, tmp_path):
    url, token = serving
    api = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"})
    day = (datetime.now(timezone.utc) + timedelta(days=10)).date()
    berlin = datetime.combine(day, time(9, 30), ZoneInfo("Europe/Berlin"))
    scheduled = thotto("post", "schedule", "--user", "admin", "--subreddit", "test", "--title", "Weekly notes",
                       "--text", "hi", "--at", f"{day}T09:30", "--tz", "Europe/Berlin", "--repeat", "weekly",
                       "--count", "3", "--json", cwd=tmp_path)
    assert scheduled.returncode == 0, scheduled.stderr
    (post,) = json.loads(scheduled.stdout)
    assert datetime.fromisoformat(post["scheduledFor"]) == berlin  # 09:30 in Berlin, kept in UTC
    assert post["recurrence"] == {"type": "Recurrence", "frequency": "weekly", "interval": 1, "timezone": "Europe/Berlin",
                                  "until": None, "count": 3}
    edited = thotto("post", "edit", str(post["id"]), "--user", "admin", "--title", "Weekly notes, edited",
                    "--spoiler", "--json", cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    shown = thotto("post", "show", str(post["id"]), "--user", "admin", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout) == api.get(f"/api/scheduled-posts/{post['id']}").json()
    assert json.loads(shown.stdout)["title"] == "Weekly notes, edited" and json.loads(shown.stdout)["spoiler"]
    table = thotto("post", "show", str(post["id"]), "--user", "admin", "--tz", "America/New_York", cwd=tmp_path)
    new_york = berlin.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M %Z")
    assert new_york in table.stdout  # times in the zone asked for, to the minute
    nothing = thotto("post", "edit", str(post["id"]), "--user", "admin", cwd=tmp_path)
    assert nothing.returncode == 2 and "needs something to change" in nothing.stderr
    bad_zone = thotto("post", "list", "--user", "admin", "--tz", "Mars/Olympus", cwd=tmp_path)
    assert bad_zone.returncode == 2 and "IANA" in bad_zone.stderr


def test_the_cli_uploads_images_and_schedules_a_gallery_while_the_server_runs(serving, tmp_path):
    from tests.support.images import jpeg, png

    url, token = serving
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "garden.jpg").write_bytes(jpeg(orientation=6))
    (tmp_path / "pictures" / "cat.png").write_bytes(png(orientation=1))
    scheduled = thotto("post", "schedule", "--user", "admin", "--subreddit", "test", "--title", "Two pictures",
                       "--image", "pictures/garden.jpg", "--image", "pictures/cat.png", "--caption", "My garden",
                       "--at", "+1h", "--json", cwd=tmp_path)  # relative paths, read by the server
    assert scheduled.returncode == 0, scheduled.stderr
    assert "removed: EXIF (GPS" in scheduled.stderr  # the photo lost its location before storing
    (post,) = json.loads(scheduled.stdout)
    assert post["kind"] == "gallery" and [m["caption"] for m in post["mediaIds"]] == ["My garden", None]
    media = httpx.get(f"{url}/api/media", headers={"authorization": f"Bearer {token}"}).json()
    assert sorted(m["id"] for m in media["media"]) == sorted(m["id"] for m in post["mediaIds"])
    missing = thotto("post", "schedule", "--user", "admin", "--subreddit", "test", "--title", "Nothing",
                     "--image", "pictures/none.png", "--at", "+1h", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
