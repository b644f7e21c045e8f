"""Runs timeline benchmark: the Timeline tab of the Ingestion runs page over 10,000 runs of 7 days, on SQLite.

    python benchmarks/timeline.py [--runs 10000] [--days 7] [--repeat 5] [--workdir DIR]

Seeds `--runs` finished runs (plus a few still running) spread evenly over the last `--days` days: twelve
jobs (source · data type · coin) on three workers, 1 to 60 seconds each with a rate-limit wait and an HTTP
time (the oldest tenth without one, as runs recorded before it was measured), one in twenty failed and
one in thirteen partial. Rows go in with SQLAlchemy core `insert` in one transaction.

Then, `--repeat` times (median reported):

- query: `pipeline.store.queries.run_timeline` for the 7-day window (what `data.run_timeline` caches);
- figure: `dashboard.charts.run_timeline` on that frame (per job), and the split line under it;
- JSON: the figure serialised as Streamlit sends it (`plotly.io.to_json`), with its size;
- page: a headless AppTest render of the runs page at `?view=timeline&window=7d&by=job`, cold caches
  (a new engine, nothing cached: the query runs inside the render).

Target: query + figure <= 2 s, and the whole page render <= 2 s. The plan of the query is printed
(EXPLAIN QUERY PLAN): it must SEARCH indexes of the run log, never SCAN it (not even along an index,
which walks the whole log).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import plotly.io as pio  # noqa: E402

from dashboard import charts, timeline  # noqa: E402
from pipeline.config import get_settings, load_settings  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.models import DataIngestionLog  # noqa: E402
from pipeline.store import queries  # noqa: E402

JOBS = [
    (source, data_type, coin)
    for source, data_type in (
        ("blockchair", "blocks"),
        ("blockchair", "transactions"),
        ("coingecko", "prices"),
    )
    for coin in ("bitcoin", "ethereum", "dogecoin", "litecoin")
]
WORKERS = ["scheduler:host-a:101", "scheduler:host-b:202", "scheduler:host-c:303"]
TARGET_SECONDS = 2.0
BATCH = 5_000


def _runs(count: int, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    span = days * 86_400 - 120  # the newest starts two minutes ago
    for i in range(count):
        source, data_type, coin = JOBS[i % len(JOBS)]
        started = now - timedelta(seconds=span * (count - i) / count + 120)
        seconds = 1.0 + (i * 7919) % 60
        status = "failed" if i % 20 == 7 else "partial" if i % 13 == 5 else "success"
        yield {
            "source": source, "data_type": data_type, "coin": coin, "status": status, "trigger": "schedule",
            "worker_id": WORKERS[i % len(WORKERS)], "started_at": started,
            "finished_at": started + timedelta(seconds=seconds), "duration_seconds": seconds,
            "wait_seconds": seconds * 0.15, "http_seconds": None if i < count // 10 else seconds * 0.5,
            "records_fetched": 100, "records_inserted": 90, "requests_made": 2, "params": {"coin": coin},
            "error_class": "RateLimited" if status == "failed" else None,
            "error_message": "HTTP 429 from source" if status == "failed" else None,
            "created_at": started, "updated_at": started,
        }  # fmt: skip


def build_database(path: Path, runs: int, days: int) -> int:
    """Create the database and seed the runs (and three running ones); returns the rows in the run log."""
    url = f"sqlite:///{path}"
    db = DatabaseService(url, settings=load_settings(DATABASE_URL=url))
    db.create_tables()
    now = datetime.now(UTC).replace(microsecond=0)
    rows = list(_runs(runs, days, now))
    for n, (source, data_type, coin) in enumerate(JOBS[:3]):
        started = now - timedelta(seconds=30 * (n + 1))
        rows.append({
            "source": source, "data_type": data_type, "coin": coin, "status": "running",
            "trigger": "schedule", "worker_id": WORKERS[n], "started_at": started, "params": {},
            "created_at": started, "updated_at": started,
        })  # fmt: skip
    with db.session_factory.begin() as session:
        for start in range(0, len(rows), BATCH):
            session.execute(insert(DataIngestionLog), rows[start : start + BATCH])
    db.beat(WORKERS[0], started_at=now, current_job=None)
    count = queries.table_row_counts(db)["data_ingestion_logs"]
    db.dispose()
    return count


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def render_page(database_url: str, days: int) -> float:
    """Seconds of one cold render of the runs page's Timeline tab under AppTest."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = database_url
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    window = "7d" if days >= 7 else "24h"
    at.query_params.update({"view": "timeline", "window": window, "by": "job"})
    at.run()
    st.cache_data.clear()
    st.cache_resource.clear()
    gc.collect()
    started = time.perf_counter()
    at.switch_page("app_pages/runs.py").run()
    elapsed = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"the runs page raised: {at.exception[0].value}")
    if not list(at.get("plotly_chart")):
        raise RuntimeError("the runs page drew no timeline")
    if at.segmented_control(key=timeline.WINDOW_KEY).value != window:
        raise RuntimeError("the runs page did not take the window from the link")
    return elapsed


def explain(database_url: str, hours: int) -> list[str]:
    """The SQLite plan of the timeline query."""
    db = DatabaseService(database_url, settings=load_settings(DATABASE_URL=database_url))
    captured: list[tuple[str, Any]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    queries.run_timeline(db, datetime.now(UTC) - timedelta(hours=hours))
    statement, parameters = captured[-1]
    with db.engine.connect() as conn:
        plan = [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    db.dispose()
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the database here")
    args = parser.parse_args(argv)

    os.chdir(ROOT)  # AppTest reads .streamlit/config.toml from the working directory
    for name in ("SIMULATED_DATA", "DASHBOARD_READ_ONLY", "COINS", "LAUNCHER_STATE_FILE"):
        os.environ.pop(name, None)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="timeline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "timeline.db"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    took, count = timed(lambda: build_database(path, args.runs, args.days))
    print(f"seeded {count:,} runs over {args.days} days in {took:.1f} s ({path.stat().st_size / 1e6:.1f} MB)")

    hours = args.days * 24
    db = DatabaseService(url, settings=load_settings(DATABASE_URL=url))
    results: dict[str, list[float]] = {"query": [], "figure": [], "json": [], "page": []}
    size = shown = 0
    for _ in range(args.repeat):
        now = datetime.now(UTC)
        since = now - timedelta(hours=hours)
        seconds, frame = timed(lambda since=since: queries.run_timeline(db, since))  # type: ignore[misc]
        results["query"].append(seconds)

        def build(frame: Any = frame, now: datetime = now) -> Any:
            figure = charts.run_timeline(frame, now=now, hours=hours, by="job")
            parts = charts.timeline_segments(frame, now=now, since=now - timedelta(hours=hours))
            timeline.split_line(charts.timeline_split(parts))
            return figure

        seconds, figure = timed(build)
        results["figure"].append(seconds)
        seconds, spec = timed(lambda figure=figure: pio.to_json(figure, validate=False))  # type: ignore[misc]
        results["json"].append(seconds)
        size, shown = len(spec), len(frame)
    db.dispose()
    render_page(url, args.days)  # warm-up: imports, plotly templates
    results["page"] = [render_page(url, args.days) for _ in range(args.repeat)]

    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"\n{shown:,} runs on the {args.days}-day timeline; figure JSON {size / 1e6:.1f} MB")
    print(f"median of {args.repeat} (min .. max), seconds")
    for name, values in results.items():
        print(f"  {name:<8} {median[name]:7.3f}  ({min(values):.3f} .. {max(values):.3f})")
    core = median["query"] + median["figure"]
    print(f"  query + figure        {core:7.3f}  target <= {TARGET_SECONDS:.1f}")
    print(f"  query + figure + JSON {core + median['json']:7.3f}")
    print(f"  page render (AppTest) {median['page']:7.3f}  target <= {TARGET_SECONDS:.1f}")

    print("\nEXPLAIN QUERY PLAN of queries.run_timeline")
    plan = explain(url, hours)
    for line in plan:
        print(f"  {line}")
    scans = [line for line in plan if "SCAN data_ingestion_logs" in line]  # a walk, even "USING INDEX"
    if scans:
        print("  full scan of the run log:", scans)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if core <= TARGET_SECONDS and median["page"] <= TARGET_SECONDS and not scans else 1


if __name__ == "__main__":
    sys.exit(main())
