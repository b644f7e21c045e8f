"""`crypto-pipeline api` (in this process, uvicorn replaced by a recorder) and the API beside the dashboard
in `crypto-pipeline up` (its children replaced by recorders)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeline.api.server as server_module
from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.runtime import launcher as launcher_module
from tests.support.cli import Cli, in_process_cli
from tests.support.settings import make_settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `crypto-pipeline api` would have served (uvicorn is not started)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        server_module.uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs})
    )
    return calls


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Cli]:
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    yield run
    get_settings.cache_clear()


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/api.db"
    DatabaseService(settings=make_settings(url)).create_tables()
    return url


def test_api_serves_loopback_without_keys_and_warns(cli: Cli, database: str, served: list[dict[str, Any]]):
    outcome = cli("api", "--port", "8123", DATABASE_URL=database)
    assert outcome.code == 0, outcome
    assert "API on http://127.0.0.1:8123/v1" in outcome.out
    assert "warning: serving without API keys" in outcome.err
    assert [(c["host"], c["port"]) for c in served] == [("127.0.0.1", 8123)]
    assert served[0]["log_config"] is None  # the process's own logging, with its secret filter


def test_api_refuses_a_public_address_without_keys(cli: Cli, database: str, served: list[dict[str, Any]]):
    outcome = cli("api", "--host", "0.0.0.0", DATABASE_URL=database)
    assert outcome.code == 2
    lines = outcome.err.strip().splitlines()
    assert lines[-1].startswith("crypto-pipeline api: error: refusing to serve the API on 0.0.0.0")
    assert served == []


def test_api_serves_a_public_address_when_allowed_or_with_keys(
    cli: Cli, database: str, served: list[dict[str, Any]]
):
    allowed = cli("api", "--host", "0.0.0.0", DATABASE_URL=database, API_ALLOW_REMOTE_WITHOUT_KEYS="true")
    assert allowed.code == 0
    assert "anyone who can reach it can read" in allowed.err
    keyed = cli("api", "--host", "0.0.0.0", DATABASE_URL=database, API_KEYS="s3cret-key-of-the-api:read")
    assert keyed.code == 0
    assert "warning" not in keyed.err
    assert "s3cret-key-of-the-api" not in keyed.out + keyed.err
    assert [c["host"] for c in served] == ["0.0.0.0", "0.0.0.0"]


def test_api_never_creates_a_database(cli: Cli, tmp_path: Path, served: list[dict[str, Any]]):
    outcome = cli("api", DATABASE_URL=f"sqlite:///{tmp_path}/none/missing.db")
    assert outcome.code == 4
    assert not (tmp_path / "none").exists()
    assert served == []


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_api_checks_its_port(cli: Cli, database: str, port: str):
    outcome = cli("api", "--port", port, DATABASE_URL=database)
    assert outcome.code == 2
    assert "not a port" in outcome.err


class _Process:
    pid = 4242
    returncode = None
    args: list[str] = []

    def poll(self) -> None:
        return None


def _launcher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> launcher_module.Launcher:
    settings = make_settings(f"sqlite:///{tmp_path}/up.db", **env)
    started: list[tuple[str, list[str]]] = []

    def start(self: launcher_module.Launcher, name: str, args: list[str], _env: dict[str, str]) -> _Process:
        started.append((name, args))
        return _Process()

    monkeypatch.setattr(launcher_module.Launcher, "_start", start)
    monkeypatch.setattr(
        launcher_module, "wait_for_http", lambda url, _process: started.append(("wait", [url]))
    )
    launcher = launcher_module.Launcher(settings, demo=False, host=env.pop("HOST", "127.0.0.1"), port=8501)
    launcher.started = started  # type: ignore[attr-defined]
    return launcher


def test_up_starts_the_api_beside_the_dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    launcher = _launcher(monkeypatch, tmp_path)
    try:
        assert launcher.start() == "http://127.0.0.1:8501"
    finally:
        launcher.stop()
    started = dict(launcher.started)  # type: ignore[attr-defined]
    api = started["api"]
    assert api[-5:] == ["api", "--host", "127.0.0.1", "--port", str(launcher.api_port)]
    assert launcher.api_url == f"http://127.0.0.1:{launcher.api_port}"
    waits = [args[0] for name, args in launcher.started if name == "wait"]  # type: ignore[attr-defined]
    assert f"{launcher.api_url}/openapi.json" in waits


def test_up_keeps_an_open_api_on_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    open_api = launcher_module.Launcher(
        make_settings(f"sqlite:///{tmp_path}/a.db"), demo=False, host="0.0.0.0", port=8501
    )
    assert open_api.api_host == "127.0.0.1"
    keyed = launcher_module.Launcher(
        make_settings(f"sqlite:///{tmp_path}/b.db", API_KEYS="k-for-up:read"),
        demo=False,
        host="0.0.0.0",
        port=8501,
    )
    assert keyed.api_host == "0.0.0.0"
    for launcher in (open_api, keyed):
        launcher.stop()


def test_up_prints_the_api_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(launcher_module.Launcher, "start", lambda self: "http://127.0.0.1:8501")
    monkeypatch.setattr(launcher_module.Launcher, "watch", lambda self: 0)
    monkeypatch.setattr(launcher_module.signal, "signal", lambda *_args: None)
    settings = make_settings(f"sqlite:///{tmp_path}/up.db")
    assert launcher_module.up(settings, demo=False, api_port=8765) == 0
    assert "  API: http://127.0.0.1:8765/v1 (docs: http://127.0.0.1:8765/docs)" in capsys.readouterr().out
