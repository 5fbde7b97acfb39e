"""The job store (thotto.store.jobs, the engine's store to be) imports nothing of the product:
only the modules the engine will own (records, errors, the sidecar, the clock, private files,
the job records of store.base) and itself. Checked on the source, since importing any thotto
module still loads most of the product today (the engine split is under way)."""

from __future__ import annotations

import ast
from pathlib import Path

JOB_STORE = Path(__file__).parents[2] / "thotto" / "store" / "jobs"
ALLOWED = {"thotto.messages", "thotto.errors", "thotto.aio", "thotto.clock", "thotto.files",
           "thotto.store.base"}


def thotto_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("thotto")}


def test_the_job_store_imports_only_what_the_engine_will_own():
    modules = sorted(JOB_STORE.glob("*.py"))
    assert {path.name for path in modules} >= {"__init__.py", "core.py", "sqlite.py", "postgres.py"}
    for path in modules:
        imports = thotto_imports(path)
        outside = {name for name in imports - ALLOWED if not name.startswith("thotto.store.jobs")}
        assert not outside, f"{path.name} imports {sorted(outside)}"
