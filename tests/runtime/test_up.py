"""`crypto-pipeline up --demo`: one command starts simulator, scheduler, watcher, dashboard (and a webhook
sink for the alerts), and stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.harness.processes import free_port, process_env, stop, wait_for

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


def start_up(tmp_path: Path, port: int) -> subprocess.Popen:
    """`crypto-pipeline up --demo` in its own session, logging to tmp_path/up.log."""
    log = (tmp_path / "up.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.cli", "up", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_up_demo_serves_the_dashboard_and_fills_the_database_within_a_minute(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port)
    db_path = tmp_path / "data" / "demo.db"
    try:
        wait_for(lambda: _health(f"http://127.0.0.1:{port}/_stcore/health"), 60, what="dashboard health")
        for table in ("blockchain_blocks", "blockchain_transactions", "market_prices"):
            wait_for(lambda t=table: _rows(db_path, t) > 0, 60, what=f"rows in {table}")
        names = " | ".join(_children(proc.pid).values())
        assert " watch" in names, names  # the watcher runs beside the scheduler and the dashboard
        # `up` prints its summary once every child answers (the exporter last, after its first read of
        # the run log), which on a busy machine can come after the first rows: wait for it.
        sink = re.compile(r"Alerts: (http://127\.0\.0\.1:\d+/received)")
        alerts = wait_for(
            lambda: sink.search((tmp_path / "up.log").read_text()),
            60,
            what="the Alerts line of up's summary",
        )
        with urllib.request.urlopen(alerts.group(1), timeout=5) as response:  # the demo's webhook sink
            assert isinstance(json.loads(response.read()), list)
        # The demo's world, for commands from another shell.
        world = (tmp_path / "data" / "demo.env").read_text()
        assert "DATABASE_URL=sqlite:///./data/demo.db" in world
        assert "SIMULATED_DATA=true" in world
        # A second `up` on the same database refuses and names the first one's dashboard.
        second = subprocess.run(
            [sys.executable, "-m", "pipeline.runtime.cli", "up", "--demo", "--port", str(free_port())],
            cwd=tmp_path,
            env=process_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1, second.stderr
        assert f"its dashboard is http://127.0.0.1:{port}" in second.stderr
        assert _health(f"http://127.0.0.1:{port}/_stcore/health")  # the first one is untouched
    finally:
        code = stop(proc, signal.SIGINT, timeout=60)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert f"Dashboard: http://127.0.0.1:{port}" in output
    assert "stopped cleanly" in output
    assert not _health(f"http://127.0.0.1:{port}/_stcore/health")
    assert "Traceback" not in output


def _children(pid: int) -> dict[int, str]:
    """The direct children of a process: pid -> command line (from /proc, no extra dependency)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found[int(stat.parent.name)] = cmdline
    return found


def _cli_pid(up_pid: int, command: str) -> int | None:
    """The child running `crypto-pipeline <command>` (`run`: the scheduler, `watch`: the watcher)."""
    return next(
        (
            pid
            for pid, cmd in _children(up_pid).items()
            if "pipeline.runtime.cli" in cmd and f" {command} " in cmd
        ),
        None,
    )


def _scheduler_pid(up_pid: int) -> int | None:
    return _cli_pid(up_pid, "run")


def test_up_restarts_a_scheduler_that_dies_and_keeps_the_dashboard_up(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port)
    health = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        wait_for(lambda: _health(health), 60, what="dashboard health")
        first = wait_for(lambda: _scheduler_pid(proc.pid), 30, what="the scheduler process")
        dashboard = next(pid for pid, cmd in _children(proc.pid).items() if "streamlit" in cmd)
        watcher = wait_for(lambda: _cli_pid(proc.pid, "watch"), 30, what="the watcher process")
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: (pid := _scheduler_pid(proc.pid)) not in (None, first) and pid,
            30,
            interval=0.1,
            what="a new scheduler process",
        )
        assert _health(health), "the dashboard went down with the scheduler"
        assert dashboard in _children(proc.pid), "the dashboard was restarted, not kept"
        assert watcher in _children(proc.pid), "the watcher was restarted, not kept"
        environ = Path(f"/proc/{dashboard}/environ").read_bytes().split(b"\0")
        state_path = next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"LAUNCHER_STATE_FILE="))
        state = json.loads(Path(state_path.decode()).read_text())
        scheduler = state["children"]["scheduler"]
        assert scheduler["restarts"] == 1, state
        assert scheduler["last_exit_code"] == -signal.SIGKILL, state
        assert scheduler["pid"] == second, state
        assert state["children"]["dashboard"]["restarts"] == 0, state
        assert state["children"]["watch"]["restarts"] == 0, state
        assert state["children"]["watch"]["pid"] == watcher, state
    finally:
        code = stop(proc, signal.SIGINT, timeout=60)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert "scheduler exited with code -9" in output
    assert "Traceback" not in output
