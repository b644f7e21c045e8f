"""The runs timeline: its store query (both dialects), the Gantt figure, the Timeline tab under AppTest."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from dashboard import charts, timeline
from dashboard.components import STATUS_STYLE, STATUS_TEXT_COLORS
from pipeline.database import DatabaseService
from pipeline.models import DataIngestionLog
from pipeline.store import queries
from tests.dashboard.helpers import open_page, plotly_charts

WORKER = "scheduler:host-a:101"


def add_run(db: DatabaseService, **values: object) -> int:
    """One run log row as the scheduler leaves it (finished unless `status` is running)."""
    started = values.pop("started_at")
    seconds = float(values.pop("seconds", 4.0))  # type: ignore[arg-type]
    status = values.pop("status", "success")
    running = status == "running"
    row = DataIngestionLog(
        source=values.pop("source", "blockchair"), data_type=values.pop("data_type", "blocks"),
        coin=values.pop("coin", "bitcoin"), status=status, trigger="schedule", params={}, started_at=started,
        finished_at=None if running else started + timedelta(seconds=seconds),  # type: ignore[operator]
        duration_seconds=None if running else seconds, worker_id=values.pop("worker_id", WORKER), **values,
    )  # fmt: skip
    with db.session_factory.begin() as session:
        session.add(row)
        session.flush()
        return row.id


def frame_of(rows: list[dict]) -> pd.DataFrame:
    """A timeline frame as `queries.run_timeline` returns it, from a few rows."""
    base = {"source": "blockchair", "data_type": "blocks", "coin": "bitcoin", "worker_id": WORKER,
            "wait_seconds": 0.0, "http_seconds": None, "resolved_by_run_id": None}  # fmt: skip
    frame = pd.DataFrame([{**base, **row} for row in rows])
    for name in ("started_at", "finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["resolved_by_run_id"] = frame["resolved_by_run_id"].astype("Int64")
    return frame


# ---------------------------------------------------------------------------------------------- query


def test_run_timeline_returns_the_runs_reaching_into_the_window(db):
    now = datetime.now(UTC)
    inside = add_run(db, started_at=now - timedelta(minutes=30), wait_seconds=1.0, http_seconds=2.0)
    reaching_in = add_run(db, started_at=now - timedelta(minutes=61), seconds=120)  # ends 59 min ago
    add_run(db, started_at=now - timedelta(minutes=90))  # ended before the window
    add_run(db, started_at=now - timedelta(days=3))
    stuck = add_run(db, started_at=now - timedelta(days=3), status="running")
    frame = queries.run_timeline(db, now - timedelta(hours=1))
    assert frame["id"].tolist() == [stuck, reaching_in, inside]  # oldest first
    assert list(frame.columns) == queries.TIMELINE_COLUMNS
    row = frame.set_index("id").loc[inside]
    assert (row["wait_seconds"], row["http_seconds"], row["worker_id"]) == (1.0, 2.0, WORKER)
    assert pd.isna(frame.set_index("id").loc[reaching_in, "http_seconds"])  # an older run: not measured
    assert str(frame["started_at"].dt.tz) == "UTC"
    assert queries.run_timeline(db, now - timedelta(hours=1), limit=2)["id"].tolist() == [reaching_in, inside]


# ---------------------------------------------------------------------------------------------- figure


def test_segments_split_a_run_into_wait_http_and_the_rest():
    now = datetime.now(UTC)
    start = now - timedelta(minutes=10)
    frame = frame_of([
        {"id": 1, "status": "success", "started_at": start, "finished_at": start + timedelta(seconds=10),
         "duration_seconds": 10.0, "wait_seconds": 2.0, "http_seconds": 5.0},
        {"id": 2, "status": "failed", "started_at": start, "finished_at": start + timedelta(seconds=10),
         "duration_seconds": 10.0, "wait_seconds": 4.0, "http_seconds": None},
        {"id": 3, "status": "running", "started_at": now - timedelta(seconds=30), "finished_at": None,
         "duration_seconds": None, "wait_seconds": 0.0, "http_seconds": None},
        {"id": 4, "status": "success", "started_at": start, "finished_at": start + timedelta(seconds=1),
         "duration_seconds": 1.0, "wait_seconds": 5.0, "http_seconds": 9.0},  # figures over the duration
    ])  # fmt: skip
    parts = charts.timeline_segments(frame, now=now, since=now - timedelta(hours=1))
    assert parts.loc[0, ["wait", "http", "rest"]].tolist() == [2.0, 5.0, 3.0]
    assert parts["split"].tolist() == [True, False, False, True]
    assert parts.loc[1, ["wait", "http", "rest"]].tolist() == [4.0, 0.0, 6.0]  # the rest is not split
    assert parts["running"].tolist() == [False, False, True, False]
    assert parts.loc[2, "seconds"] == pytest.approx(30, abs=1)
    assert parts.loc[3, ["wait", "http", "rest"]].tolist() == [1.0, 0.0, 0.0]  # capped at the duration
    # Short runs are drawn at least MIN_BAR_SHARE of the window long, their parts in proportion.
    least = 3_600_000 * charts.MIN_BAR_SHARE
    assert parts.loc[3, "drawn_ms"] == pytest.approx(least)
    assert parts.loc[0, "drawn_ms"] == pytest.approx(least)  # 10 s < 0.3 % of an hour
    assert parts.loc[0, "wait_ms"] / parts.loc[0, "drawn_ms"] == pytest.approx(0.2)
    assert parts.loc[0, ["wait_ms", "http_ms", "rest_ms"]].sum() == pytest.approx(parts.loc[0, "drawn_ms"])
    long = charts.timeline_segments(frame, now=now, since=now - timedelta(seconds=100))
    assert long.loc[0, "drawn_ms"] == pytest.approx(10_000)  # long enough: drawn as it is


def test_timeline_figure_has_a_bar_per_run_in_status_colours_with_run_ids():
    now = datetime.now(UTC)
    rows = []
    for i, status in enumerate(["success", "partial", "failed", "running", "success"]):
        started = now - timedelta(minutes=50 - 10 * i)
        running = status == "running"
        rows.append({
            "id": 100 + i, "status": status, "started_at": started, "worker_id": f"w{i % 2}",
            "finished_at": None if running else started + timedelta(seconds=60),
            "duration_seconds": None if running else 60.0, "wait_seconds": 10.0, "http_seconds": 20.0,
            "coin": "doge<b>coin", "resolved_by_run_id": 104 if status == "failed" else None,
        })  # fmt: skip
    fig = charts.run_timeline(frame_of(rows), now=now, hours=1)
    bars = {t.name: t for t in fig.data if t.customdata is not None}
    assert list(bars) == ["success", "partial", "failed", "running"]
    assert sorted(int(i) for t in bars.values() for i in t.customdata) == [100, 101, 102, 103, 104]
    for status, trace in bars.items():  # the badge colours of components.STATUS_STYLE
        assert trace.marker.color == STATUS_TEXT_COLORS[STATUS_STYLE[status][0]]
    assert set(bars["success"].y) == {"w0"}
    assert "made good by run #104" in bars["failed"].hovertext[0]
    assert "wait 10.0 s · HTTP 20.0 s · database & parsing 30.0 s" in bars["success"].hovertext[0]
    names = {t.name for t in fig.data}
    assert {charts.SEGMENT_WAIT, charts.SEGMENT_HTTP, charts.SEGMENT_REST} <= names
    assert charts.SEGMENT_UNSPLIT not in names  # every finished run has its HTTP time
    start, end = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert end - start == pd.Timedelta(hours=1)
    by_job = charts.run_timeline(frame_of(rows), now=now, hours=1, by="job")
    labels = {y for t in by_job.data if t.customdata is not None for y in t.y}
    assert labels == {"blockchair · blocks · doge&lt;b&gt;coin"}  # outside text made literal for plotly


def test_ten_thousand_runs_build_quickly():
    now = datetime.now(UTC)
    rng = np.random.default_rng(7)
    starts = [now - timedelta(seconds=int(s)) for s in rng.integers(60, 7 * 86_400, 10_000)]
    frame = frame_of([
        {"id": i, "status": "success", "started_at": s, "finished_at": s + timedelta(seconds=3),
         "duration_seconds": 3.0, "http_seconds": 1.0}
        for i, s in enumerate(starts)
    ])  # fmt: skip
    fig = charts.run_timeline(frame, now=now, hours=168)
    assert sum(len(t.customdata) for t in fig.data if t.customdata is not None) == 10_000


def test_picked_run_reads_the_bar_s_run_id():
    assert timeline.picked_run({"selection": {"points": [{"customdata": 42, "point_index": 3}]}}) == 42
    assert timeline.picked_run({"selection": {"points": [{"customdata": [7]}]}}) == 7
    assert timeline.picked_run({"selection": {"points": []}}) is None
    assert timeline.picked_run({"selection": {"points": [{"x": 1}]}}) is None  # a legend key: no run
    assert timeline.picked_run(None) is None


# ---------------------------------------------------------------------------------------------- page


def bars(chart) -> list[dict]:  # noqa: ANN001
    """The run bars of a chart (the traces with customdata), their arrays decoded: plotly sends numpy
    arrays as {"dtype", "bdata"} (base64)."""

    def decode(value: object) -> object:
        if isinstance(value, dict) and "bdata" in value:
            return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
        return value

    traces = json.loads(chart.proto.spec)["data"]
    return [{k: decode(v) for k, v in t.items()} for t in traces if t.get("customdata") is not None]


def run_ids(chart) -> set[int]:  # noqa: ANN001
    return {int(i) for t in bars(chart) for i in t["customdata"]}


def test_timeline_tab_draws_the_runs_of_the_window(sqlite_populated):
    _, seeded = sqlite_populated
    at = open_page("runs", query={"view": "timeline"})
    (chart,) = plotly_charts(at)
    six_hours = {seeded.runs[n] for n in ("success", "partial", "failed", "running")}
    assert run_ids(chart) == six_hours
    assert any("click a bar to open the run" in c for c in (e.value for e in at.caption))
    assert not at.dataframe  # the table tab is not drawn while the timeline is shown

    at.segmented_control(key=timeline.WINDOW_KEY).set_value("24h").run()
    assert at.query_params["window"] == "24h"
    assert at.query_params["view"] == "timeline"
    at.segmented_control(key=timeline.ROWS_KEY).set_value("job").run()
    (chart,) = plotly_charts(at)
    assert run_ids(chart) == six_hours
    rows = {y for t in bars(chart) for y in t["y"]}
    assert "coingecko · prices · bitcoin" in rows
    assert at.query_params["by"] == "job"


def test_the_link_sets_window_and_rows(sqlite_populated):
    _, seeded = sqlite_populated
    at = open_page("runs", query={"view": "timeline", "window": "7d", "by": "job"})
    (chart,) = plotly_charts(at)
    assert seeded.runs["old_failed"] in run_ids(chart)
    assert at.segmented_control(key=timeline.ROWS_KEY).value == "job"
    at = open_page("runs", query={"view": "timeline", "window": "2y"})
    assert any("window" in w.value and "2y" in w.value for w in at.warning)  # escaped: link text


def test_clicking_a_bar_opens_its_run_and_puts_it_in_the_url(sqlite_populated):
    _, seeded = sqlite_populated
    failed = seeded.runs["failed"]
    at = open_page("runs", query={"view": "timeline"})
    at.session_state[timeline.CHART_KEY] = {
        "selection": {"points": [{"customdata": failed, "curve_number": 2, "point_index": 0}],
                      "point_indices": [0], "box": [], "lasso": []}
    }  # fmt: skip
    at.run()
    assert not at.exception
    assert any(f"Run #{failed}" in s.value for s in at.subheader)
    assert at.query_params["run"] == str(failed)
    assert any(b.label == f"Rerun run #{failed}" for b in at.button)
    at.run()  # the chart keeps its selection: the run stays, nothing is opened twice
    assert any(f"Run #{failed}" in s.value for s in at.subheader)


def test_an_empty_window_says_so(sqlite_populated):
    at = open_page("runs", query={"view": "timeline", "window": "1h", "status": "failed"})
    assert not plotly_charts(at)
    assert any("No runs in the last 1 h" in i.value for i in at.info)


def test_split_line_says_where_the_window_s_time_went():
    now = datetime.now(UTC)
    start = now - timedelta(minutes=5)
    frame = frame_of([
        {"id": 1, "status": "success", "started_at": start, "finished_at": start + timedelta(seconds=10),
         "duration_seconds": 10.0, "wait_seconds": 2.0, "http_seconds": 6.0},
        {"id": 2, "status": "failed", "started_at": start, "finished_at": start + timedelta(seconds=10),
         "duration_seconds": 10.0, "wait_seconds": 4.0, "http_seconds": None},  # not split: left out
    ])  # fmt: skip
    split = charts.timeline_split(charts.timeline_segments(frame, now=now, since=now - timedelta(hours=1)))
    assert timeline.split_line(split) == (
        "Time of the 1 finished run in this window: 20% rate-limit wait · 60% HTTP · 20% database & parsing "
        "(of 10.0 s)."
    )
    assert timeline.split_line({"runs": 0.0, "wait": 0.0, "http": 0.0, "rest": 0.0}) is None
