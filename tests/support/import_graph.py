"""The import graph of the project's own modules, read from the source (AST, nothing imported).

Every ``import`` statement counts, wherever it stands: at module level, under
``if TYPE_CHECKING:`` or inside a function. A cycle hidden behind a lazy or type-only import is
still a cycle of the design, so it is counted like any other.

``python -m tests.support.import_graph`` prints the cycles (strongly connected components of more
than one module) among ``thotto`` and ``actors``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("thotto", "actors")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function or under ``if TYPE_CHECKING:``: not run at import time


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` by dotted name (a package is its ``__init__``)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def edges(known: dict[str, Path]) -> list[Edge]:
    """Every import of one known module by another (``from a import b`` names ``a.b`` when that
    is a module, else ``a``)."""
    found = set()
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        deferred = _deferred_imports(tree)
        for node in ast.walk(tree):
            for target in _targets(node, package, known):
                if target != name:
                    found.add(Edge(name, target, node.lineno, id(node) in deferred))
    return sorted(found, key=lambda edge: (edge.source, edge.line, edge.target))


def _deferred_imports(tree: ast.Module) -> set[int]:
    """The ids of import nodes inside a function or an ``if TYPE_CHECKING:`` block."""
    deferred = set()
    for node in ast.walk(tree):
        hides = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
        if hides:
            deferred.update(id(inner) for inner in ast.walk(node)
                            if isinstance(inner, (ast.Import, ast.ImportFrom)))
    return deferred


def _targets(node: ast.AST, package: str, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    targets = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in known:
            targets.append(submodule)
        elif base in known:
            targets.append(base)
    return targets


def graph(found: list[Edge], *, deferred: bool = True) -> dict[str, set[str]]:
    """Adjacency sets; ``deferred=False`` keeps only the imports run at import time."""
    out: dict[str, set[str]] = {}
    for edge in found:
        if deferred or not edge.deferred:
            out.setdefault(edge.source, set()).add(edge.target)
    return out


def cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:  # iterative, so deep graphs do not hit the recursion limit
        nonlocal counter
        work = [(root, iter(sorted(adjacency.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(adjacency.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(adjacency):
        if node not in index:
            visit(node)
    return sorted(components)


def describe(component: list[str], found: list[Edge], known: dict[str, Path]) -> str:
    """The imports that hold a cycle together, one per line, with file and line."""
    members = set(component)
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for edge in found:
        if edge.source in members and edge.target in members:
            path = known[edge.source].relative_to(ROOT)
            how = " (deferred)" if edge.deferred else ""
            lines.append(f"  {path}:{edge.line}: {edge.source} -> {edge.target}{how}")
    return "\n".join(lines)


def main() -> int:
    known = modules()
    found = edges(known)
    components = cycles(graph(found))
    eager = cycles(graph(found, deferred=False))
    print(f"{len(known)} modules, {len(found)} imports, {len(components)} cycles "
          f"({len(eager)} among imports run at import time: "
          f"{', '.join(str(len(component)) for component in eager) or 'none'} modules)")
    for component in components:
        print(describe(component, found, known))
    return 1 if components else 0


if __name__ == "__main__":
    sys.exit(main())
