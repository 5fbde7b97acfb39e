"""Which package may import which (docs/architecture.md, "Where things live"), read from the
source: every import statement counts, also inside functions and under ``if TYPE_CHECKING:``.

The job engine stands alone; the supervision runtime knows nothing of Thotto; no two modules
need each other; only the entry points know the composition root.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import import_graph

KNOWN = import_graph.modules()
EDGES = import_graph.edges(KNOWN)


def _imports(source_prefixes: tuple[str, ...]) -> list[import_graph.Edge]:
    return [edge for edge in EDGES if edge.source.startswith(source_prefixes)]


def _where(edges: list[import_graph.Edge]) -> str:
    return "\n".join(f"{KNOWN[edge.source].relative_to(import_graph.ROOT)}:{edge.line}: "
                     f"{edge.source} imports {edge.target}" for edge in edges)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_graph_sees_the_packages_it_judges():
    """A check that reads nothing passes anything: make sure it reads the real tree."""
    for module in ("thotto.engine.engine", "thotto.engine.workers", "thotto.scheduler.scheduler",
                   "thotto.app", "actors"):
        assert module in KNOWN
    assert any(edge.source == "thotto.app" and edge.target == "thotto.engine.engine" for edge in EDGES)


def test_the_engine_imports_nothing_of_thotto_outside_the_engine():
    wrong = [edge for edge in _imports(("thotto.engine",))
             if edge.target.startswith("thotto") and not _within(edge.target, "thotto.engine")]
    assert not wrong, "the engine must not know the product built on it:\n" + _where(wrong)


def test_the_actors_runtime_never_imports_thotto():
    wrong = [edge for edge in _imports(("actors",)) if _within(edge.target, "thotto")]
    assert not wrong, _where(wrong)


def test_the_scheduler_knows_the_engine_not_the_layers_above_it():
    above = ("thotto.app", "thotto.api", "thotto.web", "thotto.cli", "thotto.commands",
             "thotto.control", "thotto.monitor", "thotto.usecases")
    wrong = [edge for edge in _imports(("thotto.scheduler",))
             if any(_within(edge.target, layer) for layer in above)]
    assert not wrong, _where(wrong)


def test_only_the_entry_points_know_the_composition_root():
    entry_points = ("thotto.cli", "thotto.commands", "thotto.__main__")
    wrong = [edge for edge in EDGES if edge.target == "thotto.app" and edge.source not in entry_points]
    assert not wrong, "pass what a part needs instead of importing thotto.app:\n" + _where(wrong)


# The CLI is an entry point too: without a server it opens the store for the commands that work on
# users and tokens (their use cases take the store), and it reads the URL's scheme to know whether
# a server owns the database. Every other client goes through the API's context.
CLIENTS_OPENING_THE_STORE = {("thotto.cli", "thotto.store"), ("thotto.commands", "thotto.store")}


def test_clients_do_not_open_the_store_or_reach_its_adapters():
    adapters = ("thotto.store", "thotto.store.sqlite", "thotto.store.postgres")
    wrong = [edge for edge in _imports(("thotto.api", "thotto.web", "thotto.cli", "thotto.commands"))
             if edge.target in adapters and (edge.source, edge.target) not in CLIENTS_OPENING_THE_STORE]
    assert not wrong, _where(wrong)


def test_no_import_cycles_among_the_projects_modules():
    cycles = import_graph.cycles(import_graph.graph(EDGES))
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(
        import_graph.describe(cycle, EDGES, KNOWN) for cycle in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_graph.cycles({"a": {"b"}, "b": set()}) == []


HEAVY = ("thotto.reddit", "thotto.api", "thotto.scheduler", "thotto.vault", "thotto.store",
         "thotto.app", "httpx", "cryptography", "prometheus_client", "starlette", "hypercorn",
         "asyncpg", "redis", "PIL")


@pytest.mark.parametrize("module", ["thotto.engine", "thotto"])
def test_importing_the_engine_loads_nothing_of_the_product(module):
    probe = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True,
                                       capture_output=True, text=True).stdout)
    assert "thotto" in loaded
    heavy = sorted(name for name in loaded if any(_within(name, package) for package in HEAVY))
    assert not heavy, f"import {module} loaded {heavy}"


def test_the_cron_evaluator_loads_with_the_first_schedule_not_with_the_engine():
    probe = ("import json, sys; import thotto.engine, thotto.engine.cron; before = 'cronsim' in sys.modules; "
             "thotto.engine.cron.CronSchedule('0 9 * * *', 'Europe/Paris'); "
             "print(json.dumps([before, 'cronsim' in sys.modules, 'zoneinfo' in sys.modules]))")
    found = json.loads(subprocess.run([sys.executable, "-c", probe], check=True,
                                      capture_output=True, text=True).stdout)
    assert found == [False, True, True]
