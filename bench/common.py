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
from typing import Any

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


def print_table(results: list[Result], targets: dict[str, tuple[str, float]] | None = None) -> None:
    """Print results as an aligned table; ``targets`` maps name (or "store:name") to
    (">=" or "<=", value). Peer results show their ratio (Thotto ÷ peer) in the last column."""
    targets = targets or {}
    rows = [("name", "store", "value", "unit", "target", "", "thotto/peer")]
    for result in results:
        target = target_for(result, targets)
        ratio = result.params.get("ratio")
        rows.append(
            (
                result.name,
                result.store or "",
                f"{result.value:,.2f}" if abs(result.value) < 100 else f"{result.value:,.0f}",
                result.unit,
                f"{target[0]} {target[1]:,}" if target else "",
                _verdict(result.value, target),
                f"{ratio:.3g}x" if isinstance(ratio, (int, float)) else str(ratio or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) if i != 2 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def target_for(result: Result, targets: dict[str, tuple[str, float]]) -> tuple[str, float] | None:
    return targets.get(f"{result.store}:{result.name}") or targets.get(result.name)


def _verdict(value: float, target: tuple[str, float] | None) -> str:
    if target is None:
        return ""
    op, bound = target
    met = value >= bound if op == ">=" else value <= bound
    return "ok" if met else "MISSED"


def write_json(path: str, results: list[Result], postgres_dsn: str | None = None,
               targets: dict[str, tuple[str, float]] | None = None) -> None:
    """``{"env": {...}, "results": [...]}``; a result with a target also gets ``target`` and ``met``."""
    records = []
    for result in results:
        record = result.as_json()
        target = target_for(result, targets or {})
        if target is not None:
            record["target"] = f"{target[0]} {target[1]}"
            record["met"] = _verdict(result.value, target) == "ok"
        records.append(record)
    document = {"env": environment(postgres_dsn), "results": records}
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
