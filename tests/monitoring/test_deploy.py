"""The Grafana dashboard and the example Prometheus alert rules in deploy/ name only metrics
that /metrics really exposes (checked after real jobs ran, over real HTTP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring.test_endpoints import run_jobs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GRAFANA = DEPLOY / "grafana" / "thotto.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bthotto_[a-z0-9_]+")


def grafana_expressions() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_files_have_the_expected_shape():
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["uid"] == "thotto" and len(dashboard["panels"]) >= 10
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    assert all({"alert", "expr", "annotations"} <= set(rule) for rule in rules)


async def test_every_metric_they_reference_is_exposed(api):
    await run_jobs(api)
    await api.admin.client.get("/api/monitoring/queue-metrics")  # a snapshot: waiting gauges set
    text = (await api.admin.client.get("/metrics")).text
    exposed = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        exposed.update(sample.name for sample in family.samples)
    referenced = {name for expr in grafana_expressions() + alert_expressions() for name in METRIC.findall(expr)}
    assert len(referenced) >= 15
    # A labelled family with no sample yet (no breaker has changed state) still declares itself.
    missing = [name for name in referenced
               if name not in exposed and re.sub(r"_(total|bucket|count|sum)$", "", name) not in exposed]
    assert missing == []
