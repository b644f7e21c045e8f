"""`crypto-pipeline audit` and the CLI's write commands: each write is recorded under the OS user who ran
it, and the listing filters and prints them (a table, or JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pipeline.actors import os_user
from pipeline.config import get_settings
from pipeline.services import incidents
from tests.support.cli import Cli, in_process_cli
from tests.support.factories import finished_run


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> Iterator[Cli]:  # noqa: ANN001
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    yield lambda url, *args, **env: run(*args, DATABASE_URL=url, **env)
    get_settings.cache_clear()


def test_cli_writes_are_audited_under_the_os_user(db, cli):
    url = db.settings.DATABASE_URL
    failed = finished_run(db, "failed", params={"chain": "bitcoin"})
    assert cli(url, "rerun", "--queue", str(failed)).code == 0
    incidents.evaluate(db, db.settings, kinds=["unit"])
    [incident] = db.get_incidents()
    assert cli(url, "incidents", "ack", str(incident.id), "--note", "looking").code == 0
    assert cli(url, "incidents", "silence", str(incident.id), "--for", "2h").code == 0

    done = cli(url, "audit", "--json")
    assert done.code == 0, done
    entries = json.loads(done.out)
    assert [e["action"] for e in entries] == ["silence", "acknowledge", "rerun"]
    assert {(e["actor"], e["via"], e["outcome"]) for e in entries} == {(os_user(), "cli", "ok")}
    assert entries[2]["run_id"] == failed
    assert entries[2]["request_id"] == db.open_request_for(failed).id
    assert entries[1]["params"]["note"] == "looking"

    table = cli(url, "audit").out.splitlines()
    headers = ["id", "at", "(UTC)", "actor", "via", "action", "target", "outcome", "parameters"]
    assert table[0].split() == headers
    assert len(table) == 4
    assert f"run:{failed}" in table[3]

    only = json.loads(cli(url, "audit", "--json", "--action", "rerun", "--run", str(failed)).out)
    assert [e["action"] for e in only] == ["rerun"]
    assert json.loads(cli(url, "audit", "--json", "--actor", "nobody").out) == []
    assert len(json.loads(cli(url, "audit", "--json", "--via", "cli").out)) == 3
    assert json.loads(cli(url, "audit", "--json", "--via", "api").out) == []
    assert cli(url, "audit", "--actor", "nobody").out == "no audited actions matching the filters\n"
    assert cli(url, "audit", "--action", "drop").code == 2  # not an action: a usage error


def test_audit_of_an_empty_log(db, cli):
    done = cli(db.settings.DATABASE_URL, "audit")
    assert (done.code, done.out) == (0, "no audited actions\n")
