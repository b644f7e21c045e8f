"""`crypto-pipeline metrics`: where it may listen, its failures in one line, and (slow) the real process
serving /metrics over HTTP, riding out a database that is down when it starts, stopping on SIGTERM, and
started by `crypto-pipeline up`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from benchmarks.harness.outages import proxied
from benchmarks.harness.processes import free_port, process_env, stop, wait_for
from pipeline.config import get_settings
from pipeline.metrics.binding import listen_refusal
from pipeline.runtime.launcher import Launcher
from pipeline.simulator.netfault import PgProxy
from tests.dashboard.seed import populate
from tests.metrics.scraping import Scrape
from tests.support.cli import in_process_cli
from tests.support.databases import migrated
from tests.support.factories import finished_run
from tests.support.settings import make_settings


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    yield in_process_cli(monkeypatch, capsys, tmp_path)
    get_settings.cache_clear()


def test_it_refuses_a_non_loopback_address_unless_allowed(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/pipeline.db"
    refused = cli("metrics", "--host", "0.0.0.0", DATABASE_URL=url)
    assert refused.code == 2
    assert refused.err.count("\n") == 2, refused.err  # the database line, then one line: why and what to do
    assert "METRICS_ALLOW_REMOTE=true" in refused.err
    assert "Traceback" not in refused.err
    assert not (tmp_path / "pipeline.db").exists()

    settings = make_settings(url)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert listen_refusal(settings, host) is None, host
    assert listen_refusal(settings, "192.0.2.10") is not None
    assert listen_refusal(make_settings(url, METRICS_ALLOW_REMOTE=True), "0.0.0.0") is None


def test_bad_arguments_and_a_missing_database_end_in_one_line(cli, tmp_path):
    bad_port = cli("metrics", "--port", "70000")
    assert bad_port.code == 2
    assert "not a port" in bad_port.err
    missing = cli(
        "metrics", "--port", str(free_port()), DATABASE_URL=f"sqlite:///{tmp_path}/none/pipeline.db"
    )
    assert missing.code == 4, missing  # no database: a reader never creates one
    assert not (tmp_path / "none").exists()
    assert "Traceback" not in missing.err


def test_up_puts_its_exporter_on_loopback_unless_allowed(tmp_path):
    url = f"sqlite:///{tmp_path}/pipeline.db"
    everywhere = Launcher(make_settings(url), demo=False, host="0.0.0.0", port=free_port(), metrics_port=9999)
    allowed = Launcher(
        make_settings(url, METRICS_ALLOW_REMOTE=True), demo=False, host="0.0.0.0", port=free_port()
    )
    for launcher in (everywhere, allowed):
        shutil.rmtree(launcher._state_dir)  # made by the constructor; nothing was started
    assert everywhere.metrics_url == "http://127.0.0.1:9999/metrics"
    assert allowed.metrics_host == "0.0.0.0"


# ---------------------------------------------------------------------------------------------- processes


def _start(url: str, port: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.cli", "metrics", "--port", str(port)],
            env=process_env(DATABASE_URL=url, LOG_LEVEL="INFO"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _scrape(base: str) -> Scrape | None:
    try:
        response = httpx.get(f"{base}/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    return Scrape.parse(response.text) if response.status_code == 200 else None


@pytest.mark.slow
def test_the_process_serves_metrics_over_http_and_stops_on_sigterm(tmp_path):
    url = f"sqlite:///{tmp_path}/pipeline.db"
    db = migrated(make_settings(url))
    populate(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(url, port, tmp_path / "metrics.log")
    try:
        first = wait_for(lambda: _scrape(base), 60, what="the exporter")
        assert first.value("crypto_pipeline_database_up") == 1
        response = httpx.get(f"{base}/metrics", timeout=10)
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE crypto_pipeline_runs_total counter" in response.text
        assert httpx.get(base, timeout=10).status_code == 200  # a page pointing at /metrics
        assert httpx.get(f"{base}/nothing", timeout=10).status_code == 404

        unit = {"source": "blockchair", "data_type": "addresses", "coin": "dogecoin"}
        before = first.value("crypto_pipeline_runs_total", **unit, status="failed") or 0
        finished_run(db, "failed", **unit)
        after = _scrape(base)
        assert after is not None
        assert after.value("crypto_pipeline_runs_total", **unit, status="failed") == before + 1

        started = time.monotonic()
        assert stop(process, signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - started < 5
        log = (tmp_path / "metrics.log").read_text()
        assert f"metrics on {base}/metrics" in log
        assert "Traceback" not in log
    finally:
        stop(process)
        db.dispose()


@pytest.mark.slow
def test_the_process_starts_and_serves_while_postgresql_is_down(migrated_postgres_url, tmp_path):
    target = make_url(migrated_postgres_url)
    with PgProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        url = proxied(migrated_postgres_url, proxy.port)
        migrated(make_settings(url)).dispose()
        proxy.cut()  # down before the exporter starts
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = _start(url, port, tmp_path / "metrics.log")
        try:
            down = wait_for(lambda: _scrape(base), 60, what="the exporter")
            assert down.value("crypto_pipeline_database_up") == 0
            assert process.poll() is None
            proxy.restore()
            up = wait_for(
                lambda: (s := _scrape(base)) and s.value("crypto_pipeline_database_up") == 1 and s, 30,
                what="database_up 1",
            )  # fmt: skip
            assert "crypto_pipeline_open_incidents" in up.families
        finally:
            assert stop(process) == 0
        log = (tmp_path / "metrics.log").read_text()
        assert "serving database_up 0 until it answers" in log
        assert "Traceback" not in log


@pytest.mark.slow
def test_up_starts_the_exporter_and_prints_its_address(tmp_path):
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.cli", "up", "--demo", "--port", str(port),
             "--metrics-port", str(metrics_port)],
            cwd=tmp_path, env=process_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        printed = wait_for(
            lambda: re.search(r"Metrics: (http://\S+/metrics)", log.read_text()), 120, what="up"
        )
        assert printed.group(1) == f"http://127.0.0.1:{metrics_port}/metrics"
        base = f"http://127.0.0.1:{metrics_port}"
        # The demo's scheduler runs units: the exporter, reading the demo's database, counts them.
        wait_for(
            lambda: (s := _scrape(base)) and sum(s.samples["crypto_pipeline_runs_total"].values()) > 0, 120,
            what="runs counted by the exporter up started",
        )  # fmt: skip
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(60)
    assert _scrape(f"http://127.0.0.1:{metrics_port}") is None  # stopped with the rest
