"""What every bench shares: results, the environment record, the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import trio

import thotto


@dataclass
class Result:
    """One measured figure. ``params`` says how it was measured (sizes, store, workers)."""

    name: str
    value: float
    unit: str
    store: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list] = field(default_factory=dict, repr=False)
    """Raw samples for ``--plot`` (lateness values, drain progress); not written to JSON."""

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "value": _rounded(self.value), "unit": self.unit}
        if self.store:
            record["store"] = self.store
        record.update(self.params)
        return record


def _rounded(value: float) -> float:
    """Three decimals, or four significant digits for values below 1 (CPU seconds per job)."""
    return float(f"{value:.4g}") if 0 < abs(value) < 1 else round(value, 3)


def _shown(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:,.2f}"


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line per step on stderr (the results table goes to stdout), with seconds elapsed."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def report(result: "Result") -> "Result":
    """Announce a fresh result on the progress line and hand it back."""
    where = f" [{result.store}]" if result.store else ""
    progress(f"  {result.name}{where} = {result.value:,.2f} {result.unit}")
    return result


def latency_results(prefix: str, samples_ms: list[float], store: str | None,
                    params: dict[str, Any]) -> list["Result"]:
    """``prefix.p50``, ``.p99`` and ``.max`` (ms) of ``samples_ms`` (not yet reported); the
    samples go to the plot."""
    ordered = sorted(samples_ms)
    quantiles = statistics.quantiles(ordered, n=100, method="inclusive")
    figures = [("p50", quantiles[49]), ("p99", quantiles[98]), ("max", ordered[-1])]
    return [Result(f"{prefix}.{label}", value, "ms", store, dict(params), series={"samples_ms": ordered})
            for label, value in figures]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def stop_processes(processes: list[trio.Process], timeout: float = 30.0) -> None:
    """SIGINT each still-running process, SIGKILL what is left after ``timeout``; reap them all.
    Shielded: it runs in ``finally`` blocks, also after a cancellation."""
    with trio.CancelScope(shield=True):
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            with trio.move_on_after(timeout):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


def environment(postgres_dsn: str | None = None) -> dict[str, Any]:
    """The machine and versions the figures were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": _postgres_version(postgres_dsn) or _command_version(["psql", "--version"]),
        "redis": _command_version(["redis-server", "--version"]),
        "thotto": thotto.__version__,
    }


def _postgres_version(dsn: str | None) -> str | None:
    """The server's own version (psql's is only the client's)."""
    if not dsn:
        return None
    import asyncio

    import asyncpg

    async def ask() -> str:
        connection = await asyncpg.connect(dsn, timeout=5)
        try:
            return await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()

    try:
        return f"PostgreSQL {asyncio.run(ask())}"
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return None


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


class Target(NamedTuple):
    """A goal for one figure: ``value op bound``. With ``of``, the bound is a ratio: the figure
    divided by the result named ``of`` (same store, measured in the same run) must be ``op bound``.
    Machines here differ by 3-4x from day to day, so speed goals are ratios to a reference."""

    op: str  # ">=" or "<="
    bound: float
    of: str | None = None

    def describe(self) -> str:
        return f"{self.op} {self.bound:,}" + (f"x {self.of}" if self.of else "")


Targets = dict[str, Target]
"""Result name (or "store:name") → its target."""
References = dict[str, str]
"""Result name (or "store:name") → the result it is shown as a ratio to, without a target."""


def attach_references(fresh: list[Result], earlier: list[Result], targets: Targets,
                      references: References) -> None:
    """Give each fresh result that has a reference its ``ratio`` (value ÷ reference),
    ``reference`` and ``reference_value`` params. The reference is looked for among the fresh
    results first (the suite measured it beside the figure), then among earlier ones."""
    for result in fresh:
        target = target_for(result, targets)
        name = (target.of if target and target.of else None) or _keyed(result, references)
        if name is None:
            continue
        reference = _find(name, result.store, fresh) or _find(name, result.store, earlier)
        result.params["reference"] = name
        if reference is None or not reference.value:
            result.params["ratio"] = None
            continue
        result.params["reference_value"] = round(reference.value, 3)
        result.params["ratio"] = float(f"{result.value / reference.value:.3g}")


def _keyed(result: Result, table: dict[str, Any]) -> Any:
    return table.get(f"{result.store}:{result.name}") or table.get(result.name)


def _find(name: str, store: str | None, results: list[Result]) -> Result | None:
    return next((r for r in reversed(results) if r.name == name and r.store == store), None)


def print_table(results: list[Result], targets: Targets | None = None) -> None:
    """Print results as an aligned table; ``targets`` maps name (or "store:name") to a
    :class:`Target`. The last column is the ratio: to the result's reference (``0.23x
    raw.insert.single``), or for a peer's figures Thotto ÷ peer."""
    targets = targets or {}
    rows = [("name", "store", "value", "unit", "target", "", "ratio")]
    for result in results:
        target = target_for(result, targets)
        rows.append(
            (
                result.name,
                result.store or "",
                _shown(result.value),
                result.unit,
                target.describe() if target else "",
                verdict(result, target),
                _ratio_cell(result),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) if i != 2 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _ratio_cell(result: Result) -> str:
    ratio = result.params.get("ratio")
    reference = result.params.get("reference")
    if reference is not None:
        return f"{ratio:.3g}x {reference}" if ratio is not None else f"no {reference} in this run"
    if isinstance(ratio, (int, float)):
        return f"thotto {ratio:.3g}x"  # a peer's figure: Thotto's divided by the peer's
    return str(ratio or "")


def target_for(result: Result, targets: Targets) -> Target | None:
    return _keyed(result, targets)


def verdict(result: Result, target: Target | None) -> str:
    """"ok", "MISSED", "no reference" (a ratio target whose reference was not measured), or ""
    when the result has no target."""
    if target is None:
        return ""
    if target.of is None:
        value = result.value
    else:
        value = result.params.get("ratio")
        if value is None:
            return "no reference"
    met = value >= target.bound if target.op == ">=" else value <= target.bound
    return "ok" if met else "MISSED"


def write_json(path: str, results: list[Result], postgres_dsn: str | None = None,
               targets: Targets | None = None) -> None:
    """``{"env": {...}, "results": [...]}``; a result with a target also gets ``target`` and
    ``met`` (null when its reference was not measured)."""
    records = []
    for result in results:
        record = result.as_json()
        target = target_for(result, targets or {})
        if target is not None:
            record["target"] = target.describe()
            outcome = verdict(result, target)
            record["met"] = None if outcome == "no reference" else outcome == "ok"
        records.append(record)
    document = {"env": environment(postgres_dsn), "results": records}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
