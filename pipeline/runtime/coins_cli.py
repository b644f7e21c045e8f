"""`crypto-pipeline coins list|add|enable|disable`: the coins the pipeline ingests, managed by command.

`coins` (or `coins list`) prints every coin with its state, chain, family, CoinGecko id, newest stored
block and price day (`--json` for machines); `coins add SYMBOL --coingecko-id ID --chain CHAIN` checks
both sources with one request each and adds the coin (`pipeline.services.coins`); `coins enable|disable
NAME` turns its ingestion on or off. Every change is written with an audit row naming the OS user. The
scheduler reads the coins at every job run, so a change takes effect without a restart.

Exit codes: 0 done; 1 a source could not be asked (down, refusing the key, an odd reply: nothing written);
2 a refused coin (bad, taken or unknown name, a chain of neither family: nothing written) or an unknown
coin to enable or disable. The `argparse` wiring is here, called from `pipeline.runtime.cli`, which
passes its own argument types and table printer (this module must not import it back).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

from pipeline.actors import cli_actor
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import SourceError
from pipeline.schemas import CoinMetadataData
from pipeline.services import coins as coin_service

# `cli._table(headers, rows, right=...)`: aligned columns under a header line.
Table = Callable[..., list[str]]
LIST_HEADERS = [
    "symbol", "name", "state", "chain", "family", "CoinGecko id", "newest block", "chain tip",
    "newest price day", "listed since",
]  # fmt: skip


def add_coins_parser(
    sub: Any, parser_class: type[argparse.ArgumentParser], *, date_type: Callable[[str], date]
) -> None:
    """Register `coins` and its actions on the command line's subparsers."""
    coins = sub.add_parser(
        "coins",
        help="list the coins (the default), or add, enable or disable one",
        description=(
            "`coins` alone, or `coins list`, lists the coins with their state; `coins add SYMBOL"
            " --coingecko-id ID --chain CHAIN` checks both sources (one request each) and adds one;"
            " `coins enable|disable NAME` turns its ingestion on or off. The scheduler picks changes up at"
            " its next job run."
        ),
    )
    coins.add_argument("--json", action="store_true", help="machine-readable list")
    actions = coins.add_subparsers(
        dest="action", metavar="[list|add|enable|disable]", parser_class=parser_class
    )
    listing = actions.add_parser("list", help="every coin with its state (the default)")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable")
    add = actions.add_parser(
        "add",
        help="check a coin against CoinGecko and Blockchair (one request each) and add it",
        description=(
            "Check that the CoinGecko id and the Blockchair chain exist (one request each), pick the chain"
            " family from the chain's stats, and add the coin, enabled unless --disabled. Nothing is"
            " written when a check fails."
        ),
    )
    add.add_argument("symbol", metavar="SYMBOL", help="ticker, e.g. LTC (stored in upper case)")
    add.add_argument("--coingecko-id", metavar="ID", help="CoinGecko's coin id, e.g. litecoin (prices)")
    add.add_argument(
        "--chain", metavar="CHAIN", help="Blockchair's chain, e.g. litecoin (blocks, transactions)"
    )
    add.add_argument("--name", default=None, help="display name (default: CoinGecko's)")
    add.add_argument(
        "--listed-since",
        type=date_type,
        default=None,
        metavar="DATE",
        help="first day prices may exist (default: CoinGecko's genesis date, if it gives one)",
    )
    add.add_argument(
        "--disabled", action="store_true", help="add it with ingestion off (`coins enable` later)"
    )
    for verb, text in (("enable", "turn a coin's ingestion on"), ("disable", "turn a coin's ingestion off")):
        action = actions.add_parser(verb, help=text)
        action.add_argument("name", metavar="NAME", help="symbol, CoinGecko id or chain")


def run_coins(args: argparse.Namespace, settings: Settings, db: DatabaseService, *, table: Table) -> int:
    """Run one `coins` action; see the module's docstring for the exit codes."""
    if args.action in ("enable", "disable"):
        coin, changed = coin_service.set_enabled(db, args.name, args.action == "enable", actor=cli_actor())
        if changed:
            print(f"{coin.symbol} ({coin.name}): {args.action}d; the scheduler sees it at its next job run")
        else:
            print(f"{coin.symbol} ({coin.name}) is already {coin_service.state_of(coin)}; nothing changed")
        return 0
    if args.action == "add":
        return _add(args, settings, db)
    return _list(args, settings, db, table)


def _add(args: argparse.Namespace, settings: Settings, db: DatabaseService) -> int:
    try:
        new = coin_service.add_coin(
            db, settings, actor=cli_actor(), symbol=args.symbol, coingecko_id=args.coingecko_id,
            chain=args.chain, name=args.name, listed_since=args.listed_since, enabled=not args.disabled,
        )  # fmt: skip
    except (
        SourceError
    ) as exc:  # the source could not say (down, key refused, odd reply): not the user's fault
        print(f"crypto-pipeline: error: could not check the coin, nothing was added: {exc}", file=sys.stderr)
        return 1
    for line in _checked_lines(new):
        print(line)
    coin = new.coin
    print(
        f"added {coin.symbol} ({coin.name}): {coin_service.state_of(coin)}"
        + (f", chain {coin.blockchair_chain} ({coin.chain_family} family)" if coin.blockchair_chain else "")
        + (f", CoinGecko id {coin.coingecko_id}" if coin.coingecko_id else "")
        + f", listed since {coin.listed_since or 'unknown'}"
    )
    if coin.ingestion_enabled:
        sources = [
            s for s, used in (("blockchair", coin.blockchair_chain), ("coingecko", coin.coingecko_id)) if used
        ]
        now = "; ".join(f"crypto-pipeline ingest {source} --coins {coin.symbol}" for source in sources)
        print(f"the scheduler takes it up at each job's next run (no restart); to fetch now: {now}")
    for note in new.notes:
        print(f"crypto-pipeline: note: {note}", file=sys.stderr)
    return 0


def _checked_lines(new: coin_service.NewCoin) -> list[str]:
    """One line per check: what the source said and the requests it cost."""
    lines = []
    if new.description is not None:
        genesis = new.description.genesis_date
        lines.append(
            f"CoinGecko: {new.description.id} is {new.description.name}"
            + (f" ({new.description.symbol.upper()})" if new.description.symbol else "")
            + (f", genesis {genesis}" if genesis else ", no genesis date")
            + _cost(new.requests.get("coingecko", 0))
        )
    if new.stats is not None and new.coin.blockchair_chain is not None:
        how = {
            "stats": "from the fields of its stats",
            "known chain": "Blockchair documents it so",
        }.get(new.family_rule, new.family_rule)
        tip = f"tip {new.stats.tip:,}" if new.stats.tip is not None else "no tip reported"
        lines.append(
            f"Blockchair: {new.coin.blockchair_chain} exists, {tip}, {new.coin.chain_family}-like ({how})"
            + _cost(new.requests.get("blockchair", 0))
        )
    return lines


def _cost(requests: int) -> str:
    return f" [{requests} request{'' if requests == 1 else 's'}]"


def _list(args: argparse.Namespace, settings: Settings, db: DatabaseService, table: Table) -> int:
    coins = db.get_coins()
    if getattr(args, "json", False):
        print(
            json.dumps(
                [{**c.model_dump(mode="json"), "state": coin_service.state_of(c)} for c in coins], indent=2
            )
        )
        return 0
    if not coins:
        print("no coins (`crypto-pipeline coins add` adds one)")
        return 0
    for line in table(LIST_HEADERS, [_row(c) for c in coins], right={6, 7}):
        print(line)
    left_out = [
        c.symbol
        for c in coins
        if c.ingestion_enabled and c.is_active and not coin_service.named_by_coins_setting(settings, c)
    ]
    if left_out:
        print(
            f"note: COINS={','.join(settings.COINS)} keeps the scheduler off {', '.join(left_out)}"
            " (unset COINS to run every enabled coin)"
        )
    return 0


def _row(coin: CoinMetadataData) -> list[str]:
    return [
        coin.symbol,
        coin.name,
        coin_service.state_of(coin),
        coin.blockchair_chain or "-",
        coin.chain_family if coin.blockchair_chain else "-",
        coin.coingecko_id or "-",
        _number(coin.block_bookmark),
        _number(coin.chain_tip_height),
        str(coin.price_bookmark or "-"),
        str(coin.listed_since or "-"),
    ]


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
