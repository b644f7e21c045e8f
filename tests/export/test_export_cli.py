"""`crypto-pipeline export` in this process: the summary, the incremental second run, and bad arguments
ending in one line and exit code 2. The SQL is tested on both dialects in test_export_parquet.py; these
run on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.export.exporter import export_parquet
from tests.export.conftest import manifest_json, seed
from tests.support.cli import Cli, in_process_cli

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, db: DatabaseService
) -> Iterator[Cli]:
    """`crypto-pipeline ARGS` against the test's (seeded) database."""
    seed(db)
    run = in_process_cli(monkeypatch, capsys, tmp_path / "cwd")
    yield lambda *args: run(*args, DATABASE_URL=db.settings.DATABASE_URL)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()


def test_export_writes_and_summarises_then_writes_nothing_the_second_time(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = cli("export", "--format", "parquet", "--out", str(out))
    assert first.code == 0, first
    lines = first.out.splitlines()
    assert lines[0].split() == ["table", "partitions", "written", "rows", "unchanged", "removed"]
    assert lines[1].split() == ["blocks", "3", "3", "8", "0", "0"]
    assert "manifest: " in lines[-1]
    assert first.err.splitlines() == [first.err.splitlines()[0]]  # only "database: ...": no bar off a TTY
    assert first.err.startswith("database: ")

    second = cli("export", "--out", str(out), "--tables", "blocks,transactions", "--coins", "BTC", "--quiet")
    assert second.code == 0, second
    assert [line.split() for line in second.out.splitlines()[1:3]] == [
        ["blocks", "2", "0", "0", "2", "0"],
        ["transactions", "2", "0", "0", "2", "0"],
    ]
    assert second.out.splitlines()[-1].startswith("wrote 0 files (0 rows)")
    assert manifest_json(out)["complete"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tables", "blocks,nope"], "unknown table 'nope'; the tables are blocks, transactions"),
        (["--coins", "XYZ"], "unknown coin 'XYZ'"),
        (["--format", "csv"], "invalid choice: 'csv'"),
    ],
)
def test_bad_arguments_end_in_one_line_and_exit_2(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    outcome = cli("export", "--out", str(tmp_path / "out"), *args)
    assert outcome.code == 2, outcome
    assert message in outcome.err
    assert "Traceback" not in outcome.err
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_out_must_be_a_folder_of_an_export(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    outcome = cli("export", "--out", str(a_file))
    assert outcome.code == 2, outcome
    assert f"--out {a_file} is a file, not a folder" in outcome.err

    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    outcome = cli("export", "--out", str(other))
    assert outcome.code == 2, outcome
    assert "holds other files and no manifest.json" in outcome.err
    assert sorted(p.name for p in other.iterdir()) == ["cat.jpg"]

    missing = cli("export")
    assert missing.code == 2
    assert "--out" in missing.err


def test_a_damaged_manifest_is_refused(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("export", "--out", str(out), "--tables", "coins").code == 0
    (out / "manifest.json").write_text("{not json")
    outcome = cli("export", "--out", str(out))
    assert outcome.code == 2, outcome
    assert "manifest.json cannot be read as an export manifest" in outcome.err


def test_the_progress_bar_goes_to_stderr_when_asked(
    db: DatabaseService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db)
    export_parquet(db, tmp_path / "quiet", progress=None)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    export_parquet(db, tmp_path / "shown", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "export" in captured.err
    assert "rows" in captured.err
