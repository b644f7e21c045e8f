"""Replays obey the same rules as requests (issue 10, part 7).

Every replay path (the scheduler, `crypto-pipeline rerun RUN_ID`, the dashboard's "Run here") serves a
claimed request through `pipeline.ingestion.requests`: one process replays a run or slice at a time and the
others are told who holds it; a run still `running` is refused; stored replay parameters are checked and
priced by the gap-fill cost rules against the daily request budget before any request is sent, and a
refusal is recorded on the request; errors are stored redacted whichever path served the request.

Requests sent are counted by the simulator itself, through its /_sim control API.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from benchmarks.harness.processes import ROOT, process_env
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.requests import RequestRefused, serve_here
from pipeline.models import BlockchainBlock, DataIngestionLog, ReplayRequest
from pipeline.ranges import utcnow
from pipeline.runtime.scheduler import Scheduler
from pipeline.services.gapfill import plan_fill
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.simulator.control import SimulatorControl
from pipeline.store.runs import RunSlice
from tests.support.databases import simulated_database

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)? (DEBUG|INFO|WARNING|ERROR) ")
FAKE_KEY = "bcKEY-4f1d9e2a7c"  # recognisable, so that a leak is found wherever it lands


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def control(sim: Simulator) -> Iterator[SimulatorControl]:
    """The simulator's /_sim API, counters zeroed and faults cleared around the test."""
    api = SimulatorControl(sim.base_url)
    api.reset()
    yield api
    api.reset()


@pytest.fixture
def env(sim: Simulator, database_url: str) -> Iterator[tuple[object, DatabaseService]]:
    with simulated_database(database_url, sim) as settings_and_db:
        yield settings_and_db


def sent(control: SimulatorControl) -> int:
    """Requests the simulator served (both APIs)."""
    return sum(control.request_counts().values())


def served(control: SimulatorControl) -> dict[str, int]:
    """Requests the simulator served, per endpoint that served any."""
    return {endpoint: n for endpoint, n in control.request_counts().items() if n}


def recorded_run(
    db: DatabaseService, source: str, data_type: str, params: object, status: str = "failed", **values: object
) -> int:
    """A run as the run log holds it (params may be anything a tampered row holds)."""
    coin = params.get("chain") or params.get("coin_id") if isinstance(params, dict) else None
    run_id = db.start_run(
        RunSlice(source, data_type, coin if isinstance(coin, str) else None, params),  # type: ignore[arg-type]
        trigger="schedule",
        parent_run_id=None,
    )
    if status != "running":
        db.finish_run(
            run_id, status=status, finished_at=utcnow(), error_class="RetriableSourceError", **values
        )
    return run_id


def cli_env(sim: Simulator, database_url: str, **extra: object) -> dict[str, str]:
    return process_env(
        DATABASE_URL=database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        BLOCKCHAIR_RATE_LIMIT_PER_MINUTE=60_000,
        COINGECKO_RATE_LIMIT_PER_MINUTE=60_000,
        **extra,
    )


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, list[str]]:
    """(exit code, stdout, the stderr lines that are not log lines)."""
    out, err = process.communicate(timeout=90)
    message = [
        line
        for line in err.splitlines()
        if line.strip() and not LOG_LINE.match(line) and not line.startswith("database: ")
    ]
    return process.returncode, out, message


def one_line(message: list[str]) -> str:
    assert len(message) == 1, message
    assert "Traceback" not in message[0]
    return message[0]


def children(db: DatabaseService, run_id: int) -> list[int]:
    return [c.id for c in db.get_child_runs(run_id)]


def requests_of(db: DatabaseService, run_id: int) -> list[ReplayRequest]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(ReplayRequest).where(ReplayRequest.run_id == run_id)))


# ---------------------------------------------------------------------------------------------- one at a time


@pytest.mark.slow  # starts CLI processes
def test_three_concurrent_cli_reruns_replay_once(sim, control, env, database_url):
    _settings, db = env
    tip = sim.tip("bitcoin")
    run_id = recorded_run(
        db, "blockchair", "blocks", {"chain": "bitcoin", "start_height": tip - 249, "end_height": tip}
    )
    # Three pages, slowed down, so that the winner is still replaying while the others try.
    control.add_fault(FaultRule("slow", endpoint="blocks", times=None, delay=1.0))
    environment = cli_env(sim, database_url)
    processes = [start_cli(environment, "rerun", str(run_id)) for _ in range(3)]
    outcomes = [finish(p) for p in processes]

    winners = [o for o in outcomes if o[0] == 0]
    losers = [o for o in outcomes if o[0] != 0]
    assert len(winners) == 1, outcomes
    assert "success" in winners[0][1], winners
    assert len(losers) == 2, outcomes
    for _code, out, message in losers:
        line = one_line(message)
        assert re.search(r"request #\d+ \(rerun of run \d+\) is already being served by cli:", line), line
        assert out == ""
    assert len(children(db, run_id)) == 1
    assert [r.status for r in requests_of(db, run_id)] == ["done"]
    assert served(control) == {"blocks": 3}  # one replay's pages, not three


def test_a_slice_is_replayed_by_one_request_at_a_time(env):
    settings, db = env
    params = {"chain": "bitcoin", "start_height": 100, "end_height": 199}
    first, second = (recorded_run(db, "blockchair", "blocks", params) for _ in range(2))
    held = db.request_rerun(first, "scheduler")
    db.claim_request(held.id, "worker-a")
    queued = db.request_rerun(second, "test")
    # The other run covers the same slice: neither the CLI/dashboard claim nor the scheduler takes it.
    with pytest.raises(ValueError, match=rf"is being replayed by request #{held.id} \(worker-a\)"):
        serve_here(db, Replayer(settings, db), second, requested_by="cli", worker_id="cli:1")
    assert db.get_replay_request(queued.id).status == "pending"  # it stays queued
    assert db.claim_next_request("worker-b") is None
    db.finish_replay_request(held.id, status="done", result_run_id=None)
    assert db.claim_next_request("worker-b").id == queued.id


@pytest.mark.slow  # starts a CLI process
def test_rerun_of_a_running_run_is_refused_with_one_line_and_no_request(sim, control, env, database_url):
    _settings, db = env
    run_id = recorded_run(
        db, "blockchair", "blocks", {"chain": "bitcoin", "start_height": 1, "end_height": 50}, "running"
    )
    code, out, message = finish(start_cli(cli_env(sim, database_url), "rerun", str(run_id)))
    assert code != 0
    assert one_line(message) == (
        f"crypto-pipeline: error: run {run_id} is still running; it can be rerun once it has ended"
    )
    assert out == ""
    assert sent(control) == 0
    assert requests_of(db, run_id) == []
    assert db.get_run(run_id).status == "running"


@pytest.mark.slow  # a race against the stale timeout: a replay slowed to several seconds
def test_a_claim_of_the_cli_outlives_the_stale_timeout_while_it_replays(sim, control, database_url):
    # A process without a heartbeat (CLI, dashboard) keeps its claim fresh: a scheduler's recovery must not
    # take it for a dead worker's and hand the slice to another replay.
    with simulated_database(database_url, sim, HEARTBEAT_SECONDS=0.2, HEARTBEAT_STALE_SECONDS=1) as (s, db):
        tip = sim.tip("dogecoin")
        run_id = recorded_run(
            db, "blockchair", "blocks", {"chain": "dogecoin", "start_height": tip - 199, "end_height": tip}
        )
        control.add_fault(FaultRule("slow", endpoint="blocks", times=None, delay=1.0))
        db.beat("scheduler-x", started_at=utcnow(), current_job=None)  # a live scheduler runs recovery
        outcome: list[object] = []
        replay = threading.Thread(
            target=lambda: outcome.append(
                serve_here(db, Replayer(s, db), run_id, requested_by="cli", worker_id="cli:keeper")
            )
        )
        replay.start()
        seen: list[str] = []
        while replay.is_alive():
            db.beat("scheduler-x", started_at=utcnow(), current_job=None)
            db.recover_abandoned()
            seen += [r.status for r in requests_of(db, run_id)]
            time.sleep(0.1)
        replay.join()
        assert outcome, "the replay raised"
        # Queued, then claimed: never released to `pending` again, nor failed as abandoned.
        claimed = seen[seen.index("running") :]
        assert set(claimed) <= {"running", "done"}, seen
        assert [r.status for r in requests_of(db, run_id)] == ["done"]
        assert len(children(db, run_id)) == 1


# ---------------------------------------------------------------------------------------------- budget


@pytest.mark.slow  # starts a CLI process
def test_tampered_heights_are_refused_by_the_budget_before_any_request(sim, control, env, database_url):
    settings, db = env
    tampered = {"chain": "bitcoin", "start_height": 0, "end_height": 900_000}
    by_cli = recorded_run(db, "blockchair", "blocks", tampered)
    code, out, message = finish(start_cli(cli_env(sim, database_url), "rerun", str(by_cli)))
    assert code != 0
    assert out == ""
    line = one_line(message)
    assert line.startswith(f"crypto-pipeline: error: rerun of run {by_cli} refused: ")
    assert "9,001 Blockchair requests" in line
    assert "daily budget of 1,440 (BLOCKCHAIR_DAILY_REQUEST_BUDGET)" in line
    assert sent(control) == 0

    by_scheduler = recorded_run(db, "blockchair", "blocks", tampered)
    db.request_rerun(by_scheduler, "test")
    assert Scheduler(settings, db).serve_reruns() == 1
    assert sent(control) == 0
    for run_id in (by_cli, by_scheduler):
        (request,) = requests_of(db, run_id)
        assert request.status == "failed"
        assert "exceeds the daily budget" in request.error_message
        assert children(db, run_id) == []  # refused before a run started


def test_tampered_dates_are_clamped_to_the_plan_then_checked_against_the_budget(sim, control, database_url):
    tampered = {"coin_id": "bitcoin", "start": "1990-01-01", "end": "2030-12-31"}
    # The public plan serves the last 365 days: the range shrinks to them, one request.
    with simulated_database(database_url, sim) as (settings, db):
        run_id = recorded_run(db, "coingecko", "prices", tampered)
        request, result = serve_here(db, Replayer(settings, db), run_id, requested_by="test", worker_id="t")
        assert (request.status, result.status.value) == ("done", "success")
        assert result.params["unavailable_before"] == str(utcnow().date() - timedelta(days=364))
        assert served(control) == {"market_chart_range": 1}
    # A plan serving every day since the coin's listing: 13 yearly windows, over a budget of 5.
    control.reset()
    with simulated_database(
        database_url, sim, COINGECKO_HISTORY_DAYS=100_000, COINGECKO_DAILY_REQUEST_BUDGET=5
    ) as (settings, db):
        run_id = recorded_run(db, "coingecko", "prices", tampered)
        with pytest.raises(RequestRefused, match=r"clamped to the plan's 2013-04-28\.\..*daily budget of 5"):
            serve_here(db, Replayer(settings, db), run_id, requested_by="test", worker_id="t")
        assert "daily budget of 5" in requests_of(db, run_id)[0].error_message
        assert sent(control) == 0


def test_the_budget_counts_the_requests_of_the_last_24_hours(sim, control, database_url):
    with simulated_database(database_url, sim, BLOCKCHAIR_DAILY_REQUEST_BUDGET=10) as (settings, db):
        tip = sim.tip("bitcoin")
        spent = recorded_run(db, "blockchair", "blocks", {"chain": "bitcoin"}, "success", requests_made=8)
        run_id = recorded_run(
            db, "blockchair", "blocks", {"chain": "bitcoin", "start_height": tip - 249, "end_height": tip}
        )
        replayer = Replayer(settings, db)
        with pytest.raises(RequestRefused, match="3 Blockchair requests; with 8 sent in the last 24 h"):
            serve_here(db, replayer, run_id, requested_by="test", worker_id="t")
        assert sent(control) == 0
        with db.transaction() as conn:  # yesterday's requests are free again
            conn.execute(
                update(DataIngestionLog)
                .where(DataIngestionLog.id == spent)
                .values(started_at=utcnow() - timedelta(hours=25))
            )
        request, result = serve_here(db, replayer, run_id, requested_by="test", worker_id="t")
        assert (request.status, result.requests_made) == ("done", 3)
        assert served(control) == {"blocks": 3}


def test_a_planned_slice_costs_what_the_plan_says(sim, control, env):
    settings, db = env
    blockchair = BlockchairIngestor(settings=settings, db=db)
    assert blockchair.ingest_blocks(blockchair.coin("dogecoin")).status.value == "success"  # 1000 blocks
    top = db.max_block_height("DOGE")
    with db.transaction() as conn:
        conn.execute(
            BlockchainBlock.__table__.delete().where(BlockchainBlock.block_id.between(top - 700, top - 450))
        )
    (planned,) = [
        s for s in plan_fill(db, settings, [blockchair.coin("dogecoin")]).slices if s.data_type == "blocks"
    ]
    assert Replayer(settings, db).admit(planned.source, planned.data_type, planned.params).requests == 3
    assert planned.requests == 3
    control.reset()
    db.request_backfill(planned.as_request(), "test")
    Scheduler(settings, db).serve_reruns(kinds=("backfill",))
    assert served(control) == {"blocks": 3}


# ---------------------------------------------------------------------------------------------- parameters

INVALID = {
    "negative height": ("blockchair", "blocks", {"chain": "bitcoin", "start_height": -5, "end_height": 3}),
    "text height": ("blockchair", "blocks", {"chain": "bitcoin", "start_height": "10", "end_height": 20}),
    "bool height": (
        "blockchair",
        "transactions",
        {"chain": "bitcoin", "start_height": True, "end_height": 2},
    ),
    "reversed heights": ("blockchair", "blocks", {"chain": "bitcoin", "start_height": 9, "end_height": 3}),
    "unknown chain": ("blockchair", "blocks", {"chain": "monero", "start_height": 1, "end_height": 2}),
    "no chain": ("blockchair", "blocks", {"start_height": 1, "end_height": 2}),
    "addresses not a list": ("blockchair", "addresses", {"chain": "bitcoin", "addresses": "1abc"}),
    "word for a date": (
        "coingecko",
        "prices",
        {"coin_id": "bitcoin", "start": "yesterday", "end": "2024-01-02"},
    ),
    "reversed dates": (
        "coingecko",
        "prices",
        {"coin_id": "bitcoin", "start": "2024-02-01", "end": "2024-01-01"},
    ),
    "unknown coin": ("coingecko", "price_by_date", {"coin_id": "notacoin", "date": "2024-01-01"}),
    "unknown data type": ("blockchair", "mempool", {"chain": "bitcoin"}),
}
REASONS = {
    "negative height": "start_height must be a whole number from 0 to",
    "text height": "start_height must be a whole number from 0 to",
    "bool height": "start_height must be a whole number from 0 to",
    "reversed heights": "start_height 9 is above end_height 3",
    "unknown chain": "unknown coin 'monero'",
    "no chain": "chain must name a coin, not None",
    "addresses not a list": "addresses must be a non-empty list",
    "word for a date": "start must be a date (YYYY-MM-DD), not 'yesterday'",
    "reversed dates": "start 2024-02-01 is after end 2024-01-01",
    "unknown coin": "unknown coin 'notacoin'",
    "unknown data type": "unknown slice 'blockchair'/'mempool'",
}


@pytest.mark.slow  # starts a CLI process
def test_invalid_parameters_are_refused_with_one_clear_line_before_any_request(
    sim, control, env, database_url
):
    settings, db = env
    runs = {name: recorded_run(db, *case) for name, case in INVALID.items() if name != "params not an object"}
    for run_id in runs.values():
        db.request_rerun(run_id, "test")
    # Rows tampered with after they were queued: a run whose params are a list, a backfill's params a word.
    broken_run = recorded_run(db, "coingecko", "prices", {"coin_id": "bitcoin", "start": "2024-01-01"})
    db.request_rerun(broken_run, "test")
    backfill = db.request_backfill(
        {"source": "coingecko", "data_type": "prices", "params": {"coin_id": "bitcoin"}}, "test"
    )
    with db.transaction() as conn:
        conn.execute(update(DataIngestionLog).where(DataIngestionLog.id == broken_run).values(params=["x"]))
        conn.execute(
            update(ReplayRequest)
            .where(ReplayRequest.id == backfill.id)
            .values(slice_params={"source": "coingecko", "data_type": "prices", "params": "bitcoin"})
        )

    scheduler = Scheduler(settings, db)
    assert scheduler.serve_reruns(limit=100) == len(runs) + 1
    assert scheduler.serve_reruns(kinds=("backfill",)) == 1
    code, out, message = finish(start_cli(cli_env(sim, database_url), "rerun", str(broken_run)))
    assert sent(control) == 0

    for name, run_id in runs.items():
        (request,) = requests_of(db, run_id)
        assert request.status == "failed", name
        assert request.error_message.startswith(f"rerun of run {run_id} refused: "), request.error_message
        assert REASONS[name] in request.error_message, (name, request.error_message)
        assert children(db, run_id) == [], name
    unreadable = (
        f"run {broken_run} cannot be replayed: its log row is invalid (params: Input should be a valid"
    )
    assert unreadable in requests_of(db, broken_run)[0].error_message
    assert (code, out) == (2, "")
    assert one_line(message).startswith(f"crypto-pipeline: error: {unreadable}")
    assert db.get_replay_request(backfill.id).error_message == (
        f"backfill request #{backfill.id} refused: replay parameters must be an object, not str"
    )


# ---------------------------------------------------------------------------------------------- one path


@pytest.fixture
def dashboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The dashboard app configured from a clean environment (it reads settings from it)."""
    import streamlit.config

    from pipeline.config import Settings
    from tests.dashboard.helpers import reset_app_state

    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    # Bound to loopback, as `crypto-pipeline up` binds it: write actions (Run here) are offered.
    bound = streamlit.config.get_option("server.address")
    streamlit.config.set_option("server.address", "127.0.0.1")
    reset_app_state()
    yield
    reset_app_state()
    streamlit.config.set_option("server.address", bound)


def test_dashboard_run_here_and_the_scheduler_store_the_same_redacted_error(
    sim, control, database_url, dashboard, monkeypatch
):
    from tests.dashboard.helpers import open_page, reset_app_state

    # A tampered run names the key as its chain: the refusal quotes the name, the key must not survive.
    tampered = {"chain": FAKE_KEY, "start_height": 1, "end_height": 2}
    with simulated_database(database_url, sim, BLOCKCHAIR_API_KEY=FAKE_KEY) as (settings, db):
        served_by_scheduler = recorded_run(db, "blockchair", "blocks", tampered)
        run_here = recorded_run(db, "blockchair", "blocks", tampered)
        db.request_rerun(served_by_scheduler, "test")
        Scheduler(settings, db).serve_reruns()

        for name, value in {
            "DATABASE_URL": database_url,
            "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
            "COINGECKO_BASE_URL": sim.coingecko_url,
            "BLOCKCHAIR_API_KEY": FAKE_KEY,
        }.items():
            monkeypatch.setenv(name, value)
        reset_app_state()
        at = open_page("runs", query={"run": str(run_here)})
        (click,) = [b for b in at.button if b.label.startswith("Run here: run #")]
        click.click().run()
        assert not at.exception, [e.value for e in at.exception]

        errors = {}
        for run_id in (served_by_scheduler, run_here):
            (request,) = requests_of(db, run_id)
            assert request.status == "failed"
            errors[run_id] = request.error_message
        assert FAKE_KEY not in "".join(errors.values())
        expected = "refused: unknown coin '***'; known coins:"
        assert expected in errors[served_by_scheduler]
        assert errors[run_here] == errors[served_by_scheduler].replace(
            str(served_by_scheduler), str(run_here)
        )
        shown = [str(e.value) for e in at.error]
        assert any("Run here of run" in e and "unknown coin" in e for e in shown), shown
        assert not any(FAKE_KEY in e for e in shown), shown
        assert sent(control) == 0


def test_dashboard_run_here_refuses_a_running_run_in_one_line(sim, database_url, dashboard, monkeypatch):
    from dashboard import data

    with simulated_database(database_url, sim) as (_settings, db):
        run_id = recorded_run(
            db,
            "coingecko",
            "prices",
            {"coin_id": "bitcoin", "start": "2024-01-01", "end": "2024-01-02"},
            "running",
        )
        monkeypatch.setenv("DATABASE_URL", database_url)
        with pytest.raises(
            ValueError, match=r"^run \d+ is still running; it can be rerun once it has ended$"
        ):
            data.run_here(run_id)
        with db.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(ReplayRequest)) == 0
