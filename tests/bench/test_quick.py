"""The benches' quick smoke (``python -m bench --quick``): every suite runs and writes well-formed
JSON. Never checks a timing: speed is measured by the benches, not asserted by tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import PEERS

ROOT = Path(__file__).resolve().parents[2]
CORE_SUITES = ["store", "queue", "cache", "memory", "scaleout", "reliability", "api"]
EXPECTED = {
    "store.enqueue.concurrent", "store.enqueue.batch", "store.claim_complete.batch",
    "queue.enqueue.single", "queue.enqueue.concurrent", "queue.enqueue.batch", "queue.drain",
    "queue.lateness.p50", "queue.lateness.p99", "queue.lateness.max",
    "cache.l1.get", "cache.l2.get", "cache.l2.multiget", "cache.stampede.loads", "cache.zipf.db_reduction",
    "api.get_cached.p50", "api.get_cached.p99", "api.get_cached.rps", "api.schedule.p99",
    "memory.rss_1m_future_jobs",
    "scaleout.drain.1", "scaleout.drain.2", "scaleout.drain.4",
    "reliability.exactly_once",
}
ENV_KEYS = {"cpu", "cores", "python", "sqlite", "postgres", "redis", "thotto"}


def run_bench(tmp_path: Path, postgres_dsn: str, *suites: str) -> dict:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", *suites, "--quick", "--postgres-dsn", postgres_dsn,
               "--json", str(out)]
    if importlib.util.find_spec("matplotlib"):
        command += ["--plot", str(tmp_path / "plots")]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(out.read_text())


def assert_well_formed(document: dict) -> None:
    assert set(document["env"]) == ENV_KEYS
    for record in document["results"]:
        assert isinstance(record["name"], str) and isinstance(record["unit"], str)
        assert isinstance(record["value"], (int, float))
        assert record.get("store") in (None, "sqlite", "postgres")


@pytest.mark.slow
def test_every_core_suite_runs_quick_and_writes_its_results(tmp_path, postgres_dsn, redis_url):
    document = run_bench(tmp_path, postgres_dsn, *CORE_SUITES)
    assert_well_formed(document)
    names = {record["name"] for record in document["results"]}
    assert EXPECTED <= names, EXPECTED - names
    exactly_once = next(r for r in document["results"] if r["name"] == "reliability.exactly_once")
    assert exactly_once["posts"] > 0 and "duplicated" in exactly_once
    if importlib.util.find_spec("matplotlib"):
        drawn = {path.name for path in (tmp_path / "plots").iterdir()}
        assert {"lateness.png", "drain.png", "cache_hit_ratio.png", "scaleout.png"} <= drawn


@pytest.mark.slow
def test_the_peers_run_the_same_workload(tmp_path, postgres_dsn):
    missing = [peer for peer, (_, module) in PEERS.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"peers not installed ({', '.join(missing)}): pip install -e '.[bench-peers]'")
    document = run_bench(tmp_path, postgres_dsn, "peers")
    assert_well_formed(document)
    by_name = {record["name"]: record for record in document["results"]}
    for system in ["thotto", *PEERS]:
        for metric in ("enqueue", "drain", "lateness.p50", "lateness.p99"):
            assert f"peers.{system}.{metric}" in by_name, (system, metric)
    assert all(isinstance(by_name[f"peers.{peer}.drain"]["ratio"], float) for peer in PEERS)
