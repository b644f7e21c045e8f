"""AppTest: every page on an empty and a populated database, links, notices, and the gated writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.models import DataIngestionLog
from tests.dashboard.helpers import (
    PAGES,
    every_page,
    new_app,
    open_page,
    plotly_charts,
    request_count,
    reset_app_state,
)
from tests.dashboard.seed import BTC_GAP, BTC_TIP, ETH_BALANCE_WEI, FAILED_ERROR

# Through the simulator or the whole page: on SQLite in the fast path, on both dialects in the full suite.
pytestmark = pytest.mark.slow_on_postgresql

TITLES = {
    "overview": "Overview",
    "incidents": "Incidents",
    "runs": "Ingestion runs",
    "coverage": "Coverage & quality",
    "prices": "Prices",
    "blocks": "Blocks & transactions",
    "database": "Database",
}
# (metrics at least, charts at least) on the populated database
POPULATED = {
    "overview": (11, 1),
    "incidents": (4, 0),
    "runs": (4, 0),
    "coverage": (4, 2),
    "prices": (3, 4),
    "blocks": (4, 5),
    "database": (5, 3),
}


def texts(at: AppTest, kind: str) -> list[str]:
    """The values of all elements of one kind (info, warning, error, success, caption, markdown)."""
    return [str(e.value) for e in getattr(at, kind)]


def figure(chart) -> dict:  # noqa: ANN001
    """The plotly figure JSON of a chart element."""
    return json.loads(chart.proto.spec)


def select_row(at: AppTest, key: str, column: str, value: object) -> None:
    """Select the table row whose `column` equals `value` (selections are positional, so find it)."""
    table_key = at.session_state[f"{key}_table_key"]
    frame = next(df.value for df in at.dataframe if column in df.value.columns)
    position = frame.index[frame[column] == value].tolist()
    assert position, f"{column}={value} is not in the table"
    at.session_state[table_key] = {"selection": {"rows": [position[0]], "columns": [], "cells": []}}


def button(at: AppTest, label_start: str):  # noqa: ANN201
    """The one button whose label starts with the text."""
    found = [b for b in at.button if b.label.startswith(label_start)]
    assert len(found) == 1, [b.label for b in at.button]
    return found[0]


# ---------------------------------------------------------------------------------------------- every page


@pytest.mark.parametrize("page", every_page(fast="overview"))
def test_empty_database_guides_a_new_user(empty_url, page):
    at = open_page(page)
    assert any(TITLES[page] in t.value for t in at.title)
    guidance = " ".join(texts(at, "info"))
    assert "crypto-pipeline" in guidance, guidance
    assert plotly_charts(at) == []
    assert not any("Simulated data" in w for w in texts(at, "warning"))


@pytest.mark.parametrize("page", list(PAGES))
def test_populated_pages_show_metrics_and_charts(populated, page):
    at = open_page(page)
    assert any(TITLES[page] in t.value for t in at.title)
    metrics, charts = POPULATED[page]
    assert len(at.metric) >= metrics, [m.label for m in at.metric]
    assert len(plotly_charts(at)) >= charts
    assert not texts(at, "error") or page in ("overview", "runs")  # only stored run errors are shown


@pytest.mark.parametrize("page", every_page(fast="overview"))
def test_simulated_data_notice_on_every_page(sqlite_populated, use_database, page):
    db, _ = sqlite_populated
    use_database(db.database_url, SIMULATED_DATA="true")
    at = open_page(page)
    assert any("Simulated data" in w for w in texts(at, "warning"))


def test_sidebar_badges_name_the_source_and_never_the_url(sqlite_populated, use_database):
    db, _ = sqlite_populated
    use_database(db.database_url, SIMULATED_DATA="true", DASHBOARD_READ_ONLY="true")
    at = new_app()
    at.run()
    sidebar = " ".join(str(getattr(e, "proto", e)) for e in at.sidebar)
    assert "Simulated data" in sidebar
    assert "Read-only" in sidebar
    assert "SQLite" in sidebar
    assert db.database_url.split("///")[-1] not in sidebar


def test_database_without_schema_explains_init_db(tmp_path, use_database):
    use_database(f"sqlite:///{tmp_path}/blank.db")
    at = new_app()
    at.run()
    assert not at.exception
    assert any("crypto-pipeline init-db" in i for i in texts(at, "info"))


# ---------------------------------------------------------------------------------------------- overview


def test_overview_shows_scheduler_freshness_and_failures(sqlite_populated):
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Workers up"] == "1"
    assert (metrics["Failed"], metrics["Partial"], metrics["Success"]) == ("1", "1", "1")
    markdown = " ".join(texts(at, "markdown"))
    assert ":green[" in markdown
    assert ":orange[" in markdown
    failures = next(df.value for df in at.dataframe if "error_message" in df.value.columns)
    assert FAILED_ERROR in failures["error_message"].tolist()


# ---------------------------------------------------------------------------------------------- prices


def test_prices_default_view_marks_missing_days_and_offers_csv(sqlite_populated):
    _, seeded = sqlite_populated
    at = open_page("prices")
    assert at.multiselect(key="prices_coins").value == ["bitcoin", "ethereum", "dogecoin"]
    price = figure(plotly_charts(at)[0])
    missing = next(t for t in price["data"] if t["name"] == "Missing days")
    expected = {(seeded.today - timedelta(days=d)).isoformat() for d in range(BTC_GAP[1], BTC_GAP[0] + 1)}
    assert {x[:10] for x in missing["x"]} == expected
    assert len(at.get("download_button")) == 1
    assert at.query_params["preset"] == "90d"


def test_prices_link_restores_the_view(sqlite_populated):
    at = open_page("prices", query={"coins": "ethereum", "preset": "30d", "log": "1"})
    assert at.multiselect(key="prices_coins").value == ["ethereum"]
    assert at.segmented_control(key="prices_preset").value == "30d"
    assert at.toggle(key="prices_log").value is True
    assert figure(plotly_charts(at)[0])["layout"]["yaxis"]["type"] == "log"
    assert not texts(at, "warning")


def test_bad_link_values_are_ignored_with_a_warning(sqlite_populated):
    query = {"coins": "nope,bitcoin", "start": "yesterday", "preset": "5y", "log": "maybe"}
    at = open_page("prices", query=query)
    warning = " ".join(texts(at, "warning"))
    assert "ignored" in warning
    assert "nope" in warning
    assert "log" in warning
    assert at.multiselect(key="prices_coins").value == ["bitcoin"]
    assert at.toggle(key="prices_log").value is False


def test_prices_choices_are_written_to_the_url(sqlite_populated):
    at = open_page("prices")
    at.toggle(key="prices_log").set_value(True).run()
    at.segmented_control(key="prices_preset").set_value("1y").run()
    assert at.query_params["log"] == "1"
    assert at.query_params["preset"] == "1y"
    start = datetime.now(UTC).date() - timedelta(days=10)
    at.date_input(key="prices_range").set_value((start, start + timedelta(days=5))).run()
    assert at.query_params["preset"] == "custom"
    assert at.query_params["start"] == start.isoformat()


# ---------------------------------------------------------------------------------------------- blocks


def test_selecting_a_block_shows_its_transactions(sqlite_populated):
    at = open_page("blocks")
    latest = figure(plotly_charts(at)[-1])
    assert any("provisional" in a.get("text", "") for a in latest["layout"].get("annotations", []))
    select_row(at, "blocks_BTC", "block_id", BTC_TIP)
    at.run()
    assert any(f"Transactions of block {BTC_TIP:,}" in m for m in texts(at, "markdown"))
    txs = next(df.value for df in at.dataframe if "tx_hash" in df.value.columns)
    assert len(txs) == 3


def test_ethereum_balances_are_exact_text(sqlite_populated):
    at = open_page("blocks", query={"chain": "ethereum"})
    assert at.segmented_control(key="blocks_chain").value == "ETH"
    addresses = next(df.value for df in at.dataframe if "address" in df.value.columns)
    expected = str(ETH_BALANCE_WEI)
    assert addresses["balance"].tolist() == [f"{expected[:-18]}.{expected[-18:]}"]


# ---------------------------------------------------------------------------------------------- runs


def test_rerun_button_writes_exactly_one_request(sqlite_populated):
    db, seeded = sqlite_populated
    failed = seeded.runs["failed"]
    at = open_page("runs")
    select_row(at, "runs", "id", failed)
    at.run()
    rerun = button(at, "Rerun run #")
    assert rerun.label == f"Rerun run #{failed}"
    rerun.click().run()
    assert not at.exception
    assert request_count(db) == request_count(db, failed) == 1
    button(at, "Rerun run #").click().run()  # disabled now; even a forced click adds nothing
    assert request_count(db) == 1
    assert any("Rerun request #1: pending" in m for m in texts(at, "markdown"))


def test_selection_stays_on_the_run_id_when_new_runs_arrive(sqlite_populated):
    db, seeded = sqlite_populated
    at = open_page("runs")
    select_row(at, "runs", "id", seeded.runs["failed"])
    at.run()
    with db.session_factory.begin() as session:  # a newer failed run shifts every row down by one
        session.add(DataIngestionLog(source="coingecko", data_type="prices", coin="ethereum", status="failed",
                                     started_at=datetime.now(UTC), params={}))  # fmt: skip
    reset_app_state()
    at.run()
    assert button(at, "Rerun run #").label == f"Rerun run #{seeded.runs['failed']}"


def test_rerun_all_failed_asks_for_confirmation(sqlite_populated):
    db, seeded = sqlite_populated
    at = open_page("runs", query={"status": "failed"})
    button(at, "Rerun all 2 unresolved failed").click().run()
    assert request_count(db) == 0
    assert any(f"#{seeded.runs['failed']}" in w for w in texts(at, "warning"))
    button(at, "Confirm: rerun 2 runs").click().run()
    assert not at.exception
    assert request_count(db, seeded.runs["failed"]) == request_count(db, seeded.runs["old_failed"]) == 1
    assert any("Queued 2 rerun requests" in s for s in texts(at, "success"))


def test_link_opens_a_run_with_its_details(sqlite_populated):
    _, seeded = sqlite_populated
    at = open_page("runs", query={"run": str(seeded.runs["old_failed"])})
    assert any(f"Run #{seeded.runs['old_failed']}" in s.value for s in at.subheader)
    assert any(f"#{seeded.runs['child']}" in b.label for b in at.button)  # its rerun
    assert any("SourceUnavailable" in e for e in texts(at, "error"))


@pytest.mark.parametrize("page", every_page(fast="runs"))
def test_read_only_renders_no_write_action(sqlite_populated, use_database, page):
    db, seeded = sqlite_populated
    use_database(db.database_url, DASHBOARD_READ_ONLY="true")
    at = open_page(page, query={"run": str(seeded.runs["failed"])} if page == "runs" else None)
    labels = [b.label for b in at.button]
    assert not [label for label in labels if "Rerun" in label or "Run here" in label or "Confirm" in label]
    if page == "runs":
        assert any(f"Run #{seeded.runs['failed']}" in s.value for s in at.subheader)


def test_run_here_replays_the_slice_without_a_scheduler(tmp_path, use_database):
    from pipeline.simulator import Simulator, SimulatorConfig
    from tests.dashboard.conftest import _migrated
    from tests.dashboard.seed import populate

    url = f"sqlite:///{tmp_path}/noscheduler.db"
    db = _migrated(url)
    seeded = populate(db, with_worker=False)
    failed = seeded.runs["failed"]
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        use_database(url, COINGECKO_BASE_URL=sim.coingecko_url, BLOCKCHAIR_BASE_URL=sim.blockchair_url)
        at = open_page("runs", query={"run": str(failed)})
        assert any("No scheduler is running" in w for w in texts(at, "warning"))
        button(at, "Run here: run #").click().run()
    assert not at.exception
    request = db.latest_request_for(failed)
    assert request is not None
    assert request.status == "done", request
    child = db.get_run(request.result_run_id)
    assert child.parent_run_id == failed
    assert child.status.value == "success"
    assert any(f"Rerun request #{request.id}: done" in m for m in texts(at, "markdown"))
    db.dispose()
