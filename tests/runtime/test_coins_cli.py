"""`crypto-pipeline coins list|add|enable|disable` in this process, against the simulator over real HTTP.

Litecoin and Bitcoin Cash, added by command to a running scheduler's database, get blocks, transactions
and daily prices at the scheduler's next pass with no code change and no restart; disabling a coin takes
it out of the scheduler's jobs and enabling puts it back; an unknown id or chain, or a source that does
not answer, writes nothing; every change has an audit row naming the OS user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.actors import os_user
from pipeline.config import Settings, get_settings
from pipeline.database import DatabaseService
from pipeline.runtime.scheduler import Scheduler
from pipeline.schemas import IngestionStatus
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.cli import Cli, Outcome, in_process_cli
from tests.support.settings import simulator_settings

DEPTH = 3  # blocks a new chain starts with
DAYS = 3  # daily prices the price job keeps filled
ENV: dict[str, object] = {
    "SIMULATED_DATA": "true",
    "BLOCKS_INITIAL_DEPTH": DEPTH,
    "TRANSACTIONS_WINDOW_BLOCKS": 1,
    "PRICE_BACKFILL_DAYS": DAYS,
    "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 100_000,
    "COINGECKO_RATE_LIMIT_PER_MINUTE": 100_000,
    "HTTP_MAX_ATTEMPTS": 2,
    "HTTP_BACKOFF_BASE_SECONDS": 0.05,
}
NEW_COINS = {"LTC": "litecoin", "BCH": "bitcoin-cash"}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def world(database_url: str, sim: Simulator) -> dict[str, object]:
    """The environment of every command: the test database, both APIs at the simulator."""
    return {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        **ENV,
    }


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    world: dict[str, object],
) -> Iterator[Cli]:
    """`crypto-pipeline ARGS` in this process, in the simulator's world; the database is created first."""
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    created = run("init-db", **world)
    assert created.code == 0, created
    yield lambda *args, **env: run(*args, **world, **env)
    get_settings.cache_clear()


@pytest.fixture
def settings(world: dict[str, object], sim: Simulator) -> Settings:
    """The same world's settings, for a scheduler in this process."""
    return simulator_settings(str(world["DATABASE_URL"]), sim, **ENV)


@pytest.fixture
def db(cli: Cli, settings: Settings) -> Iterator[DatabaseService]:
    service = DatabaseService(settings=settings)
    yield service
    service.dispose()


def one_line(outcome: Outcome) -> str:
    lines = outcome.err.splitlines()
    assert lines[0].startswith("database: ")  # every command names its database first
    assert len(lines) == 2, outcome
    assert "Traceback" not in outcome.err
    return lines[1]


def job_coins(scheduler: Scheduler, job: str) -> list[str]:
    """The coins a job of this scheduler runs for at its next run."""
    return [coin.symbol for coin in scheduler.jobs_by_name[job].coins()]


def sent(sim: Simulator) -> tuple[int, int]:
    counts = sim.request_counts()
    return counts.get("coin", 0), counts.get("stats", 0)


@pytest.mark.slow_on_postgresql
def test_litecoin_and_bitcoin_cash_added_by_command_get_blocks_transactions_and_prices(
    cli, sim, settings, db
):
    scheduler = Scheduler(settings, db)  # running before the coins exist: it must pick them up as they come
    assert job_coins(scheduler, "blocks") == ["BTC", "DOGE", "ETH"]

    for symbol, coin_id in NEW_COINS.items():
        before = sent(sim)
        added = cli("coins", "add", symbol, "--coingecko-id", coin_id, "--chain", coin_id)
        assert added.code == 0, added
        assert sent(sim) == (before[0] + 1, before[1] + 1)  # one request to each source
        lines = added.out.splitlines()
        assert lines[0].startswith(f"CoinGecko: {coin_id} is ")
        assert lines[0].endswith("[1 request]")
        assert f"Blockchair: {coin_id} exists, tip {sim.tip(coin_id):,}, bitcoin-like" in lines[1]
        assert lines[1].endswith("(from the fields of its stats) [1 request]")
        assert lines[2].startswith(f"added {symbol} (")
        assert f"chain {coin_id} (bitcoin family), CoinGecko id {coin_id}" in lines[2]

    for job in ("blocks", "transactions", "daily_prices"):
        assert job_coins(scheduler, job) == ["BCH", "BTC", "DOGE", "ETH", "LTC"]
    # One pass of the scheduler's jobs (the loop's lease and time-of-day gates aside).
    results = [
        r
        for job in ("blocks", "transactions", "daily_prices")
        for r in scheduler.jobs_by_name[job].run_all_coins()
    ]
    assert all(r is not None and r.status == IngestionStatus.SUCCESS for r in results), results

    stats = db.get_database_stats()
    heights = {c.coin_symbol: (c.min_height, c.max_height, c.blocks) for c in stats.block_coverage}
    prices = {c.coin_id: (c.days, c.last_date) for c in stats.price_coverage}
    for symbol, coin_id in NEW_COINS.items():
        tip = sim.tip(coin_id)
        assert heights[symbol] == (tip - DEPTH + 1, tip, DEPTH)
        expected = {t["hash"] for t in sim.expected_transactions(coin_id, tip)}
        stored = {t.tx_hash for t in db.get_transactions(coin_symbol=symbol, limit=10_000)}
        assert expected
        assert stored == expected
        days, newest_day = prices[coin_id]
        assert days == DAYS
        coin = db.get_coin(symbol)  # its bookmarks: what `coins list` and the Database page show
        assert (coin.block_bookmark, coin.price_bookmark) == (tip, newest_day)

    listed = cli("coins", "list")
    assert listed.code == 0, listed
    row = next(line for line in listed.out.splitlines() if line.startswith("LTC "))
    cells = re.split(r"\s{2,}", row)
    tip = sim.tip("litecoin")
    assert cells[:6] == ["LTC", "Litecoin", "enabled", "litecoin", "bitcoin", "litecoin"]
    assert cells[6:8] == [f"{tip:,}", f"{tip:,}"]  # newest stored block, chain tip

    audit = db.audit_entries(action="coin_add")
    assert [(e.target, e.actor, e.via) for e in audit] == [
        ("coin:BCH", os_user(), "cli"),
        ("coin:LTC", os_user(), "cli"),
    ]


@pytest.mark.slow_on_postgresql
def test_disable_takes_a_coin_out_of_the_schedulers_jobs_and_enable_puts_it_back(cli, sim, settings, db):
    scheduler = Scheduler(settings, db)
    assert cli("coins", "add", "LTC", "--coingecko-id", "litecoin", "--chain", "litecoin").code == 0

    disabled = cli("coins", "disable", "ltc")
    assert disabled.code == 0, disabled
    assert disabled.out == "LTC (Litecoin): disabled; the scheduler sees it at its next job run\n"
    for job in scheduler.jobs:
        assert "LTC" not in job_coins(scheduler, job.name)
    ran = [r.coin for r in scheduler.jobs_by_name["blocks"].run_all_coins() if r is not None]
    assert sorted(ran) == ["bitcoin", "dogecoin", "ethereum"]  # a blocks unit's coin is its chain
    assert "litecoin" not in {r.coin for r in db.get_ingestion_logs(limit=None)}

    again = cli("coins", "disable", "LTC")
    assert again.out == "LTC (Litecoin) is already disabled; nothing changed\n"

    enabled = cli("coins", "enable", "litecoin")
    assert enabled.code == 0, enabled
    assert "LTC" in job_coins(scheduler, "blocks")
    assert "LTC" in job_coins(scheduler, "daily_prices")
    runs = scheduler.jobs_by_name["blocks"].run_all_coins()
    [result] = [r for r in runs if r is not None and r.coin == "litecoin"]
    assert result.status == IngestionStatus.SUCCESS
    assert result.records_inserted == DEPTH

    actions = [(e.action, e.target, e.actor) for e in db.audit_entries(limit=10)]
    assert actions == [
        ("coin_enable", "coin:LTC", os_user()),
        ("coin_disable", "coin:LTC", os_user()),
        ("coin_add", "coin:LTC", os_user()),
    ]  # the no-op disable wrote nothing


def test_an_unknown_id_or_chain_is_one_line_and_writes_nothing(cli, sim, db):
    refused = cli("coins", "add", "LTC", "--coingecko-id", "litecoyn", "--chain", "litecoyn")
    assert refused.code == 2
    assert one_line(refused) == (
        "crypto-pipeline: error: CoinGecko has no coin with id 'litecoyn' (HTTP 404); Blockchair has no chain"
        " 'litecoyn' (HTTP 404 on /litecoyn/stats); nothing was added"
    )
    assert refused.out == ""
    assert sent(sim) == (1, 1)
    assert [c.symbol for c in db.get_coins()] == ["BTC", "DOGE", "ETH"]
    assert db.audit_entries() == []

    taken = cli("coins", "add", "DOGE2", "--coingecko-id", "litecoin", "--chain", "dogecoin")
    assert taken.code == 2
    assert one_line(taken) == "crypto-pipeline: error: Blockchair chain dogecoin is already coin DOGE's"
    assert sent(sim) == (1, 1)  # refused before asking anyone

    unknown = cli("coins", "enable", "LTC")
    assert unknown.code == 2
    assert one_line(unknown).startswith(
        "crypto-pipeline: error: unknown coin 'LTC'; known coins: BTC, DOGE, ETH"
    )


def test_a_source_that_does_not_answer_is_exit_1_and_writes_nothing(cli, sim, db):
    sim.add_fault(FaultRule("503", "stats", times=None))
    failed = cli("coins", "add", "LTC", "--coingecko-id", "litecoin", "--chain", "litecoin")
    assert failed.code == 1
    line = one_line(failed)
    assert line.startswith(
        "crypto-pipeline: error: could not check the coin, nothing was added: blockchair /litecoin/stats"
    )
    assert "gave up after 2 attempts" in line
    assert sent(sim) == (1, 2)  # the shared client's retries (HTTP_MAX_ATTEMPTS=2)
    assert "LTC" not in [c.symbol for c in db.get_coins()]
    assert db.audit_entries() == []


def test_coins_list_and_json_show_every_coin_with_its_state(cli, db):
    assert cli("coins", "disable", "DOGE").code == 0
    listed = cli("coins")  # `coins` alone lists
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "symbol", "name", "state", "chain", "family", "CoinGecko id", "newest block", "chain tip",
        "newest price day", "listed since",
    ]  # fmt: skip
    states = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[2] for line in lines[1:]}
    assert states == {"BTC": "enabled", "DOGE": "disabled", "ETH": "enabled"}
    assert cli("coins", "list").out == listed.out

    as_json = json.loads(cli("coins", "list", "--json").out)
    assert [(c["symbol"], c["state"], c["chain_family"]) for c in as_json] == [
        ("BTC", "enabled", "bitcoin"), ("DOGE", "disabled", "bitcoin"), ("ETH", "enabled", "ethereum"),
    ]  # fmt: skip
    assert json.loads(cli("coins", "--json").out) == as_json


def test_a_coins_setting_that_leaves_the_new_coin_out_is_said(cli):
    added = cli(
        "coins", "add", "LTC", "--coingecko-id", "litecoin", "--chain", "litecoin", COINS="bitcoin,ethereum"
    )
    assert added.code == 0, added
    assert "crypto-pipeline: note: COINS=bitcoin,ethereum does not name litecoin" in added.err
    listed = cli("coins", COINS="bitcoin,ethereum")
    assert "note: COINS=bitcoin,ethereum keeps the scheduler off DOGE, LTC" in listed.out


def test_coins_needs_an_existing_database(monkeypatch, capsys, tmp_path):
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    try:
        missing = run(
            "coins", "add", "LTC", "--chain", "litecoin", DATABASE_URL=f"sqlite:///{tmp_path}/none.db"
        )
    finally:
        get_settings.cache_clear()
    assert missing.code == 4  # no database: `init-db` first; nothing created
    assert not (tmp_path / "none.db").exists()
