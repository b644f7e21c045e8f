"""AppTest: the Database page lists every coin with its state, chain, family and how far its data reaches,
read through `dashboard.data.coin_states`; an admin enables and disables coins there (audited), an
operator may not."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.actors import Actor
from pipeline.database import DatabaseService
from pipeline.schemas import CoinMetadataData
from tests.dashboard.helpers import open_page
from tests.dashboard.test_login_roles import OPERATOR, shown, signed_in
from tests.dashboard.test_login_roles import world as login_world
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
    assert table.loc["BTC", "Newest price day"].date() == date(2026, 1, 4)
    assert table.loc["LTC", "Listed since"].date() == date(2013, 4, 28)
    assert pd.isna(table.loc["LTC", "Newest price day"])  # no price yet: an empty cell, never "None"
    # A coin with prices only: no chain, so no family either.
    assert pd.isna(table.loc["USDT", "Chain"])
    assert pd.isna(table.loc["USDT", "Family"])


def test_an_admin_disables_and_enables_a_coin_and_the_change_is_audited(empty_url):
    """On a loopback dashboard without login (its OS user is the admin), Disable and Enable change the
    coin and write an audit row each; the scheduler reads the change from the database."""
    db = DatabaseService(settings=make_settings(empty_url))
    at = open_page("database")
    [disable] = [b for b in at.button if b.label == "Disable DOGE"]
    disable.click().run()
    assert not at.exception
    assert "DOGE" not in {c.symbol for c in db.get_coins(active_only=True)}
    assert coin_table(at).loc["DOGE", "State"] == "disabled"
    [enable] = [b for b in at.button if b.label == "Enable DOGE"]
    enable.click().run()
    assert "DOGE" in {c.symbol for c in db.get_coins(active_only=True)}
    entries = db.audit_entries()
    assert [(e.action, e.target, e.via, e.role) for e in entries] == [
        ("coin_enable", "coin:DOGE", "dashboard", "admin"),
        ("coin_disable", "coin:DOGE", "dashboard", "admin"),
    ]
    db.dispose()


world = login_world  # its fixture: the role lists set, the app pointed at a populated database


def test_an_operator_gets_no_coin_switch(world):  # noqa: ARG001 - the fixture configures the app
    """Coin changes need the admin role: a logged-in operator sees the coins but no switch, and is told
    why."""
    at = signed_in(OPERATOR, "database")
    assert not [b.label for b in at.button if b.label.startswith(("Disable", "Enable"))]
    assert "olaf@example.com, operator: coin changes need the admin role." in shown(at, "caption")


def test_the_settings_view_is_for_admins_and_hides_secrets(empty_url, use_database):
    use_database(empty_url, BLOCKCHAIR_API_KEY="bc-secret-123", COINGECKO_BASE_URL="http://r:pw9@127.0.0.1:9/")
    at = open_page("database")  # loopback without login: the OS user, admin
    [rows] = [df.value for df in at.dataframe if "setting" in df.value.columns]
    shown = dict(zip(rows["setting"], rows["value"], strict=True))
    assert shown["BLOCKCHAIR_API_KEY"] == "set (hidden)"
    assert shown["COINGECKO_BASE_URL"] == "http://r:***@127.0.0.1:9"
    assert "bc-secret-123" not in rows.to_string()
    assert "pw9" not in rows.to_string()


def test_an_operator_sees_no_settings_view(world):  # noqa: ARG001 - the fixture configures the app
    at = signed_in(OPERATOR, "database")
    assert not [df for df in at.dataframe if "setting" in df.value.columns]
    assert not [e for e in at.expander if "Settings" in e.label]
