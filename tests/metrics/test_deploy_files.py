"""The shipped Grafana dashboard and Prometheus rules use only metrics the exporter serves, the README lists
every metric it serves, and the exporter serves exactly the families it documents (`METRICS`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.metrics.collector import METRICS
from tests.dashboard.seed import populate, seed_incidents
from tests.metrics.scraping import Scrape, scrape_registry
from tests.support.databases import migrated
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\bcrypto_pipeline_[a-z0-9_]+")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory) -> Scrape:
    """One scrape of a database where every family has samples (runs in every state, one running, a
    live worker, incidents, stored blocks and prices)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('deploy')}/pipeline.db"
    db = migrated(make_settings(url))
    populate(db)
    seed_incidents(db)
    _, scraped = scrape_registry(db)
    db.dispose()
    return scraped


def _expressions(node: object) -> list[str]:
    """Every `expr` in a JSON document (the dashboard's panel targets)."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in _expressions(value)]
    return []


def test_the_exporter_serves_exactly_the_documented_families(scrape):
    served = {name: kind for name, kind in scrape.families.items() if name.startswith("crypto_pipeline_")}
    # The parser names a counter's family without its `_total`.
    documented = {info.name.removesuffix("_total"): info.kind for info in METRICS.values()}
    assert served == documented
    assert all(scrape.samples.get(name) for name in METRICS), "a documented metric without a sample"


def test_every_metric_the_grafana_dashboard_queries_is_served(scrape):
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for panel in panels:  # every query goes to the data source the viewer picked
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {"${datasource}"}, panel["title"]
    expressions = _expressions(dashboard)
    used = {name for expr in expressions for name in NAME.findall(expr)}
    assert used <= scrape.names, used - scrape.names
    # What the dashboard is for: runs, failures, freshness, incidents, gaps, budget, rows.
    for needed in (
        "crypto_pipeline_runs_total",
        "crypto_pipeline_last_success_timestamp_seconds",
        "crypto_pipeline_blocks_behind_tip",
        "crypto_pipeline_price_age_seconds",
        "crypto_pipeline_open_incidents",
        "crypto_pipeline_gap_missing",
        "crypto_pipeline_requests_spent",
        "crypto_pipeline_daily_request_budget",
        "crypto_pipeline_table_rows",
    ):
        assert needed in used, needed
    assert any('status="failed"' in expr for expr in expressions)  # failures, not only all runs


def test_every_metric_the_alert_rules_use_is_served(scrape):
    rules = [r for group in yaml.safe_load(ALERTS.read_text())["groups"] for r in group["rules"]]
    used = {name for rule in rules for name in NAME.findall(rule["expr"])}
    assert used <= scrape.names, used - scrape.names
    names = {rule["alert"] for rule in rules}
    assert {"CryptoPipelineSchedulerDead", "CryptoPipelineStaleData", "CryptoPipelineUnitFailing"} <= names


def test_the_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in METRICS if f"`{name}`" not in readme]
    assert missing == []
