"""Names that say what they are: no two classes (or type aliases) in Thotto share a name, so a
name read anywhere (a traceback, a type hint, a search) means one thing."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("thotto", "actors")


def type_names(source: str) -> list[tuple[str, int]]:
    """Every class defined in ``source`` (nested ones too) and every module-level type alias (a
    capitalised name bound at the top, e.g. ``Handler = Callable[...]``; constants in capitals
    and one-letter type variables are not names of types)."""
    tree = ast.parse(source)
    names = [(node.name, node.lineno) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        else:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and _is_type_name(target.id):
                names.append((target.id, node.lineno))
    return names


def _is_type_name(name: str) -> bool:
    bare = name.lstrip("_")
    return len(bare) > 1 and bare[0].isupper() and not bare.isupper()


def shared_names(files: list[Path], root: Path = ROOT) -> dict[str, list[str]]:
    """Each name defined more than once, with where (paths relative to ``root``)."""
    where = defaultdict(list)
    for path in files:
        for name, line in type_names(path.read_text()):
            where[name].append(f"{path.relative_to(root)}:{line}")
    return {name: places for name, places in where.items() if len(places) > 1}


def test_no_two_classes_share_a_name():
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50  # the scan sees the packages (a wrong root would find nothing to clash)
    clashes = shared_names(files)
    assert not clashes, f"rename one of each so that a name means one thing: {clashes}"


def test_the_scan_finds_a_clash(tmp_path):
    """The check above can fail: two modules defining one name are caught, classes and aliases
    alike, while constants and type variables are not counted."""
    first, second = tmp_path / "a.py", tmp_path / "b.py"
    first.write_text("class Clock:\n    pass\nT = 1\nLIMIT = 2\n_Handler = int\n")
    second.write_text("Clock = int\nT = 2\nLIMIT = 3\nclass Outer:\n    class _Handler:\n        pass\n")
    assert shared_names([first, second], tmp_path) == {"Clock": ["a.py:1", "b.py:1"],
                                                       "_Handler": ["a.py:5", "b.py:5"]}
