"""Coins managed by command (`crypto-pipeline coins add|enable|disable`): what is checked before a coin is
added, how its chain family is picked, and which coins the scheduler runs.

Adding a coin spends one request per source, through each source's own client (its rate limit, retries,
key handling and redaction): CoinGecko `/coins/{id}` with every heavy part off (the id exists, its name,
its genesis date) and Blockchair `/{chain}/stats` (the chain exists, its family). A 404 from either means
the id or chain does not exist; any other failure means the check could not be made. Either way nothing
is written. The counts are stored with the coin's audit row (`params.requests`), not in the run log:
they are not ingestion runs, and a failed check must not open an incident.

The chain family decides how Blockchair's rows are read (satoshi-like UTXO rows or wei account rows):

1. the stats reply's own fields: Ethereum-like chains report `calls`, `uncles`, `circulation_approximate`
   or `layer_2`; Bitcoin-like chains report `outputs` (`sources.blockchair.family_of_stats`);
2. else the chains Blockchair documents as Bitcoin-like or Ethereum-like
   (`sources.blockchair.KNOWN_FAMILIES`);
3. else the chain is refused: its rows fit neither parser (Ripple, Stellar, Monero, Cardano ...).

`listed_since` (the first day a price may exist; price requests never go before it) is `--listed-since`
when given, else CoinGecko's `genesis_date` (no price is older than the chain), else empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from pipeline.errors import FatalSourceError
from pipeline.schemas import CoinMetadataData
from pipeline.sources import blockchair, coingecko
from pipeline.store.coins import clash

if TYPE_CHECKING:
    from pipeline.actors import Actor
    from pipeline.config import Settings
    from pipeline.database import DatabaseService
    from pipeline.http.client import ApiClient

SYMBOL = re.compile(r"[A-Z0-9]{1,16}")
COINGECKO_ID = re.compile(r"[a-z0-9-]{1,64}")
CHAIN = re.compile(r"[a-z0-9][a-z0-9/-]{0,63}")
MAX_NAME = 64
NOT_FOUND = 404


class CoinRefused(ValueError):
    """A coin `coins add` will not add (a bad or taken name, an id or chain the source does not know, a
    chain of neither family); nothing was written. The message is one line."""


@dataclass(frozen=True)
class NewCoin:
    """A coin `coins add` checked (and, once added, stored), with what the checks found and cost."""

    coin: CoinMetadataData
    description: coingecko.CoinDescription | None
    stats: blockchair.ChainStats | None
    family_rule: str  # why this family: "stats", "known chain", or "no chain"
    requests: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def audit_params(self) -> dict[str, Any]:
        """What the checks found, for the `coin_add` audit row beside the coin's fields."""
        return {
            "requests": self.requests,
            "family_rule": self.family_rule,
            "coingecko_name": self.description.name if self.description else None,
            "genesis_date": (
                self.description.genesis_date.isoformat()
                if self.description and self.description.genesis_date
                else None
            ),
            "chain_tip": self.stats.tip if self.stats else None,
        }


def state_of(coin: CoinMetadataData) -> str:
    """'enabled' (ingested), 'disabled' (`coins disable`), or 'inactive' (is_active cleared by hand)."""
    if not coin.is_active:
        return "inactive"
    return "enabled" if coin.ingestion_enabled else "disabled"


def named_by_coins_setting(settings: Settings, coin: CoinMetadataData) -> bool:
    """Whether the COINS setting lets the scheduler run this coin: unset (every enabled coin), or naming
    its CoinGecko id, chain or symbol."""
    wanted = {name.lower() for name in settings.COINS}
    return not wanted or bool({coin.coingecko_id, coin.blockchair_chain, coin.symbol.lower()} & wanted)


def find_coin(db: DatabaseService, name: str) -> CoinMetadataData:
    """A stored coin by symbol, CoinGecko id or Blockchair chain (any case); LookupError if none."""
    wanted = name.strip().lower()
    coins = db.get_coins()
    for coin in coins:
        if wanted in (coin.symbol.lower(), coin.coingecko_id, coin.blockchair_chain):
            return coin
    known = ", ".join(c.symbol for c in coins) or "none"
    msg = f"unknown coin {name!r}; known coins: {known} (`crypto-pipeline coins add` adds one)"
    raise LookupError(msg)


def set_enabled(
    db: DatabaseService, name: str, enabled: bool, *, actor: Actor
) -> tuple[CoinMetadataData, bool]:
    """Turn a coin's ingestion on or off (by symbol, id or chain); returns the coin and whether it changed.
    The change and its audit row commit together; the scheduler sees it at its next job."""
    coin = find_coin(db, name)
    return db.set_coin_enabled(coin.symbol, enabled, actor=actor)


# ---------------------------------------------------------------------------------------------- add


def add_coin(
    db: DatabaseService,
    settings: Settings,
    *,
    actor: Actor,
    symbol: str,
    coingecko_id: str | None,
    chain: str | None,
    name: str | None = None,
    listed_since: date | None = None,
    enabled: bool = True,
    coingecko_api: ApiClient | None = None,
    blockchair_api: ApiClient | None = None,
) -> NewCoin:
    """Check a new coin against both sources (one request each) and store it with its audit row.

    Raises CoinRefused (nothing written, and no request sent for a bad or taken name), or the SourceError
    of a check that could not be made (nothing written). Clients may be passed in (tests); by default
    each source's client is built from the settings and closed afterwards.
    """
    new = check_coin(
        db, settings, symbol=symbol, coingecko_id=coingecko_id, chain=chain, name=name,
        listed_since=listed_since, enabled=enabled, coingecko_api=coingecko_api,
        blockchair_api=blockchair_api,
    )  # fmt: skip
    stored = db.add_coin(new.coin, actor=actor, params=new.audit_params())
    return replace(new, coin=stored)


def check_coin(
    db: DatabaseService,
    settings: Settings,
    *,
    symbol: str,
    coingecko_id: str | None,
    chain: str | None,
    name: str | None = None,
    listed_since: date | None = None,
    enabled: bool = True,
    coingecko_api: ApiClient | None = None,
    blockchair_api: ApiClient | None = None,
) -> NewCoin:
    """Everything `add_coin` checks, without writing: the names, that they are free, and both sources."""
    symbol, coingecko_id, chain = _names(symbol, coingecko_id, chain, name)
    name = name.strip() if name else None
    taken = db.coins_in_the_way(symbol=symbol, coingecko_id=coingecko_id, blockchair_chain=chain)
    if taken:
        probe = CoinMetadataData(symbol=symbol, name=name or symbol, coingecko_id=coingecko_id,
                                 blockchair_chain=chain)  # fmt: skip
        raise CoinRefused("; ".join(clash(probe, other) for other in taken))
    problems: list[str] = []
    requests: dict[str, int] = {}
    description = stats = None
    if coingecko_id is not None:
        description, requests["coingecko"] = _describe(settings, coingecko_id, coingecko_api, problems)
    if chain is not None:
        stats, requests["blockchair"] = _chain_stats(settings, chain, blockchair_api, problems)
    family, rule = _family(chain, stats, problems)
    if problems:
        raise CoinRefused("; ".join(problems) + "; nothing was added")
    coin = CoinMetadataData(
        symbol=symbol,
        name=(name or (description.name if description else None) or symbol)[:MAX_NAME],
        coingecko_id=coingecko_id,
        blockchair_chain=chain,
        chain_family=family,
        listed_since=listed_since or (description.genesis_date if description else None),
        is_active=True,
        ingestion_enabled=enabled,
    )
    return NewCoin(coin, description, stats, rule, requests, _notes(settings, coin, description))


def _names(
    symbol: str, coingecko_id: str | None, chain: str | None, name: str | None
) -> tuple[str, str | None, str | None]:
    """The names as stored (symbol upper case, id and chain lower case), or CoinRefused naming the bad one."""
    symbol = symbol.strip().upper()
    coingecko_id = coingecko_id.strip().lower() if coingecko_id else None
    chain = chain.strip().lower().strip("/") if chain else None
    bad = [
        text
        for wrong, text in (
            (not SYMBOL.fullmatch(symbol), f"symbol {symbol!r}: 1 to 16 letters or digits"),
            (
                coingecko_id is not None and not COINGECKO_ID.fullmatch(coingecko_id),
                f"CoinGecko id {coingecko_id!r}: lower-case letters, digits and '-' (as in its API URLs)",
            ),
            (
                chain is not None and not CHAIN.fullmatch(chain),
                f"Blockchair chain {chain!r}: lower-case letters, digits, '-' and '/' (bitcoin/testnet)",
            ),
            (name is not None and not 0 < len(name.strip()) <= MAX_NAME, f"name: 1 to {MAX_NAME} characters"),
            (coingecko_id is None and chain is None, "give --coingecko-id, --chain or both"),
        )
        if wrong
    ]
    if bad:
        raise CoinRefused("; ".join(bad))
    return symbol, coingecko_id, chain


def _describe(
    settings: Settings, coin_id: str, client: ApiClient | None, problems: list[str]
) -> tuple[coingecko.CoinDescription | None, int]:
    """CoinGecko's description of the id (one request), or None with the problem noted when it has none."""
    api = client or coingecko.coingecko_client(settings)
    before = api.stats.requests
    try:
        payload = api.get_json(coingecko.coin_path(coin_id), coingecko.COIN_PARAMS, endpoint="/coins/{id}")
    except FatalSourceError as exc:
        if exc.status != NOT_FOUND:
            raise
        problems.append(f"CoinGecko has no coin with id {coin_id!r} (HTTP 404)")
        return None, api.stats.requests - before
    finally:
        if client is None:
            api.close()
    return coingecko.parse_coin(payload, coin_id=coin_id), api.stats.requests - before


def _chain_stats(
    settings: Settings, chain: str, client: ApiClient | None, problems: list[str]
) -> tuple[blockchair.ChainStats | None, int]:
    """Blockchair's stats of the chain (one request), or None with the problem noted when it has none."""
    api = client or blockchair.blockchair_client(settings)
    before = api.stats.requests
    path = blockchair.stats_path(chain)
    try:
        payload = api.get_json(path, endpoint=path)
    except FatalSourceError as exc:
        if exc.status != NOT_FOUND:
            raise
        problems.append(f"Blockchair has no chain {chain!r} (HTTP 404 on {path})")
        return None, api.stats.requests - before
    finally:
        if client is None:
            api.close()
    return blockchair.parse_chain_stats(payload, endpoint=path), api.stats.requests - before


def _family(chain: str | None, stats: blockchair.ChainStats | None, problems: list[str]) -> tuple[str, str]:
    """(family, the rule that picked it): the stats' fields, else Blockchair's documented chains."""
    if chain is None:
        return "bitcoin", "no chain"  # unused: a coin without a chain has no rows to read
    if stats is not None and stats.family is not None:
        return stats.family, "stats"
    known = blockchair.KNOWN_FAMILIES.get(chain)
    if known is not None:
        return known, "known chain"
    if stats is not None:  # the chain exists, but its rows are of neither kind this pipeline reads
        problems.append(
            f"Blockchair chain {chain!r} is neither Bitcoin-like (its stats have no 'outputs') nor"
            " Ethereum-like (no 'calls', 'uncles' or 'layer_2'); the pipeline reads only those two families"
        )
    return "bitcoin", "unknown"


def _notes(
    settings: Settings, coin: CoinMetadataData, description: coingecko.CoinDescription | None
) -> list[str]:
    """What the user should know about an otherwise good coin: a ticker that differs from CoinGecko's, or
    a COINS setting that keeps the scheduler off it."""
    notes = []
    theirs = description.symbol.upper() if description else ""
    if theirs and theirs != coin.symbol:
        notes.append(f"CoinGecko's ticker for {coin.coingecko_id} is {theirs}, not {coin.symbol}")
    if not named_by_coins_setting(settings, coin):
        notes.append(
            f"COINS={','.join(settings.COINS)} does not name {coin.coingecko_id or coin.blockchair_chain}:"
            " the scheduler runs only the coins COINS names (unset it to run every enabled coin)"
        )
    return notes
