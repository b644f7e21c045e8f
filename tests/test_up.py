"""`crypto-pipeline up --demo`: one command starts simulator, scheduler and dashboard, and stops them all."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import urllib.request

import pytest

from tests.processes import free_port, process_env, stop, wait_for

pytestmark = pytest.mark.slow


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def _rows(db_path, table: str) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as conn:
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return 0


def test_up_demo_serves_the_dashboard_and_fills_the_database_within_a_minute(tmp_path):
    port = free_port()
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    db_path = tmp_path / "data" / "demo.db"
    try:
        wait_for(lambda: _health(f"http://127.0.0.1:{port}/_stcore/health"), 60, what="dashboard health")
        for table in ("blockchain_blocks", "blockchain_transactions", "market_prices"):
            wait_for(lambda t=table: _rows(db_path, t) > 0, 60, what=f"rows in {table}")
    finally:
        code = stop(proc, signal.SIGINT, timeout=60)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert f"Dashboard: http://127.0.0.1:{port}" in output
    assert "stopped cleanly" in output
    assert not _health(f"http://127.0.0.1:{port}/_stcore/health")
    assert "Traceback" not in output
