"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local trust-auth server). Each test gets its own
schema (a fresh one, or for a test that uses `db` a migrated one from a pool, emptied after the previous
test), so tests and the processes they start never see each other's rows. Where no server answers the
PostgreSQL cases skip, unless REQUIRE_POSTGRES=1 (set by .ci/run), which turns the skip into a failure.

Helpers live in tests/support/ (settings, migrated databases, saved replies, record factories, the
browser) and, for what the benchmarks use too (child processes, PostgreSQL schemas, reliability
scenarios), in benchmarks/harness/. The fast path, `python -m pytest -m "not slow"`, leaves out the tests
marked `slow` and runs property tests with a few examples; `-m slow` runs the rest and the properties in
full (see `pytest_collection_modifyitems`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from benchmarks.harness.postgres import PG_URL, postgres_schema, postgres_unavailable
from pipeline.config import Settings
from pipeline.database import DatabaseService
from tests.support import replica
from tests.support.databases import (
    REQUIRE_PG,
    PostgresPool,
    migrated,
    require_postgres,
    simulated_database,
)
from tests.support.settings import make_settings

__all__ = ["PG_URL", "REQUIRE_PG", "make_settings", "postgres_unavailable", "simulated_database"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is imported and collected by now lives all session: spare the garbage collector from walking
    it again at every collection (a few seconds of a run)."""
    gc.collect()
    gc.freeze()


def _mark_expression(config: pytest.Config) -> str:
    return " ".join((config.getoption("markexpr", "") or "").split())


def pytest_configure(config: pytest.Config) -> None:
    """On the fast path (`-m "not slow"`), property tests run few examples (tests/support/properties.py)."""
    if "not slow" in _mark_expression(config):
        from tests.support.properties import use_fast_path  # hypothesis: not in the Airflow job's venv

        use_fast_path()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two kinds of tests are slow in part.

    - `slow_on_postgresql`: the PostgreSQL variant of such a test is `slow` (its SQLite one is not).
    - A property test at its full number of examples is slow: `-m "not slow"` runs it with a few examples
      and `-m slow` runs it again in full, so that the two passes together (as in .ci/run) run every
      example; a run without `-m` runs each property once, in full.
    """
    expression = _mark_expression(config)
    full_properties = "slow" in expression and "not slow" not in expression
    for item in items:
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and params.params.get("database_url") == "postgresql"
        if on_postgres and item.get_closest_marker("slow_on_postgresql"):
            item.add_marker(pytest.mark.slow)
        if full_properties and getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped after the test."""
    require_postgres()
    with postgres_schema(PG_URL) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_pool() -> Iterator[PostgresPool]:
    """Migrated PostgreSQL schemas reused by the tests that use `db` (tests/support/databases.py)."""
    pool = PostgresPool()
    yield pool
    pool.close()


@pytest.fixture
def migrated_postgres_url(postgres_pool: PostgresPool) -> Iterator[str]:
    """A URL whose search_path is a migrated schema holding only the seed rows, emptied after the test."""
    require_postgres()
    url = postgres_pool.take()
    if url is None:  # the template cannot be replayed here: a fresh schema, migrated by `db`
        with postgres_schema(PG_URL) as fresh:
            yield fresh
        return
    yield url
    postgres_pool.give_back(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """The database of a storage test, once per dialect: empty (not yet created), or already migrated
    when the test uses `db` (which would migrate it anyway)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pipeline.db"
    if "db" in request.fixturenames:
        return request.getfixturevalue("migrated_postgres_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings pointing at the test database."""
    return make_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[DatabaseService]:
    """A migrated, empty (but seeded with the default coins) database: a copy of a template migrated once
    per session (tests/support/databases.py)."""
    service = migrated(settings)
    yield service
    service.dispose()


@pytest.fixture(scope="session")
def replica_pair() -> Iterator[replica.ReplicaPair]:
    """A migrated PostgreSQL primary with a streaming replica, made for the session (about two seconds)
    and removed after it; skipped where PostgreSQL's server binaries are missing."""
    if replica.available() is not None:
        pytest.skip(str(replica.available()))
    with replica.replica_pair() as made:
        primary = DatabaseService(settings=make_settings(made.primary_url))
        primary.create_tables()
        primary.dispose()
        made.wait_for_replay()
        yield made
