"""Every database failure is one line, and nothing acts on the wrong database.

The real `crypto-pipeline` runs as a subprocess against real SQLite files and the real PostgreSQL server,
for each way a database can be wrong: unreachable, absent, corrupt, migrated by a newer or an older
version, stamped older than its tables, a typo in DATABASE_URL, in memory, or deleted under a running
scheduler. Each must end with exactly one line on stderr (after the line naming the database, when the
settings could be read), its own exit code, no traceback and no password; commands that only read must
not create anything. A closed stdout (`status | head -1`) must end quietly.
"""

from __future__ import annotations

import inspect as pyinspect
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks.harness.postgres import PG_URL
from benchmarks.harness.processes import free_port, process_env, start_scheduler, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.errors import (
    DatabaseCorrupt,
    DatabaseError,
    DatabaseNotFound,
    DatabaseReplaced,
    DatabaseUnavailable,
    SchemaMismatch,
    SchemaTooNew,
    SchemaTooOld,
    UnsupportedDatabase,
)
from pipeline.runtime.cli import EXIT_BROKEN_PIPE
from pipeline.runtime.scheduler import Scheduler
from pipeline.store.schema import alembic_config
from tests.support.databases import require_postgres
from tests.support.settings import make_settings

PASSWORD = "s3cret-Pa55word"  # put in every URL that can carry one; must never be printed
READ_ONLY = [["status"], ["stats"], ["runs"], ["gaps"], ["fill-gaps", "--dry-run"]]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
BEFORE_HEAD = ScriptDirectory.from_config(alembic_config()).get_revision(HEAD).down_revision


@dataclass(frozen=True)
class Outcome:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"crypto-pipeline {' '.join(self.args)} -> {self.returncode}\n{self.stdout}{self.stderr}"


def run_cli(cwd: Path, args: Sequence[str], database_url: str | None, **settings: object) -> Outcome:
    """`python -m pipeline.runtime.cli ARGS` in `cwd` (no .env) with DATABASE_URL, or the default if None."""
    env = (
        process_env(**settings)
        if database_url is None
        else process_env(DATABASE_URL=database_url, **settings)
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Outcome(list(args), done.returncode, done.stdout, done.stderr)


def run_many(cwd: Path, database_url: str | None, commands: Sequence[Sequence[str]]) -> list[Outcome]:
    """Several commands against the same (unchanged) database, concurrently to keep the suite quick."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(cwd, args, database_url), commands))


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr after the one every command but `simulate` starts with, `database: URL`."""
    lines = stderr.splitlines()
    return lines[1:] if lines and lines[0].startswith("database: ") else lines


def assert_one_line(outcome: Outcome, error: type[DatabaseError], *expected: str) -> str:
    """Exactly one line on stderr (after the database line), nothing on stdout, the error's own exit code,
    no traceback, no password."""
    assert outcome.returncode == error.exit_code, outcome
    lines = error_lines(outcome.stderr)
    assert len(lines) == 1, outcome
    line = lines[0]
    assert line.startswith("crypto-pipeline: error: "), outcome
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome
    assert PASSWORD not in outcome.stderr + outcome.stdout, outcome
    assert outcome.stdout == "", outcome
    assert len(line) < 400, outcome
    for part in expected:
        assert part in line, (part, outcome)
    return line


def with_password(url: str) -> str:
    """The same PostgreSQL URL with a password (the local server trusts the user and ignores it)."""
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------- databases


@pytest.fixture
def migrated(database_url: str) -> Iterator[tuple[str, DatabaseService]]:
    """A database at head (SQLite file or a PostgreSQL schema), its URL carrying a password for PostgreSQL."""
    service = DatabaseService(settings=make_settings(database_url))
    service.create_tables()
    url = database_url if database_url.startswith("sqlite") else with_password(database_url)
    yield url, service
    service.dispose()


def stamp(service: DatabaseService, revision: str) -> None:
    """Write a revision into alembic_version without touching the tables (what a bad restore leaves)."""
    with service.transaction() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def stamped(service: DatabaseService) -> str | None:
    revision = service.schema_revision()
    service.dispose()  # let the CLI process have the SQLite file to itself
    return revision


def sqlite_database(path: Path) -> Path:
    """A real database at head with some rows, checkpointed so that everything is in the main file."""
    service = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
    service.create_tables()
    service.dispose()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------- exit codes


def test_every_database_error_has_its_own_exit_code():
    classes = [
        DatabaseUnavailable,
        DatabaseNotFound,
        DatabaseCorrupt,
        SchemaTooNew,
        SchemaTooOld,
        SchemaMismatch,
        UnsupportedDatabase,
        DatabaseReplaced,
    ]
    codes = [cls.exit_code for cls in classes]
    assert len(set(codes)) == len(codes), codes
    # 0 success, 1 "something failed" (status, a failed run), 2 usage, 130 Ctrl-C, 141 closed stdout.
    assert not set(codes) & {0, 1, 2, 130, EXIT_BROKEN_PIPE}


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow  # starts crypto-pipeline processes
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_unreachable_postgresql_is_one_line_and_exit_3(tmp_path, scheme):
    # Heroku-style postgres:// is normalised to psycopg 3, so it too fails only on the closed port.
    url = f"{scheme}://root:{PASSWORD}@127.0.0.1:{free_port()}/test"
    assert_one_line(
        run_cli(tmp_path, ["status"], url), DatabaseUnavailable, "database unavailable", "refused"
    )


@pytest.mark.slow  # starts crypto-pipeline processes
def test_unknown_postgresql_database_is_one_line_and_exit_4(tmp_path):
    require_postgres()
    name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    url = make_url(PG_URL).set(database=name, password=PASSWORD).render_as_string(hide_password=False)
    for outcome in run_many(tmp_path, url, [["status"], ["init-db"]]):
        assert_one_line(outcome, DatabaseNotFound, f'"{name}"', "createdb")


# ---------------------------------------------------------------------------------------------- SQLite files


@pytest.mark.slow  # starts crypto-pipeline processes
def test_garbage_file_is_corrupt_and_left_alone(tmp_path):
    path = tmp_path / "crypto.db"
    garbage = b"this is not a database, just some bytes someone saved here\n" * 40
    path.write_bytes(garbage)
    for outcome in run_many(tmp_path, f"sqlite:///{path}", [["status"], ["init-db"]]):
        assert_one_line(outcome, DatabaseCorrupt, str(path), "not a database")
    assert path.read_bytes() == garbage
    assert entries(tmp_path) == {"crypto.db"}


@pytest.mark.slow  # starts crypto-pipeline processes
def test_truncated_file_is_corrupt(tmp_path):
    path = sqlite_database(tmp_path / "crypto.db")
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    assert_one_line(
        run_cli(tmp_path, ["status"], f"sqlite:///{path}"), DatabaseCorrupt, str(path), "malformed"
    )


@pytest.mark.slow  # starts crypto-pipeline processes
def test_read_only_commands_never_create_a_missing_database(tmp_path):
    path = tmp_path / "not" / "yet" / "crypto.db"
    url = f"sqlite:///{path}"
    for outcome in run_many(tmp_path, url, READ_ONLY):
        assert_one_line(outcome, DatabaseNotFound, f"no database at {path}; run crypto-pipeline init-db")
    assert entries(tmp_path) == set(), "a read-only command created a file or folder"
    # A command that writes still creates the file and its folders.
    created = run_cli(tmp_path, ["init-db"], url)
    assert created.returncode == 0, created
    assert path.is_file()


@pytest.mark.slow  # starts crypto-pipeline processes
def test_status_without_database_url_does_not_create_the_default_database(tmp_path):
    path = tmp_path / "data" / "crypto.db"  # the default, sqlite:///./data/crypto.db
    outcome = run_cli(tmp_path, ["status"], None)
    assert_one_line(outcome, DatabaseNotFound, f"no database at {path}; run crypto-pipeline init-db")
    assert entries(tmp_path) == set()


# ------------------------------------------------------------------------------------------ schema versions


@pytest.mark.slow  # starts crypto-pipeline processes
def test_schema_newer_than_the_code_asks_for_an_upgrade(migrated, tmp_path):
    url, service = migrated
    stamp(service, "9999_from_the_future")
    assert stamped(service) == "9999_from_the_future"
    for outcome in run_many(tmp_path, url, [["status"], ["init-db"]]):
        assert_one_line(outcome, SchemaTooNew, "9999_from_the_future", "upgrade crypto-pipeline")
    assert stamped(service) == "9999_from_the_future", "init-db touched a newer schema"


@pytest.mark.slow  # starts crypto-pipeline processes
def test_older_schema_is_refused_by_readers_and_upgraded_by_init_db(migrated, tmp_path):
    url, service = migrated
    with service.transaction() as conn:
        command.downgrade(alembic_config(conn), "-1")
    assert stamped(service) == BEFORE_HEAD
    # Every reader goes through the same check (the missing-file test runs them all); these two also
    # write when given the chance, so they are the ones that must be seen not to.
    for outcome in run_many(tmp_path, url, [["status"], ["fill-gaps", "--dry-run"]]):
        assert_one_line(outcome, SchemaTooOld, BEFORE_HEAD, "run crypto-pipeline init-db")
    assert stamped(service) == BEFORE_HEAD, "a read-only command migrated the database"
    upgraded = run_cli(tmp_path, ["init-db"], url)
    assert upgraded.returncode == 0, upgraded
    assert stamped(service) == HEAD


@pytest.mark.slow  # starts crypto-pipeline processes
def test_stamp_older_than_the_tables_is_explained_with_its_fix(migrated, tmp_path):
    url, service = migrated
    stamp(service, BEFORE_HEAD)  # the tables stay at head: the next upgrade finds its work done
    assert stamped(service) == BEFORE_HEAD
    line = assert_one_line(
        run_cli(tmp_path, ["init-db"], url), SchemaMismatch, "stamp", "does not match the tables", "UPDATE"
    )
    assert stamped(service) == BEFORE_HEAD, "the failed upgrade was not rolled back"
    # The fix the line gives, applied as given, makes init-db succeed.
    fix = line.rsplit("so set the stamp: ", 1)[1]
    with service.transaction() as conn:
        conn.exec_driver_sql(fix)
    service.dispose()
    fixed = run_cli(tmp_path, ["init-db"], url)
    assert fixed.returncode == 0, fixed
    assert stamped(service) == HEAD


# ---------------------------------------------------------------------------------------------- URLs


# Every rule of the URL check is tested in-process in tests/test_config.py; these prove the command line.
UNSUPPORTED_URLS = {
    "sqlte:///./data/crypto.db": "did you mean 'sqlite:///./data/crypto.db'?",
    f"postgresql://root:{PASSWORD}@db.example:notaport/crypto": "port is not a number",
    f"postgresq://root:{PASSWORD}@db.example/crypto": "did you mean 'postgresql://root:***@",
    f"not a url root:{PASSWORD}@x": "not a database URL",
}


@pytest.mark.slow  # starts crypto-pipeline processes
def test_unsupported_urls_are_one_line_and_exit_9(tmp_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda url: run_cli(tmp_path, ["init-db"], url), UNSUPPORTED_URLS))
    for outcome, expected in zip(outcomes, UNSUPPORTED_URLS.values(), strict=True):
        assert_one_line(outcome, UnsupportedDatabase, "DATABASE_URL", expected)
    assert entries(tmp_path) == set()


@pytest.mark.slow  # starts crypto-pipeline processes
def test_in_memory_database_is_refused_by_every_command(tmp_path):
    urls = ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true"]
    cases = [(url, ["status"]) for url in urls] + [("sqlite://", ["init-db"])]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda case: run_cli(tmp_path, case[1], case[0]), cases))
    for outcome in outcomes:
        assert_one_line(outcome, UnsupportedDatabase, "in-memory", "sqlite:///")
    assert entries(tmp_path) == set()


# ---------------------------------------------------------------------------------------------- stdout closed


@pytest.mark.slow  # starts crypto-pipeline processes
@pytest.mark.parametrize("args", [["status"], ["--help"]], ids=["status", "help"])
def test_stdout_closed_early_exits_quietly(tmp_path, args):
    """`crypto-pipeline status | head -1`, made deterministic: the reading end is closed before the start."""
    path = sqlite_database(tmp_path / "crypto.db")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.cli", *args],
            cwd=tmp_path,
            env=process_env(DATABASE_URL=f"sqlite:///{path}"),
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, stderr = process.communicate(timeout=60)
    assert error_lines(stderr.decode()) == [], stderr.decode()
    assert process.returncode in (EXIT_BROKEN_PIPE, 0)
    if args != ["--help"]:  # argparse's own help exits 0 before anything is flushed
        assert process.returncode == EXIT_BROKEN_PIPE


@pytest.mark.slow  # starts crypto-pipeline processes
def test_status_piped_into_head_prints_no_traceback(tmp_path):
    path = sqlite_database(tmp_path / "crypto.db")
    done = subprocess.run(
        f"{sys.executable} -m pipeline.runtime.cli status | head -1",
        shell=True,
        cwd=tmp_path,
        env=process_env(DATABASE_URL=f"sqlite:///{path}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert error_lines(done.stderr) == [], done.stderr
    assert len(done.stdout.splitlines()) == 1


# ---------------------------------------------------------------------------------------------- file identity


def test_check_file_identity_notices_a_deleted_and_a_replaced_file(tmp_path):
    path = tmp_path / "crypto.db"
    service = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
    try:
        service.check_file_identity()  # before any connection: nothing was opened, nothing to compare
        service.create_tables()
        service.check_file_identity()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        with pytest.raises(DatabaseReplaced, match=f"{path} was deleted") as deleted:
            service.check_file_identity()
        assert deleted.value.exit_code == DatabaseReplaced.exit_code
        other = sqlite_database(tmp_path / "other.db")
        os.replace(other, path)  # a different file (inode) under the same name
        with pytest.raises(DatabaseReplaced, match=f"{path} was replaced"):
            service.check_file_identity()
    finally:
        service.dispose()


def test_check_file_identity_survives_reconnects_and_ignores_in_memory(tmp_path):
    path = tmp_path / "crypto.db"
    service = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
    memory = DatabaseService(settings=make_settings("sqlite://"))
    try:
        service.create_tables()
        service.dispose()  # the pool reopens the same file: still the same database
        assert service.get_coins()
        service.check_file_identity()
        memory.create_tables()  # tests may still use an in-memory service directly
        assert memory.database_file is None
        memory.check_file_identity()
    finally:
        service.dispose()
        memory.dispose()


def test_check_file_identity_is_a_no_op_on_postgresql(postgres_url):
    service = DatabaseService(settings=make_settings(postgres_url))
    try:
        service.create_tables()
        assert service.database_file is None
        service.check_file_identity()
    finally:
        service.dispose()


SCHEDULER_CHECKS_IDENTITY = "check_file_identity" in pyinspect.getsource(Scheduler)


@pytest.mark.slow
@pytest.mark.xfail(
    not SCHEDULER_CHECKS_IDENTITY,
    reason="the scheduler's heartbeat does not call db.check_file_identity() yet",
    run=False,
)
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_scheduler_stops_when_its_database_file_is_deleted_or_replaced(tmp_path, how):
    path = sqlite_database(tmp_path / "crypto.db")
    spare = sqlite_database(tmp_path / "spare.db")
    log = tmp_path / "scheduler.log"
    # No configured coin has a row, so no job calls an API: the scheduler only beats and polls requests.
    process = start_scheduler(
        log,
        DATABASE_URL=f"sqlite:///{path}",
        COINS="no-such-coin",
        HEARTBEAT_SECONDS=0.5,
        BLOCKCHAIR_BASE_URL="http://127.0.0.1:9",
        COINGECKO_BASE_URL="http://127.0.0.1:9/api/v3",
    )
    try:
        watcher = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
        wait_for(watcher.get_workers, 30, what="the scheduler's first heartbeat")
        watcher.dispose()
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            os.replace(spare, path)
        process.wait(timeout=15)  # a few heartbeats, plus the shutdown
    finally:
        stop(process)
    output = log.read_text()
    assert process.returncode == DatabaseReplaced.exit_code, output
    assert "Traceback" not in output, output
    mentions = [line for line in output.splitlines() if f"{path} was {how}" in line]
    assert len(mentions) == 1, output
