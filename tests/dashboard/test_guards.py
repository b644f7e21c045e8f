"""AppTest: the guards every page goes through. An unreachable database gives a banner (never a
traceback) that goes away by itself; an exposed dashboard offers no write action and says why; the
Overview shows the processes `crypto-pipeline up` had to restart."""

from __future__ import annotations

import gc
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import streamlit.config
from streamlit.testing.v1 import AppTest

from benchmarks.harness.processes import free_port
from tests.dashboard.helpers import PAGES, every_page, new_app, open_page, request_count, reset_app_state

# Through the simulator or the whole page: on SQLite in the fast path, on both dialects in the full suite.
pytestmark = pytest.mark.slow_on_postgresql

AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}}


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def unescape(text: str) -> str:
    """Text as shown: `literal()`'s backslashes resolved."""
    return re.sub(r"\\(.)", r"\1", text)


def banner(at: AppTest) -> str | None:
    """The outage banner's text, if the page shows it."""
    return next((e for e in texts(at, "error") if "Database unreachable" in e), None)


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite file (another process mid-migration, a stuck writer): every
    other connection gets "database is locked" once its busy timeout has passed."""
    gc.collect()  # connections dropped by a disposed pool still hold the file until collected
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("PRAGMA locking_mode=EXCLUSIVE")
        lock.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        lock.close()


def release_connections() -> None:
    """Close the dashboard's pooled connections, as a restarted database would: an exclusive lock can
    only be taken while no other connection holds the file open."""
    from dashboard import data

    data.service().dispose()


# ---------------------------------------------------------------------------------------------- outage


@pytest.mark.parametrize("page", every_page(fast="overview"))
def test_unreachable_postgres_shows_the_banner_on_every_page(use_database, page):
    use_database(f"postgresql+psycopg://root@127.0.0.1:{free_port()}/test")  # nothing listens there
    at = open_page(page)  # fails on any exception
    text = banner(at)
    assert text is not None, texts(at, "error")
    assert "since" in text
    assert "Connection refused" in text
    assert "retrying every 5 s" in text
    assert not at.title  # the page itself did not run: no half-drawn data
    assert not at.metric
    assert not at.dataframe
    sidebar = " ".join(str(e.proto) for e in at.sidebar)
    assert "unreachable" in sidebar


def test_locked_sqlite_banner_keeps_its_start_and_the_page_returns_by_itself(sqlite_populated, use_database):
    db, _ = sqlite_populated
    use_database(db.database_url, SQLITE_BUSY_TIMEOUT_MS=100)
    db.dispose()
    path = db.engine.url.database
    with locked(path):
        at = new_app().run()
        assert not at.exception
        first = banner(at)
        assert first is not None
        assert "database is locked" in first
        since = re.search(r"since (\S+ \S+) UTC", first).group(1)
        at.run()  # the banner's fragment probes again (here: the next run)
        again = banner(at)
        assert again is not None
        assert re.search(r"since (\S+ \S+) UTC", again).group(1) == since
    at.run()  # the database answers again: the page comes back, no reload and no banner
    assert not at.exception
    assert banner(at) is None
    assert any("Overview" in t.value for t in at.title)
    assert {m.label for m in at.metric} >= {"Workers up", "Failed"}


def test_a_failure_while_the_page_runs_shows_the_banner_not_a_traceback(sqlite_populated, use_database):
    from dashboard import data

    db, _ = sqlite_populated
    use_database(db.database_url, SQLITE_BUSY_TIMEOUT_MS=100)
    at = open_page("database")
    assert banner(at) is None
    db.dispose()
    release_connections()
    data.table_counts.clear()  # the health check is still cached as fine; the page's first read is not
    with locked(db.engine.url.database):
        at.run()
        assert not at.exception
        assert banner(at) is not None
    at.run()
    assert banner(at) is None
    assert any("Database" in t.value for t in at.title)


# ---------------------------------------------------------------------------------------------- access


@pytest.fixture
def exposed() -> Iterator[None]:
    """The dashboard bound to every interface (`up --host 0.0.0.0`)."""
    streamlit.config.set_option("server.address", "0.0.0.0")
    yield
    streamlit.config.set_option("server.address", "127.0.0.1")


@pytest.mark.parametrize("page", ["runs", "coverage"])
def test_exposed_without_login_is_read_only_and_says_how_to_enable_writes(sqlite_populated, exposed, page):
    _, seeded = sqlite_populated
    at = open_page(page, query={"run": str(seeded.runs["failed"])} if page == "runs" else None)
    warning = " ".join(texts(at, "warning"))
    assert "Write actions are off" in warning
    assert "0\\.0\\.0\\.0" in warning  # the bound address, escaped like all stored or configured text
    assert "DASHBOARD_TRUSTED_AUTH_PROXY=true" in warning
    assert "[auth]" in warning
    labels = [b.label for b in at.button]
    assert not [b for b in labels if b.startswith(("Rerun", "Run here", "Fill gaps", "Confirm"))], labels
    captions = " ".join(texts(at, "caption"))
    assert "disabled (reachable from other machines without a login)" in captions
    assert "Read-only" in " ".join(str(e.proto) for e in at.sidebar)


def test_data_refuses_writes_the_page_should_not_have_offered(sqlite_populated, exposed):
    from dashboard import data

    db, seeded = sqlite_populated
    with pytest.raises(PermissionError, match="reachable from other machines"):
        data.request_rerun(seeded.runs["failed"])
    with pytest.raises(PermissionError):
        data.request_reruns([seeded.runs["failed"]])
    assert request_count(db) == 0


def test_a_trusted_auth_proxy_enables_writes_on_an_exposed_dashboard(sqlite_populated, use_database, exposed):
    db, seeded = sqlite_populated
    use_database(db.database_url, DASHBOARD_TRUSTED_AUTH_PROXY="true")
    at = open_page("runs", query={"run": str(seeded.runs["failed"])})
    assert not any("Write actions are off" in w for w in texts(at, "warning"))
    next(b for b in at.button if b.label.startswith("Rerun run #")).click().run()
    assert request_count(db, seeded.runs["failed"]) == 1


def test_with_streamlit_login_writes_wait_for_a_logged_in_user(sqlite_populated, use_database, exposed):
    db, seeded = sqlite_populated
    use_database(db.database_url, DASHBOARD_OPERATORS="ops@example.com")  # a role to write (test_login_roles)
    at = new_app()
    at.secrets.update(AUTH)
    at.user = {"is_logged_in": False}
    at.query_params["run"] = str(seeded.runs["failed"])
    at.run()
    at.switch_page(PAGES["runs"]).run()
    assert not at.exception
    assert any("Log in to rerun" in w for w in texts(at, "warning"))
    assert [b.label for b in at.button if b.label == "Log in"]
    assert not [b for b in at.button if b.label.startswith("Rerun run #")]
    at.user = {"is_logged_in": True, "email": "ops@example.com"}
    at.run()
    assert not any("Log in to rerun" in w for w in texts(at, "warning"))
    assert [b for b in at.button if b.label.startswith("Rerun run #")]


def test_read_only_setting_needs_no_exposure_notice(sqlite_populated, use_database, exposed):
    db, _ = sqlite_populated
    use_database(db.database_url, DASHBOARD_READ_ONLY="true")
    at = open_page("runs")
    assert not any("Write actions are off" in w for w in texts(at, "warning"))
    assert any("disabled (DASHBOARD_READ_ONLY)" in c for c in texts(at, "caption"))


# ---------------------------------------------------------------------------------------------- restarts


def test_overview_shows_the_processes_up_restarted(sqlite_populated, tmp_path: Path, monkeypatch):
    from pipeline.runtime.launcher import STATE_ENV

    state = {
        "updated_at": datetime.now(UTC).isoformat(),
        "children": {
            "scheduler": {"state": "running", "pid": 1, "restarts": 2, "last_exit_code": 1,
                          "last_exit_at": "2026-01-02T03:04:05+00:00", "restart_in_seconds": None},
            "simulator": {"state": "restarting", "pid": None, "restarts": 1, "last_exit_code": -9,
                          "last_exit_at": None, "restart_in_seconds": 4.2},
            "dashboard": {"state": "running", "pid": 3, "restarts": 0, "last_exit_code": None},
        },
    }  # fmt: skip
    path = tmp_path / "launcher.json"
    path.write_text(json.dumps(state))
    monkeypatch.setenv(STATE_ENV, str(path))
    reset_app_state()  # settings are read once
    warnings = unescape(" ".join(texts(open_page("overview"), "warning")))
    assert (
        "The scheduler was restarted by crypto-pipeline up (restarted 2 times so far; last exit code 1 at "
        "03:04:05 UTC)." in warnings
    )
    assert (
        "The simulator is down; crypto-pipeline up restarts it in 4 s (restarted 1 time so far; last exit "
        "code -9)." in warnings
    )
    assert "dashboard" not in warnings

    monkeypatch.delenv(STATE_ENV)  # not started by `up`: nothing to say
    reset_app_state()
    assert not any("restart" in w for w in texts(open_page("overview"), "warning"))
