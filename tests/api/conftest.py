"""Fixtures of the API tests: seeded databases on each dialect, and a TestClient over `create_app`.

Tests that only read share one seeded database per dialect for the session (`shared_db`; a test module
points `db` and `seeded` at it); tests that write use the `db` fixture of tests/conftest.py, a fresh
database per test, seeded by `seeded`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import pytest
from fastapi.testclient import TestClient

from benchmarks.harness.postgres import PG_URL, postgres_schema
from pipeline.api.app import create_app
from pipeline.database import DatabaseService
from tests.api.seed import Seeded, populate
from tests.support.databases import migrated, require_postgres
from tests.support.settings import make_settings


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def shared_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DatabaseService, Seeded]]:
    """A seeded database per dialect, shared by the tests that only read it."""
    if request.param == "postgresql":
        require_postgres()
        place = postgres_schema(PG_URL, prefix="api")
    else:
        place = nullcontext(f"sqlite:///{tmp_path_factory.mktemp('api')}/api.db")
    with place as url:
        service = migrated(make_settings(url))
        seeded = populate(service)
        yield service, seeded
        service.dispose()


@pytest.fixture
def seeded(db: DatabaseService) -> Seeded:
    """The test database (SQLite and PostgreSQL), populated by tests/api/seed.py."""
    return populate(db)


@pytest.fixture
def client(db: DatabaseService) -> Iterator[TestClient]:
    """A client of the API over the test database, without API keys."""
    with TestClient(create_app(db.settings, db)) as test_client:
        yield test_client


@pytest.fixture
def shared_client(shared_db: tuple[DatabaseService, Seeded]) -> Iterator[TestClient]:
    """A client of the API over the shared seeded database (for tests that only read)."""
    db = shared_db[0]
    with TestClient(create_app(db.settings, db)) as test_client:
        yield test_client


def walk(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, following `next_cursor` until it is null."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path}: more than 10,000 pages")


Walk = Callable[..., list[dict[str, Any]]]
