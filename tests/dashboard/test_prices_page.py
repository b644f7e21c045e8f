"""The Prices page: AppTest over a database with candles (90 days of hourly points, 400 days of daily
snapshots, 5-minute points for the latest price), and a slow browser run that saves screenshots.

Screenshots: test-artifacts/prices_candles.png, prices_compare.png, prices_analytics.png,
prices_one_day.png.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from dashboard import charts
from pipeline.config import Settings
from pipeline.database import DatabaseService
from tests.dashboard.helpers import ROOT, open_page, plotly_charts
from tests.dashboard.seed import PRICE_LEVELS, seed_findings, seed_price_history
from tests.support.browser import chromium_page, needs_chromium
from tests.support.databases import migrated
from tests.support.settings import make_settings

ARTIFACTS = ROOT / "test-artifacts"
QUOTES = "usd,eur,btc"


def figure(chart: Any) -> dict[str, Any]:
    return json.loads(chart.proto.spec)


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def main_chart(at: AppTest) -> dict[str, Any]:
    """The price chart: the first chart, in the first tab."""
    return figure(plotly_charts(at)[0])


def seeded_database(path: Path) -> tuple[DatabaseService, str, datetime]:
    url = f"sqlite:///{path}"
    db = migrated(make_settings(url))
    now = datetime.now(UTC)
    seed_price_history(db, now, quotes={"usd": 1.0, "eur": 0.92})
    seed_findings(db, now.date())
    return db, url, now


@pytest.fixture
def priced(tmp_path: Path, use_database: Callable[..., None]) -> Iterator[tuple[DatabaseService, datetime]]:
    """Candles for bitcoin, ethereum and dogecoin in USD and EUR; the app pointed at them."""
    db, url, now = seeded_database(tmp_path / "prices.db")
    use_database(url, QUOTE_CURRENCIES=QUOTES)
    yield db, now
    db.dispose()


# ---------------------------------------------------------------------------------------------- AppTest


def test_default_view_compares_the_coins_rebased_to_100(priced):
    at = open_page("prices")
    assert at.multiselect(key="prices_coins").value == ["bitcoin", "ethereum", "dogecoin"]
    labels = [m.label for m in at.metric]
    assert len(labels) == 3
    assert all(" · as of " in label and label.endswith(" UTC") for label in labels), labels
    assert all(m.value.startswith("$") for m in at.metric)
    assert all(m.delta.endswith("over 3M") for m in at.metric)
    chart = main_chart(at)
    assert "Index" in chart["layout"]["yaxis"]["title"]["text"]  # the prices are 500,000x apart
    lines = [t for t in chart["data"] if t.get("legendgroup") in PRICE_LEVELS]
    assert {t["line"]["color"] for t in lines} == {charts.coin_color(c) for c in PRICE_LEVELS}
    assert any(t["name"] == charts.FINDING_TRACE for t in chart["data"])  # quality marks stay
    assert dict(at.query_params) == {
        "coins": "bitcoin,ethereum,dogecoin", "quote": "usd", "interval": "1d", "preset": "90d",
        "tab": "chart", "log": "0", "mode": "auto",
    }  # fmt: skip
    caption = " ".join(texts(at, "caption"))
    assert "Auto: rebased to 100" in caption
    assert "hourly samples" in caption


def test_one_coin_is_candles_over_volume(priced):
    at = open_page("prices", query={"coins": "bitcoin", "preset": "7d"})
    chart = main_chart(at)
    assert [t["type"] for t in chart["data"][:2]] == ["candlestick", "bar"]
    assert chart["layout"]["yaxis2"]["title"]["text"] == "Volume"
    assert chart["layout"]["height"] >= 450
    assert at.segmented_control(key="prices_interval").value == "1h"  # 7D opens hourly
    assert [m.label for m in at.metric][1:] == ["High in range", "Low in range", "24 h volume"]
    marks = next(t for t in chart["data"] if t["name"] == charts.MISSING_CANDLES)  # the seeded 6-hour gap
    assert "6 × 1h missing" in marks["hovertext"][0]


def test_link_state_round_trips(priced):
    query = {"coins": "ethereum,bitcoin", "quote": "eur", "interval": "4h", "preset": "30d",
             "tab": "analytics", "log": "1", "mode": "multiples"}  # fmt: skip
    at = open_page("prices", query=query)
    assert not texts(at, "warning") or all("Write actions" in w for w in texts(at, "warning"))
    assert at.multiselect(key="prices_coins").value == ["ethereum", "bitcoin"]
    assert at.segmented_control(key="prices_quote").value == "eur"
    assert at.segmented_control(key="prices_interval").value == "4h"
    assert at.segmented_control(key="prices_preset").value == "30d"
    assert at.segmented_control(key="prices_mode").value == "multiples"
    assert at.toggle(key="prices_log").value is True
    assert at.session_state["prices_tab"] == "Analytics"
    assert dict(at.query_params) == query
    chart = main_chart(at)
    assert chart["layout"]["yaxis"]["type"] == chart["layout"]["yaxis2"]["type"] == "log"
    assert chart["layout"]["yaxis"]["ticktext"][0].startswith("€")
    assert all(m.value.startswith("€") for m in at.metric)
    # A custom range travels as dates.
    start = datetime.now(UTC).date() - timedelta(days=20)
    at.date_input(key="prices_range").set_value((start, start + timedelta(days=5))).run()
    assert at.query_params["preset"] == "custom"
    assert (at.query_params["start"], at.query_params["end"]) == (
        start.isoformat(),
        (start + timedelta(days=5)).isoformat(),
    )
    assert at.query_params["interval"] == "1h"  # a 6-day range picks hourly candles
    reopened = open_page("prices", query=dict(at.query_params))
    assert reopened.date_input(key="prices_range").value == (start, start + timedelta(days=5))
    assert reopened.segmented_control(key="prices_preset").value == "custom"


def test_a_new_period_picks_its_interval(priced):
    at = open_page("prices", query={"coins": "bitcoin"})
    for preset, interval in (("1d", "1h"), ("30d", "4h"), ("1y", "1d"), ("all", "1w")):
        at.segmented_control(key="prices_preset").set_value(preset).run()
        assert at.segmented_control(key="prices_interval").value == interval, preset
        assert at.query_params["interval"] == interval
    at.segmented_control(key="prices_interval").set_value("1d").run()  # the user's choice stays
    assert at.query_params["interval"] == "1d"
    chart = main_chart(at)  # 'all': 400 days, of which only the last 90 have candles
    older = next(t for t in chart["data"] if charts.HISTORY_TRACE in t["name"])
    assert older["line"]["dash"] == "dot"
    assert "no candles exist" in " ".join(texts(at, "caption"))


def test_bad_link_values_are_ignored_with_a_warning(priced):
    query = {"quote": "xyz", "interval": "2m", "tab": "nope", "mode": "weird", "coins": "bitcoin"}
    at = open_page("prices", query=query)
    warning = " ".join(w for w in texts(at, "warning") if "ignored" in w)
    for name in ("quote", "interval", "tab", "mode"):
        assert name in warning, warning
    assert at.segmented_control(key="prices_quote").value == "usd"
    assert at.segmented_control(key="prices_interval").value == "1d"
    assert at.session_state["prices_tab"] == "Chart"


def test_a_quote_without_prices_says_so(priced):
    at = open_page("prices", query={"quote": "btc"})
    assert any("No BTC prices" in i and "EUR, USD" in i for i in texts(at, "info"))
    assert plotly_charts(at) == []


def test_empty_database_shows_what_to_run(empty_url):
    at = open_page("prices")
    assert any("crypto-pipeline" in i for i in texts(at, "info"))
    assert plotly_charts(at) == []


def test_csv_holds_exactly_the_candles_shown(priced, monkeypatch):
    db, _ = priced
    offered: list[bytes] = []
    original = streamlit.download_button

    def capture(label: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        offered.append(data)
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", capture)
    at = open_page(
        "prices", query={"coins": "bitcoin,ethereum", "preset": "7d", "interval": "4h", "quote": "eur"}
    )
    assert len(offered) == 1
    csv = pd.read_csv(io.BytesIO(offered[0]), dtype=str, keep_default_na=False)
    assert set(csv["quote"]) == {"eur"}
    assert set(csv["interval"]) == {"4h"}
    assert set(csv["kind"]) == {"candle"}
    shown = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert len(shown) == len(csv)
    first, last = (
        datetime.fromisoformat(t.replace("Z", "+00:00"))
        for t in (csv["time_utc"].min(), csv["time_utc"].max())
    )
    stored = [
        c
        for coin in ("bitcoin", "ethereum")
        for c in db.get_candles(coin_id=coin, interval="4h", start=first, end=last, quote="eur")
    ]
    assert len(stored) == len(csv)
    for candle, row in zip(stored, csv.itertuples(), strict=True):
        assert row.coin_id == candle.coin_id
        assert datetime.fromisoformat(row.time_utc.replace("Z", "+00:00")) == candle.start
        for field in ("open", "high", "low", "close", "volume"):
            assert Decimal(getattr(row, field)) == getattr(candle, field), field
    assert "index_100" in csv.columns  # the chart is rebased: so is its CSV


def test_analytics_tab_renders_the_heatmap(priced):
    at = open_page("prices", query={"tab": "analytics", "preset": "1y"})
    assert at.session_state["prices_tab"] == "Analytics"
    heat = next(t for c in plotly_charts(at) for t in figure(c)["data"] if t["type"] == "heatmap")
    assert (heat["zmin"], heat["zmax"]) == (-1, 1)
    assert heat["texttemplate"] == "%{text}"
    assert len(heat["z"]) == 3
    assert all(0.2 < float(v) < 1 for row in heat["text"] for v in row if v != "1.00")  # seeded together
    summary = next(df.value for df in at.dataframe if "max drawdown" in df.value.columns)
    assert summary["coin"].tolist() == ["Bitcoin", "Ethereum", "Dogecoin"]
    assert all(v.startswith("-") for v in summary["max drawdown"])


# ---------------------------------------------------------------------------------------------- browser


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the dashboard did not answer at {url}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard (`streamlit run`) on a free loopback port over a database with candles."""
    from benchmarks.harness.processes import free_port

    tmp = tmp_path_factory.mktemp("prices")
    db, url, _ = seeded_database(tmp / "prices.db")
    db.dispose()
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env |= {"DATABASE_URL": url, "COINS": "bitcoin,ethereum,dogecoin", "QUOTE_CURRENCIES": QUOTES}
    port = free_port()
    log = tmp / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/_stcore/health", proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _open(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_attached(timeout=60_000)
    page.wait_for_timeout(2000)  # let plotly finish drawing
    assert page.locator('[data-testid="stException"]').count() == 0


@pytest.mark.slow
@needs_chromium
def test_prices_page_in_a_browser(served):
    """Screenshots of the views an analyst opens first; the chart starts above the fold of a laptop."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(height=900) as page:
        _open(page, f"{served}/prices?coins=bitcoin&preset=30d")
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        box = chart.bounding_box()
        assert box is not None
        assert box["height"] >= 450
        assert box["y"] < 500, box  # above the fold of a 1440 x 900 window
        expect(page.locator('[data-testid="stMetricLabel"]').first).to_contain_text("as of")
        page.screenshot(path=str(ARTIFACTS / "prices_candles.png"))

        _open(page, f"{served}/prices?coins=bitcoin,ethereum,dogecoin&preset=90d")
        expect(page.get_by_text("Auto: rebased to 100", exact=False)).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "prices_compare.png"))

        _open(page, f"{served}/prices?coins=bitcoin&preset=1d")
        page.screenshot(path=str(ARTIFACTS / "prices_one_day.png"))

    with chromium_page(height=1500) as page:
        _open(page, f"{served}/prices?coins=bitcoin,ethereum,dogecoin&preset=90d")
        page.get_by_role("tab", name="Analytics").click()
        expect(page.get_by_text("Correlation of daily returns")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(2500)
        assert "tab=analytics" in page.url
        page.screenshot(path=str(ARTIFACTS / "prices_analytics.png"))
    print(f"screenshots in {ARTIFACTS}: prices_candles.png prices_compare.png prices_analytics.png "
          "prices_one_day.png")  # fmt: skip
