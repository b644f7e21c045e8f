"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local trust-auth server). Each test gets its own
schema, so tests and the processes they start never see each other's rows. Where no server answers the
PostgreSQL cases skip, unless REQUIRE_POSTGRES=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg
import pytest

from pipeline.config import Settings, load_settings
from pipeline.database import DatabaseService

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("REQUIRE_POSTGRES") == "1"


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(_libpq_url(PG_URL), connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL at {PG_URL} ({str(exc).strip().splitlines()[0]}); set TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(PG_URL), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(_libpq_url(PG_URL), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """The database of a storage test, once per dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pipeline.db"
    return request.getfixturevalue("postgres_url")


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Test settings: no .env file, the given database, no client-side rate limit unless asked."""
    values = {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 100_000,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 100_000,
        "HTTP_TIMEOUT_SECONDS": 5,
        "HTTP_MAX_TOTAL_WAIT_SECONDS": 10,
        "HTTP_BACKOFF_BASE_SECONDS": 0.05,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings pointing at the test database."""
    return make_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[DatabaseService]:
    """A migrated, empty (but seeded with the default coins) database."""
    service = DatabaseService(settings=settings)
    service.create_tables()
    yield service
    service.dispose()


@contextmanager
def simulated_database(
    database_url: str, sim: object, **overrides: object
) -> Iterator[tuple[Settings, DatabaseService]]:
    """Settings pointing both APIs at a simulator, and a migrated database, disposed on exit."""
    settings = make_settings(
        database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,  # type: ignore[attr-defined]
        COINGECKO_BASE_URL=sim.coingecko_url,  # type: ignore[attr-defined]
        **overrides,
    )
    service = DatabaseService(settings=settings)
    service.create_tables()
    try:
        yield settings, service
    finally:
        service.dispose()
