"""A database blip never ends a process: outages during a backfill with reruns queued, on both dialects.

PostgreSQL: a proxy refuses connections and terminates the scheduler's sessions. SQLite: another process
holds the write lock past the busy timeout. The scenario is `benchmarks/harness/outages.py`; the report runs
it with twenty longer outages (`python benchmarks/reliability_report.py --outages 20`).
"""

from __future__ import annotations

import pytest

from benchmarks.harness.outages import outage_simulator, run_scenario
from tests.support.reliability import note

pytestmark = pytest.mark.slow

DEPTH = 1500  # 15 pages a chain
DAYS = 365


@pytest.fixture
def sim():
    with outage_simulator() as simulator:
        yield simulator


def test_outages_mid_backfill_lose_nothing_and_never_end_the_scheduler(database_url, sim, tmp_path):
    report = run_scenario(
        database_url=database_url,
        sim=sim,
        tmp_path=tmp_path,
        durations=[1.0, 4.0, 2.5],
        seed=7,
        depth=DEPTH,
        days=DAYS,
        sim_delay=0.1,
    )
    note(f"database outages: {report.line()}")
    assert report.scheduler_exits == 0, report.line()
    assert report.exit_code == 0, report.line()
    assert report.equal_to_reference, report.line()
    assert report.rows == {"blocks": 3 * DEPTH, "prices": 3 * DAYS}
    assert report.runs_left_running == 0
    assert report.open_requests == 0
    assert report.reruns_served == 3, report.line()
    assert report.outage_runs_completed == report.failed_by_outage, report.line()
    # One warning when an outage starts and one when it ends, not one per attempt: at most one of each
    # per outage (an outage while the scheduler is idle between beats may go unnoticed).
    assert 1 <= report.outage_log_lines <= 3, report.line()
    assert report.back_log_lines == report.outage_log_lines, report.line()
    assert report.tracebacks == 0, report.line()
