"""The sandbox itself: its durable record across restarts, its control API, and `thotto sandbox`."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.reddit.conftest import SandboxServer
from thotto.reddit.sandbox import POSTS_FILE, SandboxConfig, serve_sandbox

ROOT = Path(__file__).resolve().parents[2]


async def test_the_record_survives_a_restart_and_ids_never_repeat(sandbox, reddit, alice):
    first = await alice.submit("test", "Before the restart", text="x")
    linked = reddit.account_from_password("bob_poster", "pw")
    await linked.me()

    await sandbox.stop()
    with pytest.raises(httpx.ConnectError):
        await sandbox.posts()
    await sandbox.start()  # same port, same data directory

    assert [post["id"] for post in await sandbox.posts()] == [first.id]
    # Access tokens died with the process: the client gets a 401, refreshes, and carries on.
    second = await alice.submit("test", "After the restart", text="x")
    assert second.id != first.id
    assert [post.title for post in await alice.submitted()] == ["After the restart", "Before the restart"]
    assert alice.token_requests == 2
    # The account (and its password) were kept.
    assert (await linked.me()).name == "bob_poster"


async def test_posts_are_on_disk_before_the_reply(sandbox, alice):
    result = await alice.submit("test", "Durable", text="x")
    lines = (sandbox.data_dir / POSTS_FILE).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [result.id]


async def test_a_torn_last_line_is_ignored(tmp_path, nursery):
    # A crash mid-write leaves half a line that was never acknowledged.
    data_dir = tmp_path / "torn"
    server = SandboxServer(nursery, data_dir, SandboxConfig())
    await server.start()
    await server.stop()
    good = {"id": "100000", "name": "t3_100000", "subreddit": "test", "title": "Kept", "author": "a",
            "created_utc": 1.0, "kind": "self", "url": "u", "permalink": "/p/"}
    (data_dir / POSTS_FILE).write_text(json.dumps(good) + "\n" + '{"id": "1000')
    await server.start()
    assert [post["title"] for post in await server.posts()] == ["Kept"]


async def test_reset_forgets_everything(sandbox, alice):
    await alice.submit("test", "Gone soon", image=b"\x89PNG\r\n\x1a\n....")
    await sandbox.configure(token_lifetime=5)
    await sandbox.faults(latency=0.01)
    await sandbox.control("POST", "/_sandbox/reset")
    assert await sandbox.posts() == []
    assert (await sandbox.control("GET", "/_sandbox/config")).json()["token_lifetime"] == 3600
    assert (await sandbox.control("GET", "/_sandbox/faults")).json()["latency"] == 0
    assert list((sandbox.data_dir / "media").iterdir()) == []
    # Tokens are gone too; the password grant creates the account again.
    await alice.me()
    assert alice.token_requests == 2


async def test_faults_show_what_is_left(sandbox, alice):
    await sandbox.faults(errors=[{"status": 500, "count": 2, "path": "/api/v1/me"}])
    for _ in range(2):
        with pytest.raises(Exception):
            await alice.me()
    await alice.me()
    assert (await sandbox.control("GET", "/_sandbox/faults")).json()["errors"][0]["count"] == 0


async def test_control_api_refuses_bad_input(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.post("/_sandbox/faults", content=b"{not json")).status_code == 400
        assert (await http.post("/_sandbox/faults", json={"latency": "slow"})).status_code == 400
        assert (await http.post("/_sandbox/config", json={"rate_budget": "many"})).status_code == 400
        assert (await http.post("/_sandbox/subreddits", json=[{"nom": "x"}])).status_code == 400


async def test_api_requires_a_bearer_token(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.get("/api/v1/me")
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthorized", "error": 401}
        response = await http.post("/api/v1/access_token", data={"grant_type": "password"})
        assert response.status_code == 401  # no client credentials


async def test_serve_sandbox_stops_gracefully_on_cancellation(tmp_path):
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            port = await nursery.start(serve_sandbox, "127.0.0.1", 0, tmp_path)
            assert port > 0
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/_sandbox/posts")).json() == {"posts": []}
        with trio.fail_after(5):
            scope.cancel()
            nursery.cancel_scope.cancel()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/_sandbox/posts")


def test_thotto_sandbox_command_starts_answers_and_stops(tmp_path):
    data_dir = tmp_path / "sandbox-data"
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from thotto.cli import main; sys.exit(main())",
         "sandbox", "--port", "0", "--data-dir", str(data_dir), "--rate-budget", "77"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = ""
        for line in process.stderr:
            if "listening on" in line:
                break
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/_sandbox/posts").json() == {"posts": []}
            assert http.get("/_sandbox/config").json()["rate_budget"] == 77
            token = http.post("/api/v1/access_token", auth=("app", "secret"),
                              data={"grant_type": "password", "username": "cli_user", "password": "pw"})
            assert token.json()["expires_in"] == 3600
        assert (data_dir / "state.json").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_thotto_sandbox_reports_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from thotto.cli import main; sys.exit(main())",
             "sandbox", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"cannot serve the sandbox on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
