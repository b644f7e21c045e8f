"""Helpers of the dashboard tests: run pages under AppTest, read charts, count rerun requests."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from dashboard import data
from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.models import ReplayRequest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "overview": None,
    "incidents": "app_pages/incidents.py",
    "runs": "app_pages/runs.py",
    "coverage": "app_pages/coverage.py",
    "prices": "app_pages/prices.py",
    "blocks": "app_pages/blocks.py",
    "database": "app_pages/database.py",
}


def every_page(fast: str) -> list:
    """The pages as test parameters: page `fast` runs on the fast path, the others in the full suite
    (`slow`). For checks that are the same on every page (a banner, a notice, no write action)."""
    return [page if page == fast else pytest.param(page, marks=pytest.mark.slow) for page in PAGES]


def reset_app_state() -> None:
    """Forget cached settings, query results and the cached DatabaseService (its engine is disposed)."""
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    data._last_write[0] = float("-inf")  # no write from "this dashboard" carries over to the next test


def new_app() -> AppTest:
    """The dashboard under AppTest (the timeout covers the first pandas/plotly import)."""
    return AppTest.from_file(str(APP), default_timeout=60)


def open_page(page: str, *, query: dict[str, str] | None = None, at: AppTest | None = None) -> AppTest:
    """Run the app, switch to a page and run it; fails on any exception the script raised."""
    at = at or new_app()
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if PAGES[page]:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_charts(at: AppTest) -> list:
    """The plotly chart elements of the current page."""
    return list(at.get("plotly_chart"))


def request_count(db: DatabaseService, run_id: int | None = None) -> int:
    """Rerun requests stored (for one run)."""
    stmt = select(func.count()).select_from(ReplayRequest)
    if run_id is not None:
        stmt = stmt.where(ReplayRequest.run_id == run_id)
    with db.engine.connect() as conn:
        return conn.scalar(stmt) or 0
