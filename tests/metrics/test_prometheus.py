"""A real Prometheus (Debian's `prometheus` package) scraping `crypto-pipeline metrics` every second, with
the shipped scrape config and alert rules: a value the test causes (a failed run) shows in its query
API, and every shipped alert goes pending on a scenario made for it. `promtool` checks the shipped config
and rules, and runs their unit tests (`prometheus_rules_test.yml`).

Prometheus runs as the test's own process on 127.0.0.1 with its own config and storage in a temporary
folder: the Debian package's service (if one runs) is neither used nor touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import update

from benchmarks.harness.processes import free_port, process_env, stop, wait_for
from pipeline.models import SchedulerHeartbeat
from pipeline.store.runs import RunSlice
from tests.support.databases import migrated
from tests.support.factories import finished_run
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
HERE = Path(__file__).resolve().parent
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
FAILING = {"source": "blockchair", "data_type": "addresses", "coin": "dogecoin"}


def _require(binary: str) -> str:
    if not Path(binary).exists():
        if os.environ.get("REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{binary} is missing (apt-get install prometheus)")
        pytest.skip(f"{binary} is missing (apt-get install prometheus)")
    return binary


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_require(PROMTOOL), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_shipped_config_and_rules():
    rules = _promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 7 rules found" in rules.stdout
    config = _promtool("check", "config", str(DEPLOY / "prometheus.yml"))  # also checks its rule files
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alert_rules_pass_their_unit_tests():
    result = _promtool("test", "rules", str(HERE / "prometheus_rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# ---------------------------------------------------------------------------------------------- scenario


def _seed(db) -> None:
    """What every shipped alert is about: a scheduler silent for 10 minutes, bitcoin's prices 10 days
    old, a unit whose last success is 3 days old, a source past 90% of its budget."""
    db.beat("gone-host:1:dead00", current_job=None)
    with db.transaction() as conn:
        conn.execute(update(SchedulerHeartbeat).values(last_beat=db.db_now(conn) - timedelta(minutes=10)))
        db.set_bookmarks(conn, "BTC", price_bookmark=datetime.now(UTC).date() - timedelta(days=10))
    old = db.start_run(RunSlice(**FAILING, params={}), trigger="schedule", parent_run_id=None)
    db.finish_run(old, status="success", finished_at=datetime.now(UTC))
    with db.transaction() as conn:  # that success was three days ago
        from pipeline.models import DataIngestionLog

        three_days = db.db_now(conn) - timedelta(days=3)
        conn.execute(
            update(DataIngestionLog)
            .where(DataIngestionLog.id == old)
            .values(started_at=three_days, finished_at=three_days)
        )
    budget = db.settings.COINGECKO_DAILY_REQUEST_BUDGET
    run = db.start_run(
        RunSlice("coingecko", "prices", "ethereum", {}), trigger="schedule", parent_run_id=None
    )
    db.finish_run(run, status="success", finished_at=datetime.now(UTC), requests_made=budget)


@pytest.fixture
def scenario(tmp_path) -> Iterator[tuple]:
    """The exporter (a `crypto-pipeline metrics` process) over the seeded SQLite database, and Prometheus
    scraping it every second with the shipped config and rules; yields (db, Prometheus's URL, exporter)."""
    _require(PROMETHEUS)
    url = f"sqlite:///{tmp_path}/pipeline.db"
    db = migrated(make_settings(url))
    _seed(db)
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.cli", "metrics", "--port", str(exporter_port)],
        env=process_env(DATABASE_URL=url),
        stdout=(tmp_path / "exporter.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())  # the shipped one, pointed at ours
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]
    (job,) = config["scrape_configs"]
    job |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter_port}"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        stdout=(tmp_path / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield db, f"http://127.0.0.1:{prometheus_port}", exporter
    finally:
        stop(prometheus)
        stop(exporter)
        db.dispose()
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)


def _query(base: str, expr: str) -> list[dict] | None:
    try:
        reply = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def _value(base: str, expr: str) -> float | None:
    result = _query(base, expr)
    return float(result[0]["value"][1]) if result else None


def _alerts(base: str) -> dict[str, str]:
    try:
        reply = httpx.get(f"{base}/api/v1/alerts", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {a["labels"]["alertname"]: a["state"] for a in reply["data"]["alerts"]}


def test_prometheus_scrapes_a_value_the_test_caused_and_the_shipped_alerts_fire(scenario):
    db, base, exporter = scenario
    wait_for(
        lambda: _value(base, "crypto_pipeline_database_up") == 1, 60, what="Prometheus scraping the exporter"
    )
    labels = ",".join(f"{name}='{value}'" for name, value in FAILING.items())
    failed = f"crypto_pipeline_runs_total{{{labels},status='failed'}}"
    assert _value(base, failed) == 0  # the unit ran (three days ago), and never failed

    finished_run(db, "failed", **FAILING)  # the value the test causes
    wait_for(lambda: _value(base, failed) == 1, 30, what="the failed run in Prometheus")
    assert _value(base, f"increase({failed}[5m])") > 0

    # Every shipped alert whose condition the scenario meets goes pending (their `for:` keeps them there).
    expected = {
        "CryptoPipelineSchedulerDead",
        "CryptoPipelineStaleData",
        "CryptoPipelineUnitFailing",
        "CryptoPipelineUnitNoRecentSuccess",
        "CryptoPipelineQuotaNearlySpent",
    }
    states = wait_for(lambda: (a := _alerts(base)).keys() >= expected and a, 60, what=f"alerts {expected}")
    assert set(states) == expected, states  # and nothing else: the database and the exporter are up
    assert set(states.values()) == {"pending"}
    stale = _query(base, 'ALERTS{alertname="CryptoPipelineStaleData"}')
    assert {(a["metric"]["coin"], a["metric"]["data_type"]) for a in stale} == {("bitcoin", "prices")}

    rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
    assert len(rules) == 7
    assert {rule["health"] for rule in rules} == {"ok"}, rules  # every expression evaluates cleanly

    # The database goes away: the exporter says so; then the exporter itself goes away.
    path = Path(str(db.engine.url.database))
    path.rename(path.with_suffix(".aside"))
    wait_for(lambda: "CryptoPipelineDatabaseUnreachable" in _alerts(base), 30, what="database unreachable")
    stop(exporter)
    wait_for(lambda: "CryptoPipelineExporterDown" in _alerts(base), 30, what="exporter down")
