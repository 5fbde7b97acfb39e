"""docs/reddit.md names every Reddit endpoint the client calls."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def called_paths() -> set[str]:
    """The paths the client passes to its API helper, names of path parts made ``{...}``."""
    source = (ROOT / "thotto" / "reddit" / "client.py").read_text()
    paths = re.findall(r'_api\(\s*self, "[A-Z]+", f?"([^"]+)"', source)
    return {re.sub(r"\{[^}]*\}", "{}", path) for path in paths}


def test_every_endpoint_the_client_calls_is_documented():
    doc = re.sub(r"\{[^}]*\}", "{}", (ROOT / "docs" / "reddit.md").read_text())
    paths = called_paths() | {"/api/v1/access_token", "/api/v1/authorize"}
    assert len(paths) >= 10, paths  # the pattern still finds the calls
    assert sorted(path for path in paths if path not in doc) == []
    assert "(docs/reddit.md)" in (ROOT / "README.md").read_text()
