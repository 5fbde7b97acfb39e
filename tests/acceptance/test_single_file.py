"""The single-file build: ``bash scripts/build-single-file`` (README, "Single file")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.process_output import Output

ROOT = Path(__file__).resolve().parents[2]


def test_the_pyz_starts_and_answers_health(tmp_path):
    pyz = tmp_path / "thotto.pyz"
    build = subprocess.run(["bash", "scripts/build-single-file", str(pyz)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "SHIV_ROOT": str(tmp_path / "shiv-root")})
    assert build.returncode == 0, build.stderr[-2000:]
    process = subprocess.Popen([sys.executable, str(pyz), "serve", "--demo", "--data-dir", str(tmp_path / "data")],
                               cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "THOTTO_API_PORT": "0", "SHIV_ROOT": str(tmp_path / "shiv-root")})
    output = Output(process)
    try:
        url = output.wait_for(r"serving \(API on (http://\S+);", timeout=60)[1]
        assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
        # The app's templates and static files travel in the file too (package data).
        link = output.wait_for(r"(http://\S+/set-password/\S+)")[1]
        assert "Set your password" in httpx.get(link).text
        page = httpx.get(f"{url}/sign-in").text
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
            assert httpx.get(url + asset).status_code == 200, asset
        assert "/static/app.js" in page and "/static/app.css" in page
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
