"""The generated documents in docs/ match what the code generates now."""

from __future__ import annotations

from pathlib import Path

from thotto.api.openapi import markdown
from thotto.config import reference_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_api_reference_is_current():
    assert (DOCS / "api.md").read_text() == markdown() + "\n", "regenerate: thotto openapi --markdown > docs/api.md"


def test_the_settings_reference_is_current():
    assert reference_table() in (DOCS / "settings.md").read_text(), "regenerate: see docs/settings.md's first line"
