"""AppTest: the Database page lists every coin with its state, chain, family and how far its data reaches,
read through `dashboard.data.coin_states` (coins are changed by `crypto-pipeline coins`, not here)."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.actors import Actor
from pipeline.database import DatabaseService
from pipeline.schemas import CoinMetadataData
from tests.dashboard.helpers import open_page
from tests.support.settings import make_settings

ADMIN = Actor(name="ops", via="cli")


def coin_table(at) -> pd.DataFrame:  # noqa: ANN001
    frames = [df.value for df in at.dataframe if "Symbol" in df.value.columns]
    assert len(frames) == 1, [list(df.value.columns) for df in at.dataframe]
    return frames[0].set_index("Symbol")


def test_the_database_page_lists_the_coins_with_their_state(empty_url):
    db = DatabaseService(settings=make_settings(empty_url))
    ltc = CoinMetadataData(
        symbol="LTC", name="Litecoin", coingecko_id="litecoin", blockchair_chain="litecoin",
        listed_since=date(2013, 4, 28),
    )  # fmt: skip
    db.add_coin(ltc, actor=ADMIN)
    db.add_coin(CoinMetadataData(symbol="USDT", name="Tether", coingecko_id="tether"), actor=ADMIN)
    db.set_coin_enabled("DOGE", False, actor=ADMIN)
    with db.transaction() as conn:
        db.set_bookmarks(conn, "LTC", block_bookmark=2_800_000, chain_tip_height=2_800_002)
        db.set_bookmarks(conn, "BTC", price_bookmark=date(2026, 1, 4))
    db.dispose()

    table = coin_table(open_page("database"))
    assert list(table.index) == ["BTC", "DOGE", "ETH", "LTC", "USDT"]
    assert list(table.columns) == [
        "Name", "State", "Chain", "Family", "CoinGecko id", "Newest block", "Chain tip", "Newest price day",
        "Listed since",
    ]  # fmt: skip
    assert table.loc["DOGE", "State"] == "disabled"
    assert table.loc["LTC", "State"] == "enabled"
    assert table.loc["LTC", ["Name", "Chain", "Family", "CoinGecko id"]].tolist() == [
        "Litecoin", "litecoin", "bitcoin", "litecoin",
    ]  # fmt: skip
    assert table.loc["ETH", "Family"] == "ethereum"
    assert (table.loc["LTC", "Newest block"], table.loc["LTC", "Chain tip"]) == (2_800_000, 2_800_002)
    assert pd.isna(table.loc["BTC", "Newest block"])  # no block stored yet: an empty cell
    assert table.loc["BTC", "Newest price day"] == date(2026, 1, 4)
    assert table.loc["LTC", "Listed since"] == date(2013, 4, 28)
    # A coin with prices only: no chain, so no family either.
    assert pd.isna(table.loc["USDT", "Chain"])
    assert pd.isna(table.loc["USDT", "Family"])
