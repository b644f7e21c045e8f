"""Secrets: recognisable fake API keys never appear in a log line, a stored value, an exception or a page.

The simulator expects the keys (Blockchair in the `key` query parameter, CoinGecko demo in a header), so
every request carries them; faults that produce URL-bearing errors (connection resets, timeouts, 401/402,
malformed JSON, HTML error pages, 5xx, 429) are injected on every unit, and a second pair of wrong keys is
rejected by the simulator itself. Redaction must be exercised, not merely unneeded: the logs must show
the masked form of the key-carrying URLs.
"""

from __future__ import annotations

import json
import logging
import pickle
import signal
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.harness.processes import ROOT, run_cli, scheduler_settings, start_scheduler, stop, wait_for
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import SourceError
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.sources.blockchair import blockchair_client
from pipeline.sources.coingecko import coingecko_client
from tests.support.databases import migrated
from tests.support.reliability import dump_text, note
from tests.support.settings import simulator_settings

BC_KEY = "bc-FAKE-KEY-7f3a9"
CG_KEY = "cg-FAKE-KEY-2b8d1"
WRONG_BC_KEY = "bc-FAKE-WRONG-5e6f7"
WRONG_CG_KEY = "cg-FAKE-WRONG-9c0d4"
SECRETS = (BC_KEY, CG_KEY, WRONG_BC_KEY, WRONG_CG_KEY)
WATCH = {
    "bitcoin": ["1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"],
    "ethereum": ["0x00000000219ab540356cbb839cbe05303d7705fa"],
}
FAULTS = ("reset", "401", "402", "malformed_json", "html", "500", "429", "timeout")
UNITS = ("blocks", "transactions", "addresses", "prices", "price_by_date")
ENDPOINTS = {
    "blocks": "blocks",
    "transactions": "transactions",
    "addresses": "blockchair",  # bitcoin's multi-address and ethereum's single-address dashboards
    "prices": "market_chart_range",
    "price_by_date": "history",
}


def pipeline_log(caplog: pytest.LogCaptureFixture) -> str:
    """Captured log lines of the pipeline: the in-process simulator's access log is the API server's side
    (like Blockchair's own logs, it receives the key by design), so it is left out."""
    records = [r for r in caplog.records if not r.name.startswith("pipeline.simulator")]
    return "\n".join(caplog.handler.format(r) for r in records)


def leaks(text: str) -> list[str]:
    """The secrets (or their first 12 characters, in case of truncation) found in a text."""
    return [s for s in SECRETS if s in text or s[:12] in text]


@pytest.fixture(scope="module")
def sim():
    config = SimulatorConfig(
        tip_growth=False, blockchair_key=BC_KEY, coingecko_key=CG_KEY, coingecko_plan="demo"
    )
    with Simulator(config) as simulator:
        yield simulator


def keyed_settings(url: str, sim: Simulator, bc_key: str = BC_KEY, cg_key: str = CG_KEY) -> Settings:
    return simulator_settings(
        url,
        sim,
        BLOCKCHAIR_API_KEY=bc_key,
        COINGECKO_API_KEY=cg_key,
        COINGECKO_API_PLAN="demo",
        BLOCKS_INITIAL_DEPTH=150,
        WATCH_ADDRESSES=WATCH,
        HTTP_TIMEOUT_SECONDS=1,
        HTTP_MAX_ATTEMPTS=2,
        HTTP_MAX_TOTAL_WAIT_SECONDS=5,
    )


def run_unit(blockchair: BlockchairIngestor, coingecko: CoinGeckoIngestor, unit: str) -> list:
    today = datetime.now(UTC).date()
    if unit == "prices":
        return [coingecko.ingest_price_range(coingecko.coin("bitcoin"), today - timedelta(days=20), today)]
    if unit == "price_by_date":
        return [coingecko.ingest_price_for_date(coingecko.coin("ethereum"), today - timedelta(days=2))]
    chains = ["bitcoin", "ethereum"] if unit == "addresses" else ["bitcoin"]
    results = blockchair.run_daily_ingestion(chains, ["blocks", unit] if unit != "blocks" else ["blocks"])
    return [r for per in results.values() for r in per.values()]


def exercise(sim: Simulator, url: str) -> tuple[DatabaseService, list]:
    """Every unit under every URL-bearing fault, then with wrong keys; returns the database and the runs."""
    settings = keyed_settings(url, sim)
    db = migrated(settings)
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    results = []
    for fault in FAULTS:
        for unit in UNITS:
            if fault == "timeout" and unit not in ("blocks", "prices"):
                continue  # two timed-out units are enough, and each costs seconds
            sim.clear_faults()
            sim.add_fault(FaultRule(fault, endpoint=ENDPOINTS[unit], times=None, retry_after=1, delay=3))
            results += run_unit(blockchair, coingecko, unit)
    sim.clear_faults()
    failed = [r for r in results if r.status.value == "failed"]
    replayer = Replayer(settings, db, blockchair=blockchair, coingecko=coingecko)
    results += [replayer.replay(db.get_run(r.id)) for r in failed[:5]]  # reruns, linked to their parents
    wrong = keyed_settings(url, sim, WRONG_BC_KEY, WRONG_CG_KEY)
    rejected = [
        *run_unit(
            BlockchairIngestor(settings=wrong, db=db), CoinGeckoIngestor(settings=wrong, db=db), "blocks"
        ),
        *run_unit(
            BlockchairIngestor(settings=wrong, db=db), CoinGeckoIngestor(settings=wrong, db=db), "prices"
        ),
    ]
    assert {r.error_class for r in rejected} == {"AuthError"}  # the simulator refused the wrong keys
    for ingestor in (blockchair, coingecko):
        ingestor.client.close()
    return db, [r for r in [*results, *rejected] if r is not None]


@pytest.mark.slow  # every unit under eight faults, timeouts included: 15-20 s a dialect
def test_keys_never_reach_logs_runs_or_the_database(sim, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    db, results = exercise(sim, database_url)
    classes = {r.error_class for r in results if r.error_class}
    assert {"AuthError", "RetriableSourceError", "ResponseFormatError", "RateLimitedError"} <= classes
    for result in results:
        assert not leaks(result.model_dump_json()), result
    text = pipeline_log(caplog)
    assert not leaks(text), [line for line in text.splitlines() if leaks(line)][:5]
    # Redaction was exercised: key-carrying URLs were logged, masked.
    assert "key=***" in text
    dump = dump_text(db)
    assert "RetriableSourceError" in dump
    assert not leaks(dump), [line for line in dump.splitlines() if leaks(line)][:5]
    db.dispose()


@pytest.mark.parametrize(
    "fault",
    ["reset", "401", "402", "malformed_json", "html", pytest.param("timeout", marks=pytest.mark.slow), "500"],
)  # a timeout costs its seconds
def test_keys_never_reach_an_exception(sim, tmp_path, fault):
    settings = keyed_settings(f"sqlite:///{tmp_path}/x.db", sim)
    for client, endpoint, path, params in (
        (blockchair_client(settings), "blocks", "/bitcoin/blocks", {"limit": 1}),
        (coingecko_client(settings), "history", "/coins/bitcoin/history", {"date": "01-01-2024"}),
    ):
        sim.clear_faults()
        sim.add_fault(FaultRule(fault, endpoint=endpoint, times=None, delay=3))
        with pytest.raises(SourceError) as info:
            client.get_json(path, params)
        error = info.value
        texts = [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            repr(vars(error)),
            repr(pickle.loads(pickle.dumps(error))),
            repr(error.__cause__),
            repr(error.__context__),
            repr(client),
        ]
        assert not leaks("\n".join(texts)), texts
        client.close()
    sim.clear_faults()


@pytest.mark.slow
def test_keys_never_reach_the_scheduler_log_or_the_cli(sim, tmp_path):
    url = f"sqlite:///{tmp_path}/scheduler.db"
    db = DatabaseService(settings=keyed_settings(url, sim))
    db.create_tables()
    env = scheduler_settings(
        url,
        sim,
        BLOCKCHAIR_API_KEY=BC_KEY,
        COINGECKO_API_KEY=CG_KEY,
        COINGECKO_API_PLAN="demo",
        COINS="bitcoin,ethereum",
        WATCH_ADDRESSES=json.dumps(WATCH),
        BLOCKS_INITIAL_DEPTH=150,
        BLOCKS_INTERVAL_MINUTES=0.05,
        TRANSACTIONS_INTERVAL_MINUTES=0.05,
        ADDRESSES_INTERVAL_MINUTES=0.05,
        LATEST_PRICE_INTERVAL_MINUTES=0.05,
        HEARTBEAT_SECONDS=0.5,
        HTTP_TIMEOUT_SECONDS=1,
    )
    sim.clear_faults()
    for kind, endpoint in (
        ("reset", "blocks"),
        ("malformed_json", "transactions"),
        ("401", "market_chart_range"),
        ("timeout", "addresses"),
        ("402", "address"),
        ("html", "history"),
    ):
        sim.add_fault(FaultRule(kind, endpoint=endpoint, times=3, delay=2))
    log = tmp_path / "scheduler.log"
    proc = start_scheduler(log, "DEBUG", **env)
    try:
        wait_for(lambda: len(db.get_ingestion_logs(status="failed", limit=None)) >= 4, 60, what="failed runs")
    finally:
        code = stop(proc, signal.SIGTERM)
    sim.clear_faults()
    text = log.read_text(errors="replace")
    assert code == 0, text[-2000:]
    assert not leaks(text), [line for line in text.splitlines() if leaks(line)][:5]
    assert "key=***" in text  # urllib3's DEBUG lines carried the key, masked

    outputs = []
    for args in (["runs", "--limit", "100"], ["status", "--json"], ["stats"], ["rerun", "1"]):
        done = run_cli(args, **env)
        outputs.append(done.stdout + done.stderr)
    assert "failed" in outputs[0]
    all_output = "\n".join(outputs)
    assert not leaks(all_output), [line for line in all_output.splitlines() if leaks(line)][:5]
    dump = dump_text(db)
    assert not leaks(dump), [line for line in dump.splitlines() if leaks(line)][:5]
    db.dispose()


# ---------------------------------------------------------------------------------------------- dashboard

APP = ROOT / "dashboard" / "app.py"


def _walk(node):  # noqa: ANN001, ANN202
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values():
        yield from _walk(child)


def page_text(at) -> str:  # noqa: ANN001
    """Everything an AppTest page holds: each element's protobuf (text and bytes) and its value."""
    parts = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
            parts.append(proto.SerializeToString().decode("utf-8", errors="replace"))
        try:
            value = node.value
        except Exception:  # noqa: BLE001 - not every element has a value
            value = None
        if value is not None:
            parts.append(value.to_csv() if hasattr(value, "to_csv") else str(value))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.skipif(
    not APP.exists(), reason="dashboard/app.py is missing (the dashboard is built separately)"
)
def test_keys_never_reach_a_dashboard_page(sim, tmp_path, monkeypatch):
    from tests.dashboard.helpers import PAGES, open_page, reset_app_state

    url = f"sqlite:///{tmp_path}/dashboard.db"
    db, results = exercise(sim, url)
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "DATABASE_URL": url,
        "BLOCKCHAIR_API_KEY": BC_KEY,
        "COINGECKO_API_KEY": CG_KEY,
        "COINGECKO_API_PLAN": "demo",
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "COINS": "bitcoin,ethereum,dogecoin",
    }.items():
        monkeypatch.setenv(name, value)
    reset_app_state()
    try:
        shown = {}
        for page in PAGES:
            shown[page] = page_text(open_page(page))
        # The detail panel of failed runs of each error class (their error messages, params, samples).
        picked = {}
        for run in results:
            if run.error_class and run.error_class not in picked:
                picked[run.error_class] = run.id
        for error_class, run_id in picked.items():
            shown[f"runs?run={run_id}"] = text = page_text(open_page("runs", query={"run": str(run_id)}))
            assert error_class in text, f"the detail panel of run {run_id} ({error_class}) was not rendered"
    finally:
        reset_app_state()
    assert all(shown.values())
    for page, text in shown.items():
        assert not leaks(text), (page, [line for line in text.splitlines() if leaks(line)][:5])
    note(f"secrets: {len(shown)} dashboard pages searched ({', '.join(shown)}), no key found")
    db.dispose()


def test_leak_detector_finds_a_key():
    assert leaks(f"GET /bitcoin/blocks?key={BC_KEY}") == [BC_KEY]
    assert leaks(f"x-cg-demo-api-key: {CG_KEY[:13]}…") == [CG_KEY]
    assert leaks(Path(__file__).name) == []
