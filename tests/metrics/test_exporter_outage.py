"""A database outage never takes the exporter down: it serves `crypto_pipeline_database_up 0` (and nothing
that would pass for a reading), logs the outage once, and reads the database again when it returns.

PostgreSQL goes away behind a TCP proxy (`PgProxy`: refused connections, sessions cut); a SQLite file is
moved away (and the exporter must not create an empty one in its place)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks.harness.outages import proxied
from pipeline.database import DatabaseService
from pipeline.metrics.command import exporter_database
from pipeline.metrics.server import build_registry, make_app, make_http_server
from pipeline.simulator.netfault import PgProxy
from tests.dashboard.seed import populate
from tests.metrics.scraping import Scrape
from tests.support.databases import migrated
from tests.support.settings import make_settings

ONLY_WHEN_DOWN = {"crypto_pipeline_database_up", "crypto_pipeline_scrape_duration_seconds"}


def _pipeline_families(scrape: Scrape) -> set[str]:
    return {name for name in scrape.families if name.startswith("crypto_pipeline_")}


class Exporter:
    """The exporter's registry served over HTTP from a thread of this process."""

    def __init__(self, db: DatabaseService) -> None:
        registry, collector = build_registry(db, db.settings)
        collector.prime()
        self.server = make_http_server(make_app(registry), "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def scrape(self) -> Scrape:
        response = httpx.get(self.url, timeout=20)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Scrape.parse(response.text)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter_of() -> Iterator:
    started: list[Exporter] = []

    def start(db: DatabaseService) -> Exporter:
        started.append(Exporter(db))
        return started[-1]

    yield start
    for exporter in started:
        exporter.close()


def _outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeline.metrics.collector"]
    return (
        sum("cannot read the database" in m for m in messages),
        sum("readable again" in m for m in messages),
    )


def test_postgresql_outage_gives_database_up_0_and_the_exporter_keeps_serving(
    migrated_postgres_url, exporter_of, caplog
):
    caplog.set_level(logging.INFO, logger="pipeline.metrics")
    url = make_url(migrated_postgres_url)
    with PgProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        db = migrated(make_settings(proxied(migrated_postgres_url, proxy.port)))
        populate(db)
        exporter = exporter_of(db)
        healthy = exporter.scrape()
        assert healthy.value("crypto_pipeline_database_up") == 1
        assert "crypto_pipeline_runs" in healthy.families

        proxy.cut()
        for _ in range(3):  # every scrape while it lasts: answered, and says the database is down
            down = exporter.scrape()
            assert down.value("crypto_pipeline_database_up") == 0
            assert _pipeline_families(down) == ONLY_WHEN_DOWN  # no stale or partial readings
            assert down.value("crypto_pipeline_scrape_duration_seconds") > 0
        assert "process_resident_memory_bytes" in down.names  # the exporter's own metrics go on

        proxy.restore()
        back = exporter.scrape()
        assert back.value("crypto_pipeline_database_up") == 1
        assert back.by("crypto_pipeline_runs_total", "status") == healthy.by(
            "crypto_pipeline_runs_total", "status"
        )
        assert _outage_lines(caplog) == (1, 1)  # one line when it starts, one when it ends
        db.dispose()


def test_sqlite_file_gone_gives_database_up_0_and_is_not_created(tmp_path: Path, exporter_of):
    path = tmp_path / "pipeline.db"
    db = migrated(make_settings(f"sqlite:///{path}"))
    populate(db)
    exporter = exporter_of(db)
    assert exporter.scrape().value("crypto_pipeline_database_up") == 1

    aside = tmp_path / "aside.db"
    path.rename(aside)
    down = exporter.scrape()
    assert down.value("crypto_pipeline_database_up") == 0
    assert _pipeline_families(down) == ONLY_WHEN_DOWN
    assert not path.exists()  # a reader never creates the database it cannot find

    aside.rename(path)
    assert exporter.scrape().value("crypto_pipeline_database_up") == 1
    db.dispose()


def test_a_garbage_sqlite_file_gives_database_up_0(tmp_path: Path, exporter_of):
    path = tmp_path / "garbage.db"
    migrated(make_settings(f"sqlite:///{path}")).dispose()
    db = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
    exporter = exporter_of(db)
    assert exporter.scrape().value("crypto_pipeline_database_up") == 1
    db.dispose()  # no pooled connection keeps the old file open
    path.write_bytes(b"this is not a database" * 100)
    assert exporter.scrape().value("crypto_pipeline_database_up") == 0


@pytest.mark.slow
def test_a_locked_run_log_gives_database_up_0_within_seconds_not_a_hung_scrape(
    migrated_postgres_url, exporter_of, caplog
):
    """A migration, VACUUM FULL or LOCK TABLE holds the run log: scrapes (three, overlapping) answer
    database_up 0 within seconds, well inside Prometheus's 10 s scrape timeout, instead of waiting for the
    lock; the outage is logged once, and the first scrape after the lock is released reads again."""
    caplog.set_level(logging.INFO, logger="pipeline.metrics")
    settings = make_settings(migrated_postgres_url)
    populate(migrated(settings))
    db = exporter_database(settings)
    exporter = exporter_of(db)
    healthy = exporter.scrape()
    assert healthy.value("crypto_pipeline_database_up") == 1

    locker = DatabaseService(settings=settings)
    results: dict[int, tuple[float, Scrape]] = {}

    def scrape(index: int) -> None:
        started = time.monotonic()
        answer = exporter.scrape()
        results[index] = (time.monotonic() - started, answer)

    with locker.engine.connect() as conn:
        conn.execute(text("LOCK TABLE data_ingestion_logs IN ACCESS EXCLUSIVE MODE"))
        threads = [threading.Thread(target=scrape, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
            time.sleep(0.5)
        for thread in threads:
            thread.join(30)
        conn.rollback()
    locker.dispose()

    assert sorted(results) == [0, 1, 2]
    for took, down in results.values():
        assert took < 6, f"a scrape took {took:.1f} s while the run log was locked"
        assert down.value("crypto_pipeline_database_up") == 0
        assert _pipeline_families(down) == ONLY_WHEN_DOWN

    back = exporter.scrape()
    assert back.value("crypto_pipeline_database_up") == 1
    assert back.by("crypto_pipeline_runs_total", "status") == healthy.by(
        "crypto_pipeline_runs_total", "status"
    )
    assert _outage_lines(caplog) == (1, 1)
    db.dispose()


def test_the_exporters_engine_has_short_timeouts(database_url):
    """PostgreSQL: statement and lock timeouts on every connection, which reads in autocommit; SQLite: a
    busy timeout of 2 s rather than the shared 30 s."""
    settings = make_settings(database_url)
    migrated(settings).dispose()
    db = exporter_database(settings)
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            assert conn.scalar(text("SHOW statement_timeout")) == "5s"
            assert conn.scalar(text("SHOW lock_timeout")) == "2s"
            assert conn.connection.driver_connection.autocommit
            assert conn.scalar(text("SELECT count(*) FROM data_ingestion_logs")) == 0  # the URL's schema
        else:
            assert conn.scalar(text("PRAGMA busy_timeout")) == 2000
    db.dispose()
