"""The dashboard in a real browser: `streamlit run` + Playwright + Debian chromium, fed by a live scheduler.

The stack: the API simulator, the scheduler (`python -m pipeline.runtime.cli run`) ingesting from it into a
SQLite file seeded with prices, one failed CoinGecko run and two incidents (an open one with its alert
messages, a resolved one), and the dashboard on a free loopback port. The test opens every page, checks that
its charts rendered, reruns the failed run from the runs page and watches its request turn to done, and opens
an incident from its alert link and acknowledges it. Screenshots go to test-artifacts/screenshots/
(git-ignored); the Incidents page's also to /tmp/incidents.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.harness.processes import free_port
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.models import DataIngestionLog
from tests.dashboard.helpers import ROOT
from tests.dashboard.seed import Incidents, seed_failed_price_run, seed_findings, seed_incidents, seed_prices
from tests.support.browser import SCREENSHOTS, chromium_page, needs_chromium
from tests.support.settings import make_settings

PAGES = {
    "overview": "",
    "incidents": "incidents",
    "runs": "runs",
    "coverage": "coverage",
    "prices": "prices",
    "blocks": "blocks",
    "database": "database",
}

pytestmark = [pytest.mark.slow, needs_chromium]


def wait_for(condition: Callable[[], object], timeout: float, what: str, procs: list) -> object:
    """Poll until `condition()` is truthy; fail early if one of the processes died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc, log in procs:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - not ready yet
            value = None
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
        return response.status == 200


@dataclass
class Stack:
    url: str
    db: DatabaseService
    failed_run: int
    incidents: Incidents


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser")
    database_url = f"sqlite:///{tmp}/dashboard.db"
    db = DatabaseService(settings=make_settings(database_url))
    db.create_tables()
    today = datetime.now(UTC).date()
    seed_prices(db, today)
    failed_run = seed_failed_price_run(db, today)
    seed_findings(db, today, failed_run)
    incidents = seed_incidents(db, coin="litecoin")  # a unit the scheduler does not run: it stays open

    sim_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env |= {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "COINGECKO_BASE_URL": f"http://127.0.0.1:{sim_port}/api/v3",
        "HEARTBEAT_SECONDS": "1",
        "BLOCKS_INITIAL_DEPTH": "50",
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": "6000",
        "COINGECKO_RATE_LIMIT_PER_MINUTE": "6000",
        "SIMULATED_DATA": "true",
        "COINS": "bitcoin,ethereum,dogecoin",
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(name: str, args: list[str], cwd: Path) -> None:
        log = tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append((name, proc, log))

    try:
        start("simulator", [sys.executable, "-m", "pipeline.simulator", "--port", str(sim_port)], tmp)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{sim_port}/api/v3/ping"), 30, "the simulator", procs)
        start("scheduler", [sys.executable, "-m", "pipeline.runtime.cli", "run"], tmp)
        wait_for(db.scheduler_alive, 60, "a scheduler heartbeat", procs)
        wait_for(lambda: all(db.max_block_height(s) for s in ("BTC", "ETH", "DOGE")), 120, "blocks", procs)
        st_port = free_port()
        start(
            "dashboard",
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(st_port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            ROOT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{st_port}"
        wait_for(lambda: http_ok(f"{url}/_stcore/health"), 60, "the dashboard", procs)
        yield Stack(url=url, db=db, failed_run=failed_run, incidents=incidents)
    finally:
        for _name, proc, _log in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        db.dispose()


@pytest.fixture(scope="module")
def browser_page(stack: Stack) -> Iterator:
    with chromium_page(height=2200) as page:
        yield page


def open_page(page, stack: Stack, path: str) -> None:  # noqa: ANN001
    page.goto(f"{stack.url}/{path}")
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)


def screenshot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1500)  # let plotly finish drawing
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.parametrize("name", ["overview", "coverage", "prices", "blocks", "database"])
def test_every_page_renders_its_charts(stack, browser_page, name):
    from playwright.sync_api import expect

    page = browser_page
    open_page(page, stack, PAGES[name])
    charts = page.locator('[data-testid="stPlotlyChart"]')
    expect(charts.first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Simulated data.").first).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    if name == "overview":
        # The Overview leads with the open incidents (the seeded one, and what the scheduler's own rules
        # find in the seeded failures and findings) and links to the resolved ones.
        expect(page.get_by_role("heading", name=re.compile(r"\d+ open incidents?"))).to_be_visible()
        expect(page.get_by_text("blockchair blocks litecoin")).to_be_attached()  # a canvas grid cell
        expect(
            page.get_by_role("link", name=re.compile(r"\d+ incidents? resolved in the last 24 h"))
        ).to_be_visible()
        expect(page.get_by_text("Workers up")).to_be_visible()
        # The live panel is a run_every fragment: its clock moves without a page reload.
        stamp = page.get_by_text("Updated ").first
        before = stamp.inner_text()
        expect(stamp).not_to_have_text(before, timeout=30_000)
    if name == "coverage":
        expect(page.get_by_text("Price coverage")).to_be_visible()
        expect(page.get_by_text("Fill gaps").first).to_be_visible()  # the button only while gaps remain
    screenshot(page, name)
    print(f"screenshot: {SCREENSHOTS / (name + '.png')}")


def test_rerun_of_a_failed_run_is_served_by_the_scheduler(stack, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    open_page(page, stack, "runs?status=failed&source=coingecko&coin=bitcoin")
    grid = page.locator('[data-testid="stDataFrame"]').first
    expect(grid).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's selection checkbox (canvas grid)
    rerun = page.get_by_role("button", name=f"Rerun run #{stack.failed_run}")
    expect(rerun.first).to_be_visible(timeout=30_000)
    screenshot(page, "runs-selected")
    print("rerun buttons:", rerun.count(), page.locator('[data-testid="stButton"] button').all_inner_texts())
    rerun.first.click()
    expect(page.get_by_text("Rerun request #")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(": done")).to_be_visible(timeout=120_000)
    request = stack.db.latest_request_for(stack.failed_run)
    assert request is not None
    assert request.status == "done"
    assert stack.db.get_run(request.result_run_id).parent_run_id == stack.failed_run
    screenshot(page, "runs")
    print(f"screenshots in {SCREENSHOTS}")


def seed_an_hour_of_runs(db: DatabaseService) -> None:
    """Runs of a second worker over the last hour that take seconds to minutes, as units against the real
    APIs do (the simulator answers in milliseconds): the timeline's bars and their parts are then wide
    enough to be seen, beside the live scheduler's."""
    now = datetime.now(UTC)
    jobs = [("blockchair", "blocks", "bitcoin"), ("blockchair", "transactions", "ethereum"),
            ("coingecko", "prices", "dogecoin")]  # fmt: skip
    with db.session_factory.begin() as session:
        for i in range(18):
            source, data_type, coin = jobs[i % 3]
            started = now - timedelta(minutes=58 - 3 * i)
            seconds = 40.0 + 25 * (i % 4)
            session.add(
                DataIngestionLog(
                    source=source, data_type=data_type, coin=coin, trigger="schedule", params={},
                    status="partial" if i % 7 == 3 else "success", worker_id="scheduler:batch-host:4242",
                    started_at=started, finished_at=started + timedelta(seconds=seconds),
                    duration_seconds=seconds, wait_seconds=seconds * 0.3 if source == "coingecko" else 2.0,
                    http_seconds=None if i < 2 else seconds * 0.45,
                )
            )  # fmt: skip


def test_runs_timeline_shows_the_units_and_a_click_opens_one(stack, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    seed_an_hour_of_runs(stack.db)
    open_page(page, stack, "runs?view=timeline&window=1h&by=job")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    expect(chart).to_be_visible(timeout=60_000)
    expect(page.get_by_text("click a bar to open the run")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Time of the [\d,]+ finished runs? in this window"))).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "runs-timeline")
    # Plotly answers clicks on its drag layer where a bar is (after a hover there): the widest success bar.
    bars = chart.locator(".barlayer .trace.bars").first.locator(".point path")
    box = max(
        (b for b in (bars.nth(i).bounding_box() for i in range(bars.count())) if b), key=lambda b: b["width"]
    )
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    expect(page.locator(".hoverlayer .hovertext").first).to_be_visible(timeout=10_000)
    expect(page.locator(".hoverlayer")).to_contain_text("click to open the run")
    screenshot(page, "runs-timeline-hover")
    page.mouse.click(x, y)
    expect(page.get_by_role("heading", name=re.compile(r"Run #\d+"))).to_be_visible(timeout=30_000)
    assert re.search(r"[?&]run=\d+", page.url), page.url
    screenshot(page, "runs-timeline-clicked")
    print(f"screenshots: {SCREENSHOTS}/runs-timeline.png, runs-timeline-hover.png, runs-timeline-clicked.png")


def test_simulator_page_lists_the_simulator_s_faults_and_requests(stack, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    open_page(page, stack, "simulator")
    expect(page.get_by_text("Inject a fault")).to_be_visible(timeout=30_000)
    command = "crypto-pipeline simulate fault add --endpoint blocks --kind 503"
    expect(page.get_by_text(command)).to_be_visible()
    expect(page.get_by_text("Requests served")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "simulator")


def test_an_alert_link_opens_the_incident_and_it_can_be_acknowledged(stack, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    incident = stack.incidents.open_id
    open_page(page, stack, f"incidents?incident={incident}")  # the address an alert carries
    expect(page.get_by_text(f"Incident #{incident} · unit · blockchair blocks litecoin")).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Alert messages (2)")).to_be_visible()
    expect(
        page.get_by_role("link", name=f"First failed run #{stack.incidents.failed_runs[0]}")
    ).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1500)
    page.screenshot(path="/tmp/incidents.png", full_page=True)
    screenshot(page, "incidents")

    page.get_by_label("Your name").fill("alice")
    page.get_by_label("Note").fill("node restarted, watching it")
    page.get_by_label("Note").press("Enter")
    page.get_by_role("button", name=f"Acknowledge incident #{incident}").click()
    expect(page.get_by_text(f"Incident #{incident} acknowledged.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("by alice at")).to_be_visible()
    stored = stack.db.get_incident(incident)
    assert stored is not None
    assert (stored.acknowledged_by, stored.ack_note) == ("alice", "node restarted, watching it")
    page.get_by_role("button", name=f"Silence incident #{incident}").click()
    expect(page.get_by_text(f"Alerts of incident #{incident} silenced for 4 h.")).to_be_visible(
        timeout=30_000
    )
    assert stack.db.get_incident(incident).silenced_by == "alice"
    page.wait_for_timeout(1000)
    page.screenshot(path="/tmp/incidents-acknowledged.png", full_page=True)
    print("screenshots: /tmp/incidents.png /tmp/incidents-acknowledged.png")
