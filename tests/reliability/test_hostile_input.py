"""Hostile and bad input: CLI arguments, out-of-plan price ranges, and the rerun action.

(Property-based parser tests live in tests/sources/test_parser_properties.py.)

Bad CLI input must end with one clear line on stderr (log lines aside), a non-zero exit code and no
traceback, and must spend no request. A price range the plan cannot serve is clamped before any request.
The rerun action replays only recorded slices, refuses unknown and running runs, and a flood of clicks
(sequential or concurrent) queues one request.
"""

from __future__ import annotations

import inspect
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from benchmarks.harness.processes import run_cli
from pipeline.database import DatabaseService
from pipeline.models import ReplayRequest
from pipeline.ranges import utcnow
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.store.runs import RunSlice
from tests.support.databases import migrated
from tests.support.reliability import KnownBugError
from tests.support.settings import make_settings

TODAY = datetime.now(UTC).date()
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")
HUGE = "99999999999999999999"
# name -> (arguments, known bug or None)
BAD_INPUT: dict[str, tuple[list[str], str | None]] = {
    "malformed date": (["ingest", "coingecko", "--start", "2024-13-01"], None),
    "impossible date": (["ingest", "coingecko", "--start", "2024-02-30"], None),
    "word for a date": (
        ["backfill", "prices", "--coins", "bitcoin", "--start", "yesterday", "--end", "today"],
        None,
    ),
    "reversed range (ingest)": (
        ["ingest", "coingecko", "--start", "2024-05-10", "--end", "2024-05-01"],
        None,
    ),
    "reversed range (backfill)": (
        ["backfill", "prices", "--coins", "bitcoin", "--start", "2024-05-10", "--end", "2024-05-01", "--yes"],
        None,
    ),
    "unknown coin": (["ingest", "coingecko", "--coins", "notacoin"], None),
    "unknown coin in a list": (
        [
            "backfill",
            "prices",
            "--coins",
            "bitcoin,dogecoinx",
            "--start",
            "2024-05-01",
            "--end",
            "2024-05-02",
        ],
        None,
    ),
    "sql in a coin name": (["ingest", "coingecko", "--coins", "bitcoin' OR '1'='1"], None),
    "unknown blockchair coin": (
        ["ingest", "blockchair", "--coins", "monero", "--data-types", "blocks"],
        None,
    ),
    "unknown data type": (["ingest", "blockchair", "--data-types", "blocks,mempool"], None),
    "unknown source": (["ingest", "kraken"], None),
    "unknown command": (["frobnicate"], None),
    "unknown run status": (["runs", "--status", "exploded"], None),
    "unknown run id": (["rerun", "424242"], None),
    "unknown run id (queue)": (["rerun", "--queue", "424242"], None),
    "zero run id": (["rerun", "0"], None),
    "negative run id": (["rerun", "-5"], None),
    "word for a run id": (["rerun", "abc"], None),
    "sql for a run id": (["rerun", "1; DROP TABLE data_ingestion_logs"], None),
    "huge run id": (["rerun", HUGE], None),
    "huge run id (queue)": (["rerun", "--queue", HUGE], None),
    "huge limit": (["runs", "--limit", HUGE], None),
    "end before year 1 plus the backfill": (
        ["ingest", "coingecko", "--coins", "bitcoin", "--end", "0001-01-05"],
        None,
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


def _env(sim: Simulator, url: str, **extra: object) -> dict[str, object]:
    return {
        "DATABASE_URL": url,
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 60_000,
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 60_000,
        **extra,
    }


@pytest.fixture(scope="module")
def bad_input_outcomes(sim, tmp_path_factory):
    """Every bad-input case run once, three at a time, each on its own database; then the request count."""
    sim.reset_counts()
    base = tmp_path_factory.mktemp("cli")

    def run(item: tuple[int, str]) -> tuple[str, object]:
        i, name = item
        return name, run_cli(BAD_INPUT[name][0], **_env(sim, f"sqlite:///{base}/case{i}.db"))

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = dict(pool.map(run, enumerate(BAD_INPUT)))
    return outcomes, sum(sim.request_counts().values())


def _cases() -> list:
    params = []
    for name, (_args, bug) in BAD_INPUT.items():
        marks = [pytest.mark.xfail(reason=bug, strict=True, raises=KnownBugError)] if bug else []
        params.append(pytest.param(name, marks=marks, id=name.replace(" ", "_")))
    return params


@pytest.mark.slow  # one CLI process per case
@pytest.mark.parametrize("case", _cases())
def test_bad_cli_input_is_one_clear_line(bad_input_outcomes, case):
    outcomes, _requests = bad_input_outcomes
    done = outcomes[case]
    output = done.stdout + done.stderr
    bug = BAD_INPUT[case][1]
    if bug and "Traceback" in output and "OverflowError" in output:
        raise KnownBugError(f"{bug}\n{done.stderr.strip().splitlines()[-1]}")
    assert "Traceback" not in output, output
    assert done.returncode != 0, output
    assert done.returncode == 2, (done.returncode, output)
    message = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not LOG_LINE.match(line) and not line.startswith("database: ")
    ]
    assert len(message) == 1, done.stderr
    assert message[0].startswith("crypto-pipeline"), message
    assert "error" in message[0], message
    assert len(message[0]) < 300, message
    assert done.stdout.strip() == "", done.stdout


@pytest.mark.slow
def test_bad_cli_input_spends_no_request(bad_input_outcomes):
    _outcomes, requests = bad_input_outcomes
    assert requests == 0


# ---------------------------------------------------------------------------------------------- plan limits


@pytest.mark.slow  # a CLI process
@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "coingecko", "--coins", "bitcoin", "--start", str(TODAY - timedelta(days=800)),
         "--end", str(TODAY - timedelta(days=500))],
        ["backfill", "prices", "--coins", "bitcoin,ethereum", "--start", str(TODAY - timedelta(days=900)),
         "--end", str(TODAY - timedelta(days=366)), "--yes"],
    ],
    ids=["ingest", "backfill"],
)  # fmt: skip
def test_a_range_beyond_the_public_plan_spends_no_request(sim, tmp_path, args):
    sim.reset_counts()
    done = run_cli(args, **_env(sim, f"sqlite:///{tmp_path}/plan.db"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert sum(sim.request_counts().values()) == 0, sim.request_counts()
    assert "success" in done.stdout  # recorded as a run with nothing to fetch, not as a failure


@pytest.mark.slow  # a CLI process
def test_a_huge_range_is_clamped_to_what_the_plan_serves(sim, tmp_path):
    sim.reset_counts()
    url = f"sqlite:///{tmp_path}/huge.db"
    args = [
        "backfill",
        "prices",
        "--coins",
        "bitcoin",
        "--start",
        "2009-01-03",  # the earliest date accepted (earlier ones are refused with one line)
        "--end",
        "9999-12-31",
        "--yes",
    ]
    done = run_cli(args, **_env(sim, url))
    today = datetime.now(UTC).date()  # now, not at import: a suite that runs past midnight UTC moves on
    assert done.returncode == 0, done.stdout + done.stderr
    assert sim.request_counts()["market_chart_range"] == 1  # one window: the plan's last 365 days
    db = DatabaseService(settings=make_settings(url))
    prices = db.get_market_prices(coin_id="bitcoin", limit=None)
    assert len(prices) == 365
    assert min(p.price_date for p in prices) == today - timedelta(days=364)
    run = db.get_ingestion_logs(limit=1)[0]
    assert (run.status.value, run.params["unavailable_before"]) == (
        "success",
        str(today - timedelta(days=364)),
    )
    # The backfill is audited under the OS user, beside the run it made.
    [entry] = db.audit_entries(action="backfill")
    assert (entry.via, entry.run_id, entry.target, entry.outcome) == ("cli", run.id, "prices:bitcoin", "ok")
    assert db.audit_for_runs([run.id])[run.id] == [entry]
    db.dispose()


# ---------------------------------------------------------------------------------------------- reruns


def _ended_run(db: DatabaseService, status: str = "failed") -> int:
    run_id = db.start_run(
        RunSlice(
            "coingecko",
            "prices",
            "bitcoin",
            {"coin_id": "bitcoin", "start": "2024-01-01", "end": "2024-01-02"},
        ),
        trigger="schedule",
        parent_run_id=None,
    )
    if status != "running":
        db.finish_run(run_id, status=status, finished_at=utcnow())
    return run_id


@pytest.fixture
def rerun_db(database_url):
    db = migrated(make_settings(database_url))
    yield db
    db.dispose()


def _open_requests(db: DatabaseService, run_id: int) -> int:
    stmt = select(func.count()).where(
        ReplayRequest.run_id == run_id, ReplayRequest.status.in_(("pending", "running"))
    )
    with db.engine.connect() as conn:
        return conn.scalar(stmt)


def test_rerun_takes_a_run_id_only():
    params = inspect.signature(DatabaseService.request_rerun).parameters
    assert list(params) == ["self", "run_id", "requested_by", "kind", "actor", "action"]
    for keyword in ("kind", "actor", "action"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY


def test_rerun_of_an_unknown_run_is_refused(rerun_db):
    for run_id in (424242, -1, 0):
        with pytest.raises(LookupError):
            rerun_db.request_rerun(run_id, "dashboard")
    with rerun_db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ReplayRequest)) == 0


def test_rerun_of_a_running_run_is_refused(rerun_db):
    run_id = _ended_run(rerun_db, status="running")
    with pytest.raises(ValueError, match="still running"):
        rerun_db.request_rerun(run_id, "dashboard")
    assert _open_requests(rerun_db, run_id) == 0


def test_rerun_replays_the_recorded_slice(rerun_db):
    run_id = _ended_run(rerun_db)
    request = rerun_db.request_rerun(run_id, "dashboard")
    assert (request.run_id, request.slice_params) == (run_id, None)  # the slice comes from the run log


def test_a_flood_of_clicks_queues_one_request(rerun_db):
    run_id = _ended_run(rerun_db)
    ids = {rerun_db.request_rerun(run_id, f"click {i}").id for i in range(100)}
    assert len(ids) == 1
    assert _open_requests(rerun_db, run_id) == 1


def test_concurrent_clicks_queue_one_request(rerun_db):
    run_id = _ended_run(rerun_db)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def click(i: int) -> int:
        if i < 10:
            barrier.wait()  # the first ten start at the same moment
        try:
            return rerun_db.request_rerun(run_id, f"thread click {i}").id
        except BaseException as exc:
            errors.append(exc)
            raise

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = set(pool.map(click, range(100)))
    assert not errors, errors
    assert len(ids) == 1
    assert _open_requests(rerun_db, run_id) == 1
    with rerun_db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(ReplayRequest.run_id == run_id)) == 1
