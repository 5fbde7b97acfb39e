"""The job store (thotto.store.jobs, the engine's store to be) imports nothing of the product:
only the engine (its records, errors, sidecar, clock and JobStore protocol), the private-files
helper and itself. Checked on the source: the same rule the engine's own import test applies,
for code that is to move under thotto/engine/store/."""

from __future__ import annotations

import ast
from pathlib import Path

JOB_STORE = Path(__file__).parents[2] / "thotto" / "store" / "jobs"
# thotto.store.base: the store broadcasts' helpers (the cache's invalidation bus rides on the
# job store's connection); they move with it.
ALLOWED = {"thotto.files", "thotto.store.base"}


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
        outside = {name for name in imports - ALLOWED
                   if not name.startswith(("thotto.store.jobs", "thotto.engine"))}
        assert not outside, f"{path.name} imports {sorted(outside)}"
