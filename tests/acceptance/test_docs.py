"""The generated documents in docs/ match what the code generates now."""

from __future__ import annotations

import re
from pathlib import Path

from thotto.api.openapi import markdown
from thotto.api.routes import all_endpoints
from thotto.config import reference_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_api_reference_is_current():
    assert (DOCS / "api.md").read_text() == markdown(all_endpoints()) + "\n", "regenerate: thotto openapi --markdown > docs/api.md"


def test_the_settings_reference_is_current():
    assert reference_table() in (DOCS / "settings.md").read_text(), "regenerate: see docs/settings.md's first line"


ROOT = DOCS.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_link_in_the_docs_stays_in_the_repository_and_resolves():
    """A user's clone has only the repository: no link may leave it or point at nothing."""
    for document in [ROOT / "README.md", *DOCS.glob("*.md"), ROOT / "bench" / "README.md"]:
        for target in LINK.findall(document.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (document.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
            assert resolved.exists(), f"{document.name} links to {target}, which does not exist"


def test_no_comment_cites_a_document_outside_the_repository():
    sources = [*ROOT.glob("thotto/**/*.py"), *ROOT.glob("actors/*.py"), *ROOT.glob("bench/*.py")]
    citing = [str(path.relative_to(ROOT)) for path in sources if re.search(r"DESIGN §|\.\./shared|/work/", path.read_text())]
    assert not citing, f"cite docs/architecture.md instead: {citing}"


def test_the_readme_links_the_architecture():
    assert "](docs/architecture.md)" in (ROOT / "README.md").read_text()
