"""The README's promises, run as a new user would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_embedding_example_runs(tmp_path):
    (example,) = readme_python_blocks()
    script = tmp_path / "example.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hello, world (attempt 1)" in result.stdout
    assert re.search(r"job \d+ ran", result.stdout)
    assert (tmp_path / "thotto-example" / "thotto.db").exists()


def test_run_py_serves_on_embedded_defaults_and_stops_cleanly_on_sigterm(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py")], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stderr.readline()
        assert "serving" in first_line, first_line
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
    first = subprocess.Popen([sys.executable, str(ROOT / "run.py")], cwd=tmp_path,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in first.stderr.readline()
        second = subprocess.run([sys.executable, str(ROOT / "run.py")], cwd=tmp_path,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert "thotto:" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
