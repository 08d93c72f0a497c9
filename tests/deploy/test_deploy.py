"""The files under deploy/: Prometheus accepts the rules and the scrape configuration, every query
of the Grafana dashboard and of the alert rules names only metrics a running gateway or worker
really exports (scraped here from real ones), and the dashboard shows every metric they export."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from tests.deploy.promql import metric_names
from tests.integration.conftest import gateway_settings, started_gateway
from tests.integration.workers import Worker, worker_env

DEPLOY = Path(__file__).parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "persona-stream.json"
SUFFIXES = {  # the sample names of one metric family, by its type (the Prometheus text format)
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
SYNTHETIC = {"up"}  # written by Prometheus itself for every scrape


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is required: it comes with the Debian package prometheus (CI installs it)"
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_alert_rules_and_the_scrape_config() -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", str(RULES))
    assert "is valid prometheus config file syntax" in promtool("check", "config", str(SCRAPE_CONFIG))


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert tested == alerts
    promtool("test", "rules", str(RULE_TESTS))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def exported(url: str) -> tuple[set[str], set[str]]:
    """(the family names, every sample name) of one ``/metrics`` page, whether or not it has samples yet."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    families = list(text_string_to_metric_families(text))
    names = {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}
    return {family.name for family in families}, names


def gateway_url(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.http_port}"


@pytest.mark.integration
async def test_every_query_names_only_metrics_the_gateway_and_workers_export(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    worker = Worker(worker_env(kafka_bootstrap, unique), tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    try:
        # (in a thread: the gateway answers from this event loop)
        gateway_families, gateway_names = await asyncio.to_thread(exported, f"{gateway_url(gateway)}/metrics")
        worker_families, worker_names = await asyncio.to_thread(exported, f"http://127.0.0.1:{worker.port}/metrics")
    finally:
        await gateway.stop()
        worker.stop()
    assert "persona_stream_gateway_ready" in gateway_families
    assert "persona_stream_worker_consumer_lag" in worker_families
    known = gateway_names | worker_names | SYNTHETIC

    queries = {"dashboard": dashboard_queries(), "rules": rule_queries()}
    assert len(queries["dashboard"]) > 20
    assert len(queries["rules"]) == 5
    for source, exprs in queries.items():
        for expr in exprs:
            names = metric_names(expr)
            assert names, (source, expr)
            assert names <= known, (source, expr, names - known)

    # and the dashboard leaves none of the metrics out
    shown = {name for expr in queries["dashboard"] for name in metric_names(expr)}
    for family in gateway_families | worker_families:
        if family.endswith("_created"):
            continue  # when each series was created: a timestamp, nothing to chart
        assert any(name == family or name.startswith(family + "_") for name in shown), family


def test_the_grafana_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    every = list(panels(dashboard))
    assert len({panel["id"] for panel in every}) == len(every)
    cells: set[tuple[int, int]] = set()
    for panel in every:
        box = panel["gridPos"]
        assert box["x"] + box["w"] in range(box["w"], 25), panel["title"]  # inside Grafana's 24 columns
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(set(refs)) == len(refs), panel["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
