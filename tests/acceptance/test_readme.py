"""The README's promises, run as a new user would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.support.process_output import Output

# These start run.py, whose demo sandbox listens on the default port 8765: under pytest-xdist they
# all run in one worker, one at a time.
pytestmark = pytest.mark.xdist_group("demo-port-8765")

ROOT = Path(__file__).resolve().parents[2]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_embedding_example_runs(tmp_path):
    (example,) = [block for block in readme_python_blocks() if "import thotto" in block]
    script = tmp_path / "example.py"
    product = ("thotto.scheduler", "thotto.store", "thotto.reddit", "thotto.api", "thotto.app",
               "thotto.vault", "httpx", "cryptography", "starlette", "hypercorn", "prometheus_client")
    script.write_text(example + "\nimport sys\nprint('loaded of the product:', sorted(name for name in "
                      f"sys.modules if name.startswith({product!r})))\n")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hello, world (attempt 1)" in result.stdout
    assert re.search(r"job \d+ ran", result.stdout)
    assert "loaded of the product: []" in result.stdout  # an embedder gets the engine alone
    assert (tmp_path / "thotto-example" / "thotto.db").exists()


def test_the_webhook_receivers_check_accepts_thottos_signature_and_nothing_else():
    from thotto.scheduler.webhooks import sign

    (snippet,) = [block for block in readme_python_blocks() if "def verified" in block]
    namespace: dict = {}
    exec(snippet, namespace)
    verified = namespace["verified"]
    body, now = b'{"event": "post_published"}', int(time.time())
    assert verified("s3cret", sign("s3cret", now, body), body)
    assert not verified("another", sign("s3cret", now, body), body)
    assert not verified("s3cret", sign("s3cret", now, body), body + b" ")
    assert not verified("s3cret", sign("s3cret", now - 3600, body), body)  # a replay, an hour on


def start_run_py(cwd: Path, **env: str) -> tuple[subprocess.Popen, Output]:
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py")], cwd=cwd, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "THOTTO_API_PORT": "0", **env})
    return process, Output(process)


def test_the_first_post_curl_computes_its_time_without_gnu_date():
    """The README's curl computes "a minute from now" with python3, not GNU ``date -d`` (which
    macOS lacks): run its command substitution through a shell as a reader would."""
    (command,) = re.findall(r'"scheduledFor": "\'\$\((.*?)\)\'"', (ROOT / "README.md").read_text())
    printed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0, printed.stderr
    when = datetime.fromisoformat(printed.stdout.strip())
    assert timedelta(seconds=30) < when - datetime.now(timezone.utc) <= timedelta(seconds=61)


def test_python_m_thotto_is_the_thotto_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "thotto", "--version"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("thotto "), result.stderr


def test_first_start_then_the_documented_first_post_publishes_exactly_once(tmp_path):
    process, output = start_run_py(tmp_path)
    try:
        url = output.wait_for(r"serving \(API on (http://\S+);")[1]
        token = output.wait_for(r"export THOTTO_TOKEN=(\S+)")[1]
        headers = {"authorization": f"Bearer {token}"}
        when = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
        body = {"subreddit": "test", "title": "My first Thotto post", "text": "Hello!", "scheduledFor": when}
        created = httpx.post(f"{url}/api/scheduled-posts", json=body, headers=headers)
        assert created.status_code == 201, created.text
        post_id = created.json()["posts"][0]["id"]
        deadline = time.monotonic() + 20
        while (post := httpx.get(f"{url}/api/scheduled-posts/{post_id}", headers=headers).json())["status"] != "published":
            assert time.monotonic() < deadline, post
            time.sleep(0.1)
        assert post["redditUrl"].startswith("http://127.0.0.1:") and post["attempts"][0]["outcome"] == "completed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    record = (tmp_path / "thotto-data" / "sandbox" / "posts.jsonl").read_text().splitlines()
    assert len([line for line in record if "My first Thotto post" in line]) == 1


def test_run_py_serves_on_embedded_defaults_and_stops_cleanly_on_sigterm(tmp_path):
    process, output = start_run_py(tmp_path)
    try:
        output.wait_for("serving")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert (tmp_path / "thotto-data" / "thotto.db").exists()


def test_a_bad_setting_is_one_clear_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "run.py")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "THOTTO_WORKERS": "zero"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "thotto: Invalid setting workers (THOTTO_WORKERS): Expected `int`, got `str`"
    ]


def test_a_second_process_on_the_same_sqlite_file_is_refused(tmp_path):
    first, output = start_run_py(tmp_path)
    try:
        output.wait_for("serving")
        second = subprocess.run([sys.executable, str(ROOT / "run.py")], cwd=tmp_path, capture_output=True,
                                text=True, timeout=30, env={**os.environ, "THOTTO_API_PORT": "0"})
        assert second.returncode == 2
        assert "thotto:" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
