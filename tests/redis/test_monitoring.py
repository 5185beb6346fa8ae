"""What the operator watches names what the bridge exports: every metric in the Grafana
dashboard's queries, the alert rules and the README is in a real scrape of ``/metrics`` of a
fleet that ran cycles (real Redis), with the label values the queries select on."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_bridge.cli.embedded import free_port
from orchestrator_bridge.metrics import serve_metrics
from producer_tasks.state.status import write_bridge_status
from tests.conftest import make_runtime
from tests.redis.eager import run_next, serve, start

pytestmark = pytest.mark.usefixtures("eager")
ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "k8s" / "components" / "monitoring"
METRIC = re.compile(r"\bproducer_[a-z_]+\b")
LABELS = {"producer_id"}  # the one label of ours named like a metric
SELECTOR = re.compile(r"\b(producer_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"$]*)"')  # label="value" (not =~ and not $variables)


def scrape(rt: Any) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it has, from a real ``GET /metrics``."""
    port = free_port()
    server = serve_metrics(rt.fleet, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.close()
    samples: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', rest.partition("}")[0])) if rest else {}
            samples.setdefault(name.split()[0], []).append(labels)
    return samples


@pytest.fixture
def exported(redis_url: str, installed_runtime: Any) -> dict[str, list[dict[str, str]]]:
    """A fleet with a budget that ran a few cycles (bloom on) and a bridge that reported."""
    rt, rec = make_runtime(redis_url, PRODUCER_BUDGET_USD="5")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    rt.lanes.reconcile()
    for _ in range(4):
        run_next(rec)
    write_bridge_status(rt.fleet, {"connected": 1, "batches_forwarded": 3, "connects": 1})
    return scrape(rt)


def queries() -> dict[str, str]:
    """Where -> PromQL, for the dashboard's targets and the alert rules."""
    found = {}
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    (rules,) = [d for d in yaml.safe_load_all((MONITORING / "alerts.yaml").read_text()) if d]
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    return found


def test_every_query_names_exported_metrics_and_label_values(
    exported: dict[str, list[dict[str, str]]],
) -> None:
    checked = 0
    for where, expr in queries().items():
        names = set(METRIC.findall(expr)) - LABELS
        assert names, f"{where} names no producer metric: {expr}"
        assert names <= set(exported), f"{where}: not exported: {sorted(names - set(exported))}"
        for name, matchers in SELECTOR.findall(expr):
            for label, value in MATCHER.findall(matchers):
                values = {labels.get(label) for labels in exported[name]}
                assert value in values, f"{where}: {name} has no {label}={value!r} (has {values})"
                checked += 1
    assert checked >= 3  # status="unhealthy", phase="running", outcome="success" at least


def test_the_readme_names_only_exported_metrics(exported: dict[str, list[dict[str, str]]]) -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`(producer_[a-z_]+)(?:\{[a-z_]+\})?`", readme)) - LABELS
    histograms = {name.removesuffix("_bucket") for name in exported if name.endswith("_bucket")}
    assert "producer_cost_usd_total" in named and "producer_requests_total" in named
    unknown = sorted(named - set(exported) - histograms)
    assert not unknown, f"README names metrics the bridge does not export: {unknown}"
