"""Targets as ratios: a figure divided by a reference measured in the same run, and the verdict
the table and the JSON give it."""

from __future__ import annotations

import json

from bench.common import Result, Target, attach_references, print_table, verdict, write_json

TARGETS = {"sqlite:queue.drain": Target(">=", 0.5, of="raw.claim_complete.batch"),
           "queue.lateness.p99": Target("<=", 2.0)}
REFERENCES = {"queue.lateness.p99": "raw.sleep_until.p99"}


def drain(value: float, store: str = "sqlite") -> Result:
    return Result("queue.drain", value, "jobs/s", store)


def raw(value: float, store: str = "sqlite") -> Result:
    return Result("raw.claim_complete.batch", value, "jobs/s", store)


def test_a_ratio_target_is_judged_on_the_figure_divided_by_its_reference():
    fast, slow = drain(60_000), drain(30_000)
    attach_references([raw(100_000), fast], [], TARGETS, REFERENCES)
    attach_references([raw(100_000), slow], [], TARGETS, REFERENCES)
    assert fast.params == {"reference": "raw.claim_complete.batch", "reference_value": 100_000,
                           "ratio": 0.6}
    assert verdict(fast, TARGETS["sqlite:queue.drain"]) == "ok"
    assert slow.params["ratio"] == 0.3
    assert verdict(slow, TARGETS["sqlite:queue.drain"]) == "MISSED"


def test_the_reference_is_the_one_of_the_same_store_and_the_nearest_run():
    figure = drain(50_000)
    earlier = [raw(1_000), raw(25_000, store="postgres")]
    attach_references([raw(200_000), figure], earlier, TARGETS, REFERENCES)
    assert figure.params["ratio"] == 0.25  # the suite's own reference, not the earlier one
    alone = drain(50_000)
    attach_references([alone], earlier, TARGETS, REFERENCES)
    assert alone.params["ratio"] == 50.0  # the earlier sqlite one; postgres's is not a reference


def test_a_missing_reference_is_neither_met_nor_missed(tmp_path, capsys):
    figure = drain(50_000)
    attach_references([figure], [], TARGETS, REFERENCES)
    assert figure.params == {"reference": "raw.claim_complete.batch", "ratio": None}
    assert verdict(figure, TARGETS["sqlite:queue.drain"]) == "no reference"
    write_json(str(tmp_path / "out.json"), [figure], None, TARGETS)
    (record,) = json.loads((tmp_path / "out.json").read_text())["results"]
    assert record["met"] is None and record["target"] == ">= 0.5x raw.claim_complete.batch"
    print_table([figure], TARGETS)
    assert "no raw.claim_complete.batch in this run" in capsys.readouterr().out


def test_a_reference_without_a_target_is_shown_beside_an_absolute_target(capsys):
    late = Result("queue.lateness.p99", 1.5, "ms", "postgres")
    floor = Result("raw.sleep_until.p99", 1.25, "ms", "postgres")
    attach_references([floor, late], [], TARGETS, REFERENCES)
    assert late.params["ratio"] == 1.2
    assert verdict(late, TARGETS["queue.lateness.p99"]) == "ok"  # judged on the value, 1.5 <= 2
    print_table([floor, late], TARGETS)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("queue.lateness"))
    assert "<= 2.0" in row and "ok" in row and "1.2x raw.sleep_until.p99" in row
