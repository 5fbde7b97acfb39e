"""Run the chaos suite: ``python -m tests.chaos [--full] [pytest options]``.

Runs tests/chaos through pytest, then prints one line per scenario (passed or failed, and how
long it took) and ``N passed, M failed``. Exits non-zero if any scenario failed or none ran.
``--full`` runs the full sizes (``THOTTO_CHAOS_FULL=1``); any other argument goes to pytest,
e.g. ``-k postgres`` or ``-x``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


class ScenarioReport:
    """A pytest plugin collecting each scenario's outcome (setup, call and teardown together)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        name = report.nodeid.split("::", 1)[-1]
        self.durations[name] = self.durations.get(name, 0.0) + report.duration
        if report.failed:
            self.outcomes[name] = "failed"
        elif report.skipped:
            self.outcomes.setdefault(name, "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(name, "passed")


def describe(name: str) -> str:
    """``test_1_worker_killed_with_100_posts[x]`` -> ``1 worker killed with 100 posts [x]``."""
    base, _, params = name.partition("[")
    words = base.removeprefix("test_").replace("_", " ")
    return f"{words} [{params}" if params else words


def main(argv: list[str]) -> int:
    if "--full" in argv:
        argv = [arg for arg in argv if arg != "--full"]
        os.environ["THOTTO_CHAOS_FULL"] = "1"
    size = "full" if os.environ.get("THOTTO_CHAOS_FULL", "").lower() in ("1", "true", "yes") else "reduced"
    report = ScenarioReport()
    started = time.monotonic()
    code = pytest.main([str(HERE), "-m", "chaos", "-q", "-p", "no:cacheprovider", *argv], plugins=[report])
    elapsed = time.monotonic() - started
    print(f"\nchaos scenarios ({size} sizes):")
    for name, outcome in report.outcomes.items():
        mark = {"passed": "PASS", "failed": "FAIL"}.get(outcome, "SKIP")
        print(f"  {mark}  {describe(name)}  ({report.durations[name]:.1f} s)")
    passed = sum(outcome == "passed" for outcome in report.outcomes.values())
    failed = sum(outcome == "failed" for outcome in report.outcomes.values())
    skipped = len(report.outcomes) - passed - failed
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
          + f" in {elapsed:.0f} s")
    if failed or not passed:
        return code or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
