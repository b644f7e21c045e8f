"""Coins added, enabled and disabled (`pipeline.services.coins` over `pipeline.store.coins`), on both
dialects, against the local simulator over real HTTP.

Adding a coin spends exactly one request per source (counted by the simulator and by the client), picks
the family from the chain's stats (else Blockchair's documented chains, else refuses), and writes the coin
with its audit row or, on any refusal or source failure, nothing at all. Names that are bad or taken are
refused before any request. Enabling and disabling flip what `get_coins(active_only=True)` (what the
scheduler and every ingestor read) returns, each change with its audit row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from pipeline.actors import Actor
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import RetriableSourceError
from pipeline.http.client import RequestStats
from pipeline.models import AuditEntry, CoinMetadata
from pipeline.schemas import CoinMetadataData
from pipeline.services import coins
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import simulated_database
from tests.support.fixtures import load_fixture
from tests.support.settings import make_settings

ADMIN = Actor(name="ada@example.com", via="dashboard", role="admin")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def env(sim: Simulator, database_url: str) -> Iterator[tuple[Settings, DatabaseService]]:
    with simulated_database(database_url, sim, HTTP_MAX_ATTEMPTS=3) as settings_and_db:
        yield settings_and_db


def sent(sim: Simulator) -> dict[str, int]:
    """Requests the simulator served to the two endpoints `coins add` uses."""
    counts = sim.request_counts()
    return {"coin": counts.get("coin", 0), "stats": counts.get("stats", 0)}


def audit_rows(db: DatabaseService) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def symbols(db: DatabaseService, *, active_only: bool = False) -> list[str]:
    return [c.symbol for c in db.get_coins(active_only=active_only)]


def add(
    settings: Settings, db: DatabaseService, symbol: str, coin_id: str | None, chain: str | None, **kw: Any
):
    return coins.add_coin(db, settings, actor=ADMIN, symbol=symbol, coingecko_id=coin_id, chain=chain, **kw)


# ------------------------------------------------------------------------------------------------ add


def test_litecoin_and_bitcoin_cash_are_checked_with_one_request_each_and_stored(env, sim):
    settings, db = env
    for symbol, coin_id in (("LTC", "litecoin"), ("BCH", "bitcoin-cash")):
        before = sent(sim)
        new = add(settings, db, symbol.lower(), coin_id, coin_id)  # the symbol is stored upper case
        assert new.requests == {"coingecko": 1, "blockchair": 1}
        assert sent(sim) == {"coin": before["coin"] + 1, "stats": before["stats"] + 1}
        assert new.family_rule == "stats"
        assert new.stats is not None
        assert new.stats.tip == sim.tip(coin_id)
        assert new.notes == []
    ltc = db.get_coin("LTC")
    assert (ltc.name, ltc.coingecko_id, ltc.blockchair_chain, ltc.chain_family) == (
        "Litecoin", "litecoin", "litecoin", "bitcoin",
    )  # fmt: skip
    # No --listed-since: the genesis date CoinGecko gives (the simulator's first day of prices).
    assert ltc.listed_since == date(2013, 4, 28)
    assert db.get_coin("BCH").name == "Bitcoin Cash"
    assert db.get_coin("BCH").listed_since == date(2017, 8, 1)
    assert {"LTC", "BCH"} <= set(symbols(db, active_only=True))  # what the scheduler and ingestors read

    entries = db.audit_entries(action="coin_add")
    assert [(e.actor, e.via, e.role, e.target) for e in entries] == [
        ("ada@example.com", "dashboard", "admin", "coin:BCH"),
        ("ada@example.com", "dashboard", "admin", "coin:LTC"),
    ]
    params = entries[1].params or {}
    assert params["requests"] == {"coingecko": 1, "blockchair": 1}
    assert (params["chain_family"], params["family_rule"], params["listed_since"]) == (
        "bitcoin", "stats", "2013-04-28",
    )  # fmt: skip


def test_an_ethereum_like_chain_gets_the_ethereum_family_from_its_stats(env, sim):
    settings, db = env
    with db.transaction() as conn:  # free the seed's chain and id, to add Ethereum as a new coin
        conn.execute(delete(CoinMetadata).where(CoinMetadata.symbol == "ETH"))
    new = add(settings, db, "ETH", "ethereum", "ethereum")
    assert (new.coin.chain_family, new.family_rule) == ("ethereum", "stats")
    assert db.get_coin("ETH").chain_family == "ethereum"


def test_listed_since_and_name_given_win_over_coingeckos(env):
    settings, db = env
    new = add(settings, db, "LTC", "litecoin", "litecoin", name="Lite", listed_since=date(2014, 1, 1))
    assert (new.coin.name, new.coin.listed_since) == ("Lite", date(2014, 1, 1))
    assert new.description is not None
    assert new.description.name == "Litecoin"


def test_a_coin_can_be_added_disabled_or_with_one_source_only(env, sim):
    settings, db = env
    disabled = add(settings, db, "LTC", "litecoin", "litecoin", enabled=False)
    assert coins.state_of(disabled.coin) == "disabled"
    assert "LTC" in symbols(db)
    assert "LTC" not in symbols(db, active_only=True)
    priced = add(settings, db, "DASH", "dash", None)  # prices only: no chain, no Blockchair request
    assert priced.requests == {"coingecko": 1}
    assert priced.coin.blockchair_chain is None
    assert sent(sim) == {"coin": 2, "stats": 1}


def test_an_unknown_id_and_chain_are_refused_with_one_request_each_and_nothing_written(env, sim):
    settings, db = env
    coins_before, audit_before = db.get_coins(), audit_rows(db)
    with pytest.raises(coins.CoinRefused) as refused:
        add(settings, db, "XYZ", "no-such-coin", "no-such-chain")
    message = str(refused.value)
    assert "CoinGecko has no coin with id 'no-such-coin'" in message
    assert "Blockchair has no chain 'no-such-chain'" in message
    assert "\n" not in message
    assert sent(sim) == {"coin": 1, "stats": 1}  # a 404 is not retried
    assert db.get_coins() == coins_before
    assert audit_rows(db) == audit_before


def test_a_good_id_with_an_unknown_chain_writes_nothing(env, sim):
    settings, db = env
    with pytest.raises(coins.CoinRefused, match="Blockchair has no chain 'litecoyn'"):
        add(settings, db, "LTC", "litecoin", "litecoyn")
    assert sent(sim) == {"coin": 1, "stats": 1}
    assert "LTC" not in symbols(db)
    assert audit_rows(db) == 0


@pytest.mark.parametrize(
    ("symbol", "coin_id", "chain", "complaint"),
    [
        ("BTC", "litecoin", "litecoin", "symbol BTC is taken by Bitcoin"),
        ("LTC", "bitcoin", "litecoin", "CoinGecko id bitcoin is already coin BTC's"),
        ("LTC", "litecoin", "dogecoin", "Blockchair chain dogecoin is already coin DOGE's"),
        ("L-T-C", "litecoin", "litecoin", "symbol 'L-T-C'"),
        ("LTC", "Lite Coin", "litecoin", "CoinGecko id 'lite coin'"),
        ("LTC", "litecoin", "../admin", "Blockchair chain '../admin'"),
        ("LTC", None, None, "give --coingecko-id, --chain or both"),
    ],
)
def test_bad_or_taken_names_are_refused_before_any_request(env, sim, symbol, coin_id, chain, complaint):
    settings, db = env
    with pytest.raises(coins.CoinRefused, match=complaint.replace("(", r"\(").replace(".", r"\.")):
        add(settings, db, symbol, coin_id, chain)
    assert sent(sim) == {"coin": 0, "stats": 0}
    assert symbols(db) == ["BTC", "DOGE", "ETH"]


def test_a_source_that_fails_leaves_nothing_written_after_the_clients_retries(env, sim):
    settings, db = env
    sim.add_fault(FaultRule("503", "coin", times=None))
    with pytest.raises(RetriableSourceError, match="gave up after 3 attempts"):
        add(settings, db, "LTC", "litecoin", "litecoin")
    assert sent(sim)["coin"] == 3  # HTTP_MAX_ATTEMPTS: the shared client's retries
    assert sent(sim)["stats"] == 0  # stopped at the first check that could not be made
    assert "LTC" not in symbols(db)
    assert audit_rows(db) == 0


# --------------------------------------------------------------------------- the family rule (stubbed)


class StatsApi:
    """A Blockchair client that answers every request with one saved stats reply (and counts it)."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.stats = RequestStats()

    def get_json(self, path: str, params: Any = None, *, endpoint: str | None = None) -> Any:
        self.stats.requests += 1
        return self.payload

    def close(self) -> None:
        pass


def test_stats_without_either_mark_fall_back_to_blockchairs_documented_chains(env):
    settings, db = env
    unmarked = load_fixture("blockchair/cardano_stats_docs_example.json")  # neither outputs nor calls
    new = add(settings, db, "LTC", "litecoin", "litecoin", blockchair_api=StatsApi(unmarked))
    assert (new.coin.chain_family, new.family_rule) == ("bitcoin", "known chain")
    assert new.requests["blockchair"] == 1


def test_a_chain_of_neither_family_is_refused(env):
    settings, db = env
    cardano = StatsApi(load_fixture("blockchair/cardano_stats_docs_example.json"))
    with pytest.raises(coins.CoinRefused, match="'cardano' is neither Bitcoin-like"):
        add(settings, db, "ADA", None, "cardano", blockchair_api=cardano)
    assert "ADA" not in symbols(db)


def test_the_stats_fields_win_over_the_documented_list(env):
    settings, db = env
    ethereum_like = StatsApi(load_fixture("blockchair/ethereum_stats_docs_example.json"))
    new = add(settings, db, "LTC", "litecoin", "litecoin", blockchair_api=ethereum_like)
    assert (new.coin.chain_family, new.family_rule) == ("ethereum", "stats")


# ------------------------------------------------------------------------------------ enable / disable


def test_disable_and_enable_change_what_the_scheduler_reads_each_with_an_audit_row(db):
    coin, changed = coins.set_enabled(db, "dogecoin", False, actor=ADMIN)  # by id, chain or symbol
    assert changed
    assert coins.state_of(coin) == "disabled"
    assert "DOGE" not in symbols(db, active_only=True)
    assert "DOGE" in symbols(db)  # the coin (and its data) stay

    coin, changed = coins.set_enabled(db, "doge", False, actor=ADMIN)
    assert not changed  # already disabled: nothing written, no audit row
    coin, changed = coins.set_enabled(db, "DOGE", True, actor=ADMIN)
    assert changed
    assert coins.state_of(coin) == "enabled"
    assert "DOGE" in symbols(db, active_only=True)

    entries = db.audit_entries(limit=10)
    assert [(e.action, e.target) for e in entries] == [
        ("coin_enable", "coin:DOGE"),
        ("coin_disable", "coin:DOGE"),
    ]
    assert entries[1].params == {
        "symbol": "DOGE",
        "before": {"is_active": True, "ingestion_enabled": True},
        "after": {"is_active": True, "ingestion_enabled": False},
    }


def test_enable_brings_back_a_coin_made_inactive_by_hand(db):
    with db.transaction() as conn:
        conn.execute(update(CoinMetadata).where(CoinMetadata.symbol == "ETH").values(is_active=False))
    assert coins.state_of(db.get_coin("ETH")) == "inactive"
    coin, changed = coins.set_enabled(db, "ETH", True, actor=ADMIN)
    assert changed
    assert (coin.is_active, coin.ingestion_enabled) == (True, True)
    assert "ETH" in symbols(db, active_only=True)


def test_an_unknown_coin_cannot_be_enabled(db):
    with pytest.raises(LookupError, match="unknown coin 'litecoin'; known coins: BTC, DOGE, ETH"):
        coins.set_enabled(db, "litecoin", True, actor=ADMIN)
    with pytest.raises(LookupError):
        db.set_coin_enabled("LTC", True, actor=ADMIN)
    assert audit_rows(db) == 0


def test_the_store_refuses_a_taken_key_and_writes_no_audit_row(db):
    """The unique keys decide, even for a coin checked before another writer took its chain."""
    late = CoinMetadataData(
        symbol="LTC", name="Litecoin", coingecko_id="litecoin", blockchair_chain="dogecoin"
    )
    with pytest.raises(
        ValueError, match="coin LTC not added: Blockchair chain dogecoin is already coin DOGE's"
    ):
        db.add_coin(late, actor=ADMIN)
    assert symbols(db) == ["BTC", "DOGE", "ETH"]
    assert audit_rows(db) == 0


# ------------------------------------------------------------------------------------------- COINS


@pytest.mark.parametrize(
    ("setting", "named"),
    [("", True), ("litecoin", True), ("LTC", True), ("ltc", True), ("bitcoin,ethereum", False)],
)
def test_the_coins_setting_narrows_the_scheduler_only_when_set(setting, named):
    settings = make_settings("sqlite:///unused.db", COINS=setting)
    ltc = CoinMetadataData(
        symbol="LTC", name="Litecoin", coingecko_id="litecoin", blockchair_chain="litecoin"
    )
    assert coins.named_by_coins_setting(settings, ltc) is named
