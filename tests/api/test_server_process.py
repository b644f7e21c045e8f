"""`crypto-pipeline api` as a process: it serves the seeded database over HTTP, requires its key when
API_KEYS is set, keeps the key out of its output, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.harness.processes import free_port, process_env, stop, wait_for
from pipeline.database import DatabaseService
from tests.api.seed import populate
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow

KEY = "process-test-key-0123456789"


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our loopback server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_the_api_process_serves_the_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/api.db"
    db = DatabaseService(settings=make_settings(url))
    db.create_tables()
    populate(db)
    db.dispose()
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.cli", "api", "--port", str(port)],
            env=process_env(DATABASE_URL=url, API_KEYS=f"{KEY}:read"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/openapi.json")[0] == 200, 30, what="the API")
        assert _get(f"{base}/v1/coins")[0] == 401
        status, body = _get(f"{base}/v1/coins/ETH/transactions?limit=2", KEY)
        assert status == 200
        page = json.loads(body)
        assert len(page["data"]) == 2
        assert page["next_cursor"]
        status, body = _get(f"{base}/v1/health", KEY)
        assert status == 200
        assert json.loads(body)["data"]["database"]["ok"] is True
    finally:
        code = stop(process)
    output = log.read_text()
    assert code in (0, -15), output  # uvicorn re-raises SIGTERM once it has shut down: a clean exit by it
    assert f"API on {base}/v1" in output
    assert KEY not in output
    assert "Traceback" not in output
