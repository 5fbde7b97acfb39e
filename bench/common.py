"""What every bench shares: results, the environment record, the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import thotto


@dataclass
class Result:
    """One measured figure. ``params`` says how it was measured (sizes, store, workers)."""

    name: str
    value: float
    unit: str
    store: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "value": round(self.value, 3), "unit": self.unit}
        if self.store:
            record["store"] = self.store
        record.update(self.params)
        return record


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


def environment(postgres_dsn: str | None = None) -> dict[str, Any]:
    """The machine and versions the figures were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": _command_version(["psql", "--version"]),
        "redis": _command_version(["redis-server", "--version"]),
        "thotto": thotto.__version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command_version(command: list[str]) -> str | None:
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output.strip() or None


def print_table(results: list[Result], targets: dict[str, tuple[str, float]] | None = None) -> None:
    """Print results as an aligned table; ``targets`` maps name → (">=" or "<=", value)."""
    targets = targets or {}
    rows = [("name", "store", "value", "unit", "target", "")]
    for result in results:
        target = targets.get(f"{result.store}:{result.name}") or targets.get(result.name)
        rows.append(
            (
                result.name,
                result.store or "",
                f"{result.value:,.1f}",
                result.unit,
                f"{target[0]} {target[1]:,}" if target else "",
                _verdict(result.value, target),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) if i != 2 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _verdict(value: float, target: tuple[str, float] | None) -> str:
    if target is None:
        return ""
    op, bound = target
    met = value >= bound if op == ">=" else value <= bound
    return "ok" if met else "MISSED"


def write_json(path: str, results: list[Result]) -> None:
    document = {"env": environment(), "results": [result.as_json() for result in results]}
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
