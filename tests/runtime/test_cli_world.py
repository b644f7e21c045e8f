"""The world a command talks to (issue 11 §4), in this process (`main([...])`).

`--env-file PATH` (before the command) reads settings from PATH instead of `.env`, environment variables
still winning, and a missing file is a one-line usage error; the file `up --demo` writes parses.
`simulate fault add|list|clear` drives a running simulator (a real one on 127.0.0.1 here) at `--url` or
BLOCKCHAIR_BASE_URL; a bad kind is a usage error and a simulator that does not answer is one line, exit 1.
`simulate --port P` still serves.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeline.runtime.cli as cli_module
import pipeline.simulator as simulator_module
from benchmarks.harness.processes import free_port
from pipeline.config import get_settings, load_settings
from pipeline.runtime.launcher import demo_overrides, write_env_file
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.cli import Cli, in_process_cli


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Cli]:
    """`crypto-pipeline ARGS` in this process, in an empty directory, with no inherited setting."""
    yield in_process_cli(monkeypatch, capsys, tmp_path)
    get_settings.cache_clear()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


def faults_of(sim: Simulator) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = sim.stats()["faults"]
    return faults


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- simulate fault ---------------------------------------------------------------------------------


def test_fault_add_list_clear_change_the_running_simulator(cli: Cli, sim: Simulator) -> None:
    url = ["--url", sim.base_url]
    added = cli(
        "simulate", "fault", "add", "--kind", "503", "--endpoint", "blocks", "--chain", "dogecoin", *url
    )
    assert added.code == 0, added
    assert added.err == ""  # `simulate` names no database
    assert "503 on blocks of dogecoin, 1 time" in added.out
    [rule] = faults_of(sim)
    assert (rule["kind"], rule["endpoint"], rule["chain"], rule["times"], rule["after"]) == (
        "503", "blocks", "dogecoin", 1, 0,
    )  # fmt: skip

    forever = cli(
        "simulate", "fault", "add", "--kind", "429", "--endpoint", "coingecko", "--until-cleared",
        "--after", "2", *url,
    )  # fmt: skip
    assert forever.code == 0, forever
    assert "until cleared, after letting 2 through" in forever.out
    rule = faults_of(sim)[1]
    assert (rule["kind"], rule["endpoint"], rule["chain"], rule["times"], rule["after"]) == (
        "429", "coingecko", None, None, 2,
    )  # fmt: skip
    three = cli("simulate", "fault", "add", "--kind", "timeout", "--endpoint", "any", "--times", "3", *url)
    assert three.code == 0, three
    assert faults_of(sim)[2]["times"] == 3

    listed = cli("simulate", "fault", "list", *url)
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert lines[0] == f"faults at {sim.base_url}:"
    header = lines[1].split()
    assert header == ["#", "kind", "endpoint", "chain", "after", "seen", "fired", "remaining"]
    assert lines[2].split() == ["1", "503", "blocks", "dogecoin", "0", "0", "0", "1"]
    assert lines[3].split() == ["2", "429", "coingecko", "any", "2", "0", "0", "until", "cleared"]
    assert lines[4].split() == ["3", "timeout", "any", "any", "0", "0", "0", "3"]
    assert "requests served:" in listed.out
    assert set(sim.request_counts()) <= set(listed.out.split())  # every counted endpoint is listed

    cleared = cli("simulate", "fault", "clear", *url)
    assert cleared.code == 0, cleared
    assert "cleared 3 fault rule(s)" in cleared.out
    assert faults_of(sim) == []
    empty = cli("simulate", "fault", "list", *url)
    assert empty.out.splitlines()[0] == f"faults at {sim.base_url}: none"


def test_remaining_counts_down_as_requests_are_faulted(cli: Cli, sim: Simulator) -> None:
    sim.add_fault(FaultRule("500", "ping", times=2))
    with pytest.raises(urllib.error.HTTPError):  # one request to the endpoint: the rule fires once
        urllib.request.urlopen(f"{sim.coingecko_url}/ping", timeout=5)
    listed = cli("simulate", "fault", "list", "--url", sim.coingecko_url)  # the CoinGecko URL works too
    assert listed.code == 0, listed
    assert listed.out.splitlines()[2].split() == ["1", "500", "ping", "any", "0", "1", "1", "1"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--kind", "404", "--endpoint", "blocks"], "argument --kind: invalid choice: '404'"),
        (["--kind", "503", "--endpoint", "nowhere"], "argument --endpoint: invalid choice: 'nowhere'"),
        (["--endpoint", "blocks"], "the following arguments are required: --kind"),
        (["--kind", "503", "--endpoint", "blocks", "--times", "0"], "argument --times"),
        (["--kind", "503", "--endpoint", "blocks", "--after", "-1"], "argument --after"),
        (
            ["--kind", "503", "--endpoint", "blocks", "--times", "2", "--until-cleared"],
            "not allowed with argument",
        ),
    ],
)
def test_a_bad_fault_is_a_usage_error(cli: Cli, sim: Simulator, args: list[str], complaint: str) -> None:
    outcome = cli("simulate", "fault", "add", *args, "--url", sim.base_url)
    assert outcome.code == 2, outcome
    assert complaint in one_line(outcome.err)
    assert faults_of(sim) == []


@pytest.mark.parametrize("action", [["add", "--kind", "503", "--endpoint", "blocks"], ["list"], ["clear"]])
def test_a_simulator_that_does_not_answer_is_one_line(cli: Cli, action: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    outcome = cli("simulate", "fault", *action, "--url", url)
    assert outcome.code == 1, outcome
    assert one_line(outcome.err).startswith(f"crypto-pipeline: error: no simulator answers at {url}: ")
    assert outcome.out == ""


def test_a_server_that_is_not_a_simulator_is_one_line(cli: Cli, sim: Simulator) -> None:
    outcome = cli("simulate", "fault", "list", "--url", f"{sim.base_url}/elsewhere")
    assert outcome.code == 1, outcome
    assert "not a simulator" in one_line(outcome.err)


def test_the_real_api_is_never_taken_for_a_simulator(cli: Cli) -> None:
    outcome = cli("simulate", "fault", "list")  # BLOCKCHAIR_BASE_URL: its default, the real API
    assert outcome.code == 2, outcome
    assert "--env-file data/demo.env" in one_line(outcome.err)


# --- --env-file -------------------------------------------------------------------------------------


def test_the_demo_env_file_parses_and_points_simulate_fault_at_the_simulator(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    overrides = demo_overrides(sim.base_url) | {
        "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
        "DASHBOARD_URL": "http://127.0.0.1:8501",
    }
    write_env_file(tmp_path / "data" / "demo.env", overrides)
    settings = load_settings(_env_file=tmp_path / "data" / "demo.env")  # its comment lines included
    world = {
        key: getattr(settings, key) for key in ("DATABASE_URL", "BLOCKCHAIR_BASE_URL", "COINGECKO_BASE_URL")
    }
    assert world == {
        "DATABASE_URL": overrides["DATABASE_URL"],
        "BLOCKCHAIR_BASE_URL": sim.base_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
    }
    assert settings.SIMULATED_DATA is True
    assert settings.ALERT_WEBHOOK_URL is not None

    added = cli(
        "--env-file", "data/demo.env", "simulate", "fault", "add", "--kind", "503", "--endpoint", "blocks",
        "--chain", "dogecoin",
    )  # fmt: skip
    assert added.code == 0, added
    assert [(f["kind"], f["chain"]) for f in faults_of(sim)] == [("503", "dogecoin")]


def test_env_file_chooses_the_database_of_status_and_runs(cli: Cli, tmp_path: Path) -> None:
    world = tmp_path / "world.db"
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'dotenv.db'}\n")
    (tmp_path / "world.env").write_text(f"# a comment\n\nDATABASE_URL=sqlite:///{world}\n")
    assert cli("--env-file", "world.env", "init-db").code == 0
    assert world.exists()

    runs = cli("--env-file", "world.env", "runs")
    assert runs.code == 0, runs
    assert runs.err.splitlines()[0] == f"database: sqlite:///{world}"
    assert "no runs" in runs.out
    status = cli("--env-file", str(tmp_path / "world.env"), "status")
    assert status.code in (0, 1), status  # 1 if freshness is at fail: there is no data
    assert status.err.splitlines()[0] == f"database: sqlite:///{world}"
    assert "workers:" in status.out
    assert not (tmp_path / "dotenv.db").exists()  # the env file replaces .env

    without = cli("runs")  # no --env-file: .env as before (its database was never created)
    assert without.err.splitlines()[0] == f"database: sqlite:///{tmp_path / 'dotenv.db'}"


def test_environment_variables_win_over_the_env_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "world.env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'world.db'}\n")
    outcome = cli("--env-file", "world.env", "runs", DATABASE_URL=f"sqlite:///{tmp_path / 'shell.db'}")
    assert outcome.err.splitlines()[0] == f"database: sqlite:///{tmp_path / 'shell.db'}"


@pytest.mark.parametrize("make", [False, True])
def test_a_missing_env_file_is_a_usage_error(cli: Cli, tmp_path: Path, make: bool) -> None:
    path = tmp_path / "nowhere.env"
    if make:
        path.mkdir()  # a directory is no env file either
    outcome = cli("--env-file", str(path), "status")
    assert outcome.code == 2, outcome
    assert str(path) in one_line(outcome.err)
    assert outcome.out == ""


def test_a_bad_setting_in_the_env_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("DB_BATCH_SIZE=0\n")
    outcome = cli("--env-file", "bad.env", "runs")
    assert outcome.code == 2, outcome
    assert "DB_BATCH_SIZE" in one_line(outcome.err)


# --- simulate still serves --------------------------------------------------------------------------


def test_simulate_alone_still_serves(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = cli_module.build_parser().parse_args(["simulate", "--port", "9123", "--host", "0.0.0.0"])
    assert (parsed.command, parsed.port, parsed.host, parsed.action) == ("simulate", 9123, "0.0.0.0", None)
    defaults = cli_module.build_parser().parse_args(["simulate"])
    assert (defaults.port, defaults.host, defaults.action) == (8765, "127.0.0.1", None)

    served: list[tuple[SimulatorConfig, str, int]] = []
    monkeypatch.setattr(
        simulator_module, "serve_forever", lambda config, host, port: served.append((config, host, port))
    )
    outcome = cli("simulate", "--port", "9123")
    assert outcome.code == 0, outcome
    assert [(host, port) for _config, host, port in served] == [("127.0.0.1", 9123)]
    assert "simulator on http://127.0.0.1:9123" in outcome.out
    assert outcome.err == ""


def test_help_lists_the_new_commands(cli: Cli) -> None:
    top = cli("--help")
    assert "--env-file PATH" in top.out
    simulate = cli("simulate", "--help")
    assert "fault" in simulate.out
    assert "--port" in simulate.out
    fault = cli("simulate", "fault", "--help")
    assert all(action in fault.out for action in ("add", "list", "clear"))
    assert cli_module.__doc__ is not None
    assert "--env-file" in cli_module.__doc__
    assert "simulate fault add" in cli_module.__doc__
