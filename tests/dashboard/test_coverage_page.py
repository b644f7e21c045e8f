"""AppTest: the Coverage & quality page (heatmaps, gaps as ranges, Fill gaps, findings) and finding marks
on the Prices and Blocks pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard import charts
from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.models import ReplayRequest
from pipeline.services.gapfill import plan_fill
from tests.dashboard.helpers import open_page, plotly_charts
from tests.dashboard.seed import (
    BLOCK_FINDING_OFFSET,
    BTC_GAP,
    BTC_TIP,
    PRICE_FINDING_DAYS,
    Seeded,
    seed_findings,
)

# Through the simulator or the whole page: on SQLite in the fast path, on both dialects in the full suite.
pytestmark = pytest.mark.slow_on_postgresql


def figure(chart) -> dict:  # noqa: ANN001
    return json.loads(chart.proto.spec)


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def frame_with(at: AppTest, column: str):  # noqa: ANN201
    return next(df.value for df in at.dataframe if column in df.value.columns)


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def click(at: AppTest, label_start: str) -> None:
    found = [b for b in at.button if b.label.startswith(label_start)]
    assert len(found) == 1, labels(at)
    found[0].click().run()
    assert not at.exception, [e.value for e in at.exception]


def backfills(db: DatabaseService) -> list[tuple[str, str, dict]]:
    stmt = select(ReplayRequest.kind, ReplayRequest.requested_by, ReplayRequest.slice_params)
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt)]


def btc_hole(seeded: Seeded) -> tuple[int, int]:
    held = set(seeded.btc_blocks)
    missing = [h for h in range(min(held), max(held)) if h not in held]
    assert missing == list(range(missing[0], missing[-1] + 1))  # the seed leaves one hole
    return missing[0], missing[-1]


@pytest.fixture
def with_findings(sqlite_populated: tuple[DatabaseService, Seeded]) -> tuple[DatabaseService, Seeded]:
    db, seeded = sqlite_populated
    seed_findings(db, seeded.today, seeded.runs["partial"])
    return db, seeded


# ---------------------------------------------------------------------------------------------- coverage


def test_empty_database_explains_what_to_run_and_offers_no_fill(empty_url):
    at = open_page("coverage")
    assert any("Nothing stored yet" in i and "crypto-pipeline up --demo" in i for i in texts(at, "info"))
    assert plotly_charts(at) == []
    assert not [label for label in labels(at) if "Fill gaps" in label]


def test_heatmaps_and_gaps_table_show_the_holes_as_ranges(with_findings):
    _, seeded = with_findings
    at = open_page("coverage")
    heatmap, blocks = (figure(c) for c in plotly_charts(at)[:2])
    cells = next(t for t in heatmap["data"] if t["type"] == "heatmap")
    assert set(cells["y"]) == {"Bitcoin", "Ethereum", "Dogecoin"}
    assert len(cells["x"]) == get_settings().COVERAGE_DAYS
    legend = {t["name"] for t in heatmap["data"] if t["type"] == "scatter"}
    assert {"present", "missing"} <= legend <= set(charts.COVERAGE_COLORS)
    strips = [t for t in blocks["data"] if t["type"] == "heatmap"]
    assert {t["y"][0] for t in strips} == {"bitcoin", "ethereum"}
    assert all(len(t["x"]) <= charts.MAX_HEIGHT_BUCKETS for t in strips)
    gaps = frame_with(at, "range")
    low, high = btc_hole(seeded)
    hole = gaps[(gaps["data"] == "blocks") & (gaps["subject"] == "bitcoin")]
    assert hole[["range", "size", "unit"]].values.tolist() == [[f"{low}..{high}", high - low + 1, "heights"]]
    first, last = (seeded.today - timedelta(days=d) for d in BTC_GAP)
    assert f"{first}..{last}" in gaps.loc[gaps["subject"] == "bitcoin", "range"].tolist()
    assert len(gaps) < 20  # ranges, not one row per day
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Block heights missing"] == str(high - low + 1)
    assert metrics["Quality errors"] == "2"


def test_fill_gaps_previews_confirms_and_queues_once(populated):
    db, _ = populated
    plan = plan_fill(db, get_settings(), db.get_coins(active_only=True))
    assert plan.slices
    at = open_page("coverage")
    click(at, "Fill gaps")
    assert backfills(db) == []  # the preview queues nothing
    assert any(f"{plan.requests} requests in {len(plan.slices)} slices" in m for m in texts(at, "markdown"))
    preview = frame_with(at, "slice")
    assert preview["slice"].tolist() == [s.description for s in plan.slices]
    for source, n in plan.requests_by_source.items():
        assert any(f"**{source}**: {n} requests" in m for m in texts(at, "markdown"))
    click(at, "Confirm: queue")
    rows = backfills(db)
    assert len(rows) == len(plan.slices)
    assert {(kind, by) for kind, by, _ in rows} == {("backfill", "dashboard")}
    assert any(f"Queued {len(plan.slices)} backfill requests" in s for s in texts(at, "success"))
    assert any(f"{len(plan.slices)} pending" in c for c in texts(at, "caption"))

    click(at, "Fill gaps")
    click(at, "Confirm: queue")
    assert len(backfills(db)) == len(plan.slices)
    assert any("Nothing new queued" in s for s in texts(at, "success"))


def test_cancel_queues_nothing(sqlite_populated):
    db, _ = sqlite_populated
    at = open_page("coverage")
    click(at, "Fill gaps")
    click(at, "Cancel")
    assert backfills(db) == []
    assert any(label.startswith("Fill gaps") for label in labels(at))


def test_read_only_hides_fill_gaps(sqlite_populated, use_database):
    db, _ = sqlite_populated
    use_database(db.database_url, DASHBOARD_READ_ONLY="true")
    at = open_page("coverage")
    assert not [label for label in labels(at) if "Fill gaps" in label or "Confirm" in label]
    assert any("Read-only dashboard" in c for c in texts(at, "caption"))
    assert len(plotly_charts(at)) >= 2


# ---------------------------------------------------------------------------------------------- quality


def test_findings_are_listed_newest_first_and_filter(with_findings):
    at = open_page("coverage")
    findings = frame_with(at, "check_name")
    assert findings["check_name"].tolist() == ["non_positive_size", "non_positive_value", "price_move"]
    assert {"severity", "slice", "observed", "threshold", "samples"} <= set(findings.columns)
    assert "height=" in findings["samples"].iloc[0]
    samples = frame_with(at, "finding")
    assert len(samples) == 4  # 1 + 1 + 2 sample rows
    assert any("Data quality (3)" in str(t.label) for t in at.tabs)

    at.multiselect(key="quality_severity").set_value(["error"]).run()
    assert frame_with(at, "check_name")["severity"].tolist() == [["error"], ["error"]]
    at.multiselect(key="quality_coins").set_value(["BTC"]).run()
    assert frame_with(at, "check_name")["subject"].tolist() == ["BTC"]
    at.multiselect(key="quality_severity").set_value([]).run()
    assert set(frame_with(at, "check_name")["subject"]) == {"BTC", "bitcoin"}  # the coin and its chain


def test_no_findings_says_so(sqlite_populated):
    at = open_page("coverage")
    assert any("No findings" in s for s in texts(at, "success"))


# ---------------------------------------------------------------------------------------------- marks


def test_price_chart_marks_the_days_named_in_findings(with_findings):
    _, seeded = with_findings
    at = open_page("prices")
    price = figure(plotly_charts(at)[0])
    marks = next(t for t in price["data"] if t["name"] == charts.FINDING_TRACE)
    expected = {(seeded.today - timedelta(days=d)).isoformat() for d in (*PRICE_FINDING_DAYS, 3)}
    assert {x[:10] for x in marks["x"]} == expected
    assert any("price_move" in h for h in marks["hovertext"])
    assert any(t["name"] == "Missing days" for t in price["data"])  # missing days stay shaded


def test_blocks_charts_mark_the_heights_named_in_findings(with_findings):
    _, seeded = with_findings
    at = open_page("blocks")
    height = BTC_TIP - BLOCK_FINDING_OFFSET
    latest = figure(plotly_charts(at)[-1])
    marks = next(t for t in latest["data"] if t["name"] == charts.FINDING_TRACE)
    assert marks["x"] == [height]
    assert any("provisional" in a.get("text", "") for a in latest["layout"].get("annotations", []))
    daily = figure(plotly_charts(at)[0])
    day_marks = next(t for t in daily["data"] if t["name"] == charts.FINDING_TRACE)
    assert len(day_marks["x"]) == 1
    assert f"{height:,}" in day_marks["hovertext"][0]
