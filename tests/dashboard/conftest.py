"""Dashboard test fixtures: empty and populated databases, the app pointed at them, clean caches.

The app reads its settings from the environment (`pipeline.config.get_settings`, cached) and keeps one
engine in `st.cache_resource`, so every test sets the environment and clears both caches before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit.config

from pipeline.config import Settings
from pipeline.database import DatabaseService
from tests.dashboard.helpers import reset_app_state
from tests.dashboard.seed import Seeded, populate
from tests.support.databases import migrated
from tests.support.settings import make_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No setting leaks in from the developer's shell; caches are clean around every test."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COINS", "bitcoin,ethereum,dogecoin")
    streamlit.config.set_option("client.showErrorDetails", "full")
    # As `crypto-pipeline up` binds it: an unset address means every interface, where writes are off.
    streamlit.config.set_option("server.address", "127.0.0.1")
    reset_app_state()
    yield
    reset_app_state()


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the app at a database URL, with extra settings as environment variables."""

    def configure(url: str, **settings: object) -> None:
        monkeypatch.setenv("DATABASE_URL", url)
        for name, value in settings.items():
            monkeypatch.setenv(name, str(value))
        reset_app_state()

    return configure


def _migrated(url: str) -> DatabaseService:
    return migrated(make_settings(url))


@pytest.fixture
def empty_url(tmp_path: Path, use_database: Callable[..., None]) -> str:
    """A fresh migrated SQLite database (only the seed coins), with the app pointed at it."""
    url = f"sqlite:///{tmp_path}/empty.db"
    _migrated(url).dispose()
    use_database(url)
    return url


@pytest.fixture
def populated(
    database_url: str, use_database: Callable[..., None]
) -> Iterator[tuple[DatabaseService, Seeded]]:
    """A populated database on SQLite and PostgreSQL (root `database_url` fixture), app pointed at it."""
    db = _migrated(database_url)
    seeded = populate(db)
    use_database(database_url)
    yield db, seeded
    db.dispose()


@pytest.fixture
def sqlite_populated(
    tmp_path: Path, use_database: Callable[..., None]
) -> Iterator[tuple[DatabaseService, Seeded]]:
    """A populated SQLite database with a live scheduler worker, app pointed at it."""
    url = f"sqlite:///{tmp_path}/populated.db"
    db = _migrated(url)
    seeded = populate(db)
    use_database(url)
    yield db, seeded
    db.dispose()
