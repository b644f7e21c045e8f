"""Blockchair: the requests we send, the meaning of its error codes, its client, and its parsers.

Quirks handled here (apis.md 1.2-1.5): `data` is a list for row queries, a dict keyed by the identifier
as sent for dashboards, and an empty list `[]` when nothing matched; `context.limit` may be an int, a
string ("100,100") or null and is never relied on; `context.state` is the chain tip. Bitcoin-like rows
carry satoshi integers, Ethereum rows carry wei as decimal strings, both kept exact. Errors come as
`{"data": null, "context": {"code": N, "error": "..."}}` (apis.md 1.4, 1.7); a reply whose `context.code`
is an error code is an error even if its HTTP status says 200.

Everything here except :func:`blockchair_client` is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from pipeline.errors import AuthError, RetriableSourceError, SourceError
from pipeline.http.auth import NO_AUTH, Auth
from pipeline.http.classify import SourceRules, as_int, as_text, plain_api_error, says_invalid_key
from pipeline.http.client import ApiClient
from pipeline.http.limits import never
from pipeline.schemas import BlockchainAddressData, BlockchainBlockData, BlockchainTransactionData
from pipeline.sources.common import ParseResult, Reject, format_error, validate_into, validation_context

if TYPE_CHECKING:
    from pipeline.config import Settings

SOURCE = "blockchair"
# Rows per listing request (`limit=100`, the most a request may ask for at the base price).
PAGE_SIZE: Final = 100
# Addresses per `dashboards/addresses` request on Bitcoin-like chains.
ADDRESS_BATCH: Final = 100

# ---------------------------------------------------------------- requests


def address_requests(chain: str, family: str, addresses: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(path, the addresses it asks for) per request for `addresses` on `chain`.

    Bitcoin-like chains take ADDRESS_BATCH addresses per `dashboards/addresses` request; Ethereum has no
    multi-address dashboard, so each address is one `dashboards/address` request.
    """
    if family == "ethereum":
        for address in addresses:
            yield f"/{chain}/dashboards/address/{address}", [address]
        return
    for i in range(0, len(addresses), ADDRESS_BATCH):
        batch = addresses[i : i + ADDRESS_BATCH]
        yield f"/{chain}/dashboards/addresses/{','.join(batch)}", batch


def row_ids(payload: Any) -> list[int]:
    """Source ids of the rows of a listing (valid or not): what keyset paging moves on."""
    data = payload.get("data") if isinstance(payload, dict) else None
    rows = data if isinstance(data, list) else []
    return [
        r["id"]
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("id"), int) and not isinstance(r.get("id"), bool)
    ]


# ---------------------------------------------------------------- errors (apis.md 1.4, 1.7)

# "A limit on number or complexity was exceeded; the IP is released after a while": back off and retry.
# 430 and 434 (the IP is blacklisted) stay with the shared rule for other 4xx: permanent.
BACKOFF_CODES: Final = frozenset({402, 435, 436, 437})


def api_error(body: Any) -> tuple[int | None, str | None]:
    """(context.code, context.error) of Blockchair's envelope, else the common error shapes."""
    context = body.get("context") if isinstance(body, dict) else None
    if isinstance(context, dict) and as_int(context.get("code")) is not None:
        return as_int(context.get("code")), as_text(context.get("error"))
    return plain_api_error(body)


def error_class(status: int, api_code: int | None, message: str | None) -> type[SourceError] | None:
    """Blockchair's own statuses: 402 and 435-437 mean "back off", except that 402 "Invalid API token"
    is a bad key, which retrying cannot fix. None leaves the plain HTTP meaning."""
    if status in BACKOFF_CODES:
        return AuthError if says_invalid_key(message) else RetriableSourceError
    return None


ERROR_RULES: Final = SourceRules(api_error=api_error, error_class=error_class)

# ---------------------------------------------------------------- client


def blockchair_client(settings: Settings, *, should_stop: Callable[[], bool] = never) -> ApiClient:
    """Blockchair's client from settings: the key travels as the `key` query parameter (the only form
    the API accepts)."""
    key = settings.BLOCKCHAIR_API_KEY
    auth = Auth.query("key", key) if key is not None and key.get_secret_value() else NO_AUTH
    return ApiClient.from_settings(
        settings,
        source=SOURCE,
        base_url=settings.BLOCKCHAIR_BASE_URL,
        auth=auth,
        requests_per_minute=settings.BLOCKCHAIR_RATE_LIMIT_PER_MINUTE,
        rules=ERROR_RULES,
        should_stop=should_stop,
    )


# ---------------------------------------------------------------- parsers


def envelope(payload: Any, endpoint: str) -> tuple[Any, dict[str, Any]]:
    """Split `{"data": ..., "context": {...}}`, refusing anything else."""
    if not isinstance(payload, Mapping) or "data" not in payload:
        raise format_error(SOURCE, endpoint, "response is not a Blockchair envelope (no 'data')")
    context = payload.get("context")
    return payload["data"], dict(context) if isinstance(context, Mapping) else {}


def chain_tip(context: Mapping[str, Any]) -> int | None:
    """The tip height from `context.state`, when the source sent a usable one."""
    state = context.get("state")
    return state if isinstance(state, int) and not isinstance(state, bool) and state >= 0 else None


def _rows(data: Any, endpoint: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping) and not data:
        return []
    raise format_error(SOURCE, endpoint, f"expected a list of rows in 'data', got {type(data).__name__}")


def _block_fields(row: Any, coin_symbol: str, family: str) -> dict[str, Any] | None:
    if not isinstance(row, Mapping):
        return None
    fields = {
        "coin_symbol": coin_symbol,
        "block_id": row.get("id"),
        "hash": row.get("hash"),
        "time": row.get("time"),
        "transaction_count": row.get("transaction_count"),
        "size": row.get("size"),
        "difficulty": row.get("difficulty"),
        "fee_total": row.get("fee_total"),
        "reward": row.get("reward"),
        "fee_total_usd": row.get("fee_total_usd"),
        "reward_usd": row.get("reward_usd"),
    }
    if family == "ethereum":
        fields |= {
            "output_total": row.get("value_total"),
            "output_total_usd": row.get("value_total_usd"),
            "gas_used": row.get("gas_used"),
            "gas_limit": row.get("gas_limit"),
            "miner": row.get("miner"),
        }
    else:
        fields |= {"output_total": row.get("output_total"), "output_total_usd": row.get("output_total_usd")}
    return fields


def parse_blocks(
    payload: Any, *, coin_symbol: str, family: str, now: datetime | None = None, endpoint: str = "/blocks"
) -> ParseResult[BlockchainBlockData]:
    """Rows of `/{chain}/blocks` as block records."""
    data, context = envelope(payload, endpoint)
    rows = _rows(data, endpoint)
    result: ParseResult[BlockchainBlockData] = ParseResult(tip=chain_tip(context), rows_seen=len(rows))
    ctx = validation_context(now, family=family)
    for row in rows:
        validate_into(result, BlockchainBlockData, row, _block_fields(row, coin_symbol, family), ctx)
    return result


def _transaction_fields(row: Mapping[str, Any], coin_symbol: str, family: str) -> dict[str, Any]:
    fields = {
        "coin_symbol": coin_symbol,
        "tx_hash": row.get("hash"),
        "block_id": row.get("block_id"),
        "source_id": row.get("id"),
        "time": row.get("time"),
        "fee": row.get("fee"),
        "fee_usd": row.get("fee_usd"),
    }
    if family == "ethereum":
        return fields | {
            "sender": row.get("sender"),
            "recipient": row.get("recipient"),
            "value": row.get("value"),
            "output_total_usd": row.get("value_usd"),
            "gas_used": row.get("gas_used"),
            "failed": row.get("failed"),
        }
    return fields | {
        "input_total": row.get("input_total"),
        "output_total": row.get("output_total"),
        "input_total_usd": row.get("input_total_usd"),
        "output_total_usd": row.get("output_total_usd"),
        "input_count": row.get("input_count"),
        "output_count": row.get("output_count"),
        "size": row.get("size"),
        "is_coinbase": row.get("is_coinbase", False),
    }


def _is_not_a_transaction(row: Mapping[str, Any]) -> bool:
    # Ethereum "synthetic_coinbase" rows (block rewards, hash null) and mempool rows (block_id -1) are
    # not confirmed transactions: skip them silently rather than reject them.
    return row.get("type") == "synthetic_coinbase" or row.get("block_id") == -1


def parse_transactions(
    payload: Any,
    *,
    coin_symbol: str,
    family: str,
    now: datetime | None = None,
    endpoint: str = "/transactions",
) -> ParseResult[BlockchainTransactionData]:
    """Rows of `/{chain}/transactions` as transaction records."""
    data, context = envelope(payload, endpoint)
    rows = _rows(data, endpoint)
    result: ParseResult[BlockchainTransactionData] = ParseResult(tip=chain_tip(context), rows_seen=len(rows))
    ctx = validation_context(now, family=family)
    for row in rows:
        if isinstance(row, Mapping) and _is_not_a_transaction(row):
            continue
        fields = _transaction_fields(row, coin_symbol, family) if isinstance(row, Mapping) else None
        validate_into(result, BlockchainTransactionData, row, fields, ctx)
    return result


def _seen(values: Iterable[Any], pick: Any) -> Any:
    present = [v for v in values if isinstance(v, str) and v]
    return pick(present) if present else None


def _address_fields(address: str, info: Mapping[str, Any], coin_symbol: str, family: str) -> dict[str, Any]:
    received, spent = (
        ("received_approximate", "spent_approximate") if family == "ethereum" else ("received", "spent")
    )
    return {
        "coin_symbol": coin_symbol,
        "address": address,
        "balance": info.get("balance"),
        "received": info.get(received),
        "spent": info.get(spent),
        "balance_usd": info.get("balance_usd"),
        "received_usd": info.get("received_usd"),
        "spent_usd": info.get("spent_usd"),
        "transaction_count": info.get("transaction_count"),
        # The timestamps are sortable text, so min/max pick the earliest and latest activity.
        "first_seen": _seen((info.get("first_seen_receiving"), info.get("first_seen_spending")), min),
        "last_seen": _seen((info.get("last_seen_receiving"), info.get("last_seen_spending")), max),
    }


def _address_entries(data: Any, endpoint: str) -> dict[str, Any]:
    """Address -> its `address` object, for both the plural and the singular dashboard."""
    if isinstance(data, list) and not data:
        return {}
    if not isinstance(data, Mapping):
        raise format_error(SOURCE, endpoint, f"expected an object in 'data', got {type(data).__name__}")
    if "addresses" in data:  # the plural dashboard; `[]` is how the API sends an empty object
        addresses = data["addresses"]
        return dict(addresses) if isinstance(addresses, Mapping) else {}
    return {key: value.get("address") if isinstance(value, Mapping) else value for key, value in data.items()}


def parse_address_dashboard(
    payload: Any,
    *,
    coin_symbol: str,
    family: str,
    requested: Iterable[str],
    now: datetime | None = None,
    endpoint: str = "/dashboards/addresses",
) -> ParseResult[BlockchainAddressData]:
    """An address dashboard as address records; a requested address the source left out is a reject."""
    data, context = envelope(payload, endpoint)
    entries = _address_entries(data, endpoint)
    result: ParseResult[BlockchainAddressData] = ParseResult(tip=chain_tip(context), rows_seen=len(entries))
    ctx = validation_context(now, family=family)
    for address in requested:
        info = entries.get(address)
        if info is None:
            result.rejects.append(Reject("address not returned by the source", {"address": address}))
            continue
        fields = _address_fields(address, info, coin_symbol, family) if isinstance(info, Mapping) else None
        validate_into(result, BlockchainAddressData, {address: info}, fields, ctx)
    return result


# ---------------------------------------------------------------- chain stats (`crypto-pipeline coins add`)

# Fields only one family's `/{chain}/stats` carries (Blockchair's docs, "Bitcoin-like" and "Ethereum-like
# blockchain stats"): account chains count internal `calls` and `uncles` and report an approximate wei
# `circulation_approximate` and a `layer_2` of tokens; UTXO chains count their `outputs`. Other Blockchair
# chains (Ripple, Stellar, Monero, Cardano, TON ...) have neither, and their rows fit neither parser.
ETHEREUM_STATS_FIELDS: Final = ("calls", "uncles", "circulation_approximate", "layer_2")
BITCOIN_STATS_FIELDS: Final = ("outputs",)
# The chains Blockchair documents as Bitcoin-like or Ethereum-like: the family of a chain whose stats
# reply shows neither mark (a reply trimmed by a future API version, say).
KNOWN_FAMILIES: Final = {
    **dict.fromkeys(
        (
            "bitcoin", "bitcoin-cash", "litecoin", "bitcoin-sv", "dogecoin", "dash", "groestlcoin",
            "zcash", "ecash", "bitcoin/testnet",
        ),
        "bitcoin",
    ),
    **dict.fromkeys(("ethereum", "ethereum/testnet"), "ethereum"),
}  # fmt: skip


def stats_path(chain: str) -> str:
    """The path of one chain's stats (request cost 1)."""
    return f"/{chain}/stats"


@dataclass(frozen=True)
class ChainStats:
    """What `/{chain}/stats` tells `coins add`: the tip, and the family its fields show (None: neither)."""

    tip: int | None
    best_block_time: str | None
    family: str | None


def family_of_stats(data: Mapping[str, Any]) -> str | None:
    """'ethereum' or 'bitcoin' from the fields of a stats reply's `data`, or None when it shows neither."""
    if any(name in data for name in ETHEREUM_STATS_FIELDS):
        return "ethereum"
    if any(name in data for name in BITCOIN_STATS_FIELDS):
        return "bitcoin"
    return None


def parse_chain_stats(payload: Any, *, endpoint: str = "/stats") -> ChainStats:
    """A `/{chain}/stats` reply: a chain's stats are an object with its best block; anything else (the
    empty `[]` the API sends when nothing matched) is refused (ResponseFormatError)."""
    data, context = envelope(payload, endpoint)
    if not isinstance(data, Mapping) or not data:
        raise format_error(SOURCE, endpoint, f"expected the chain's stats in 'data', got {data!r:.60}")
    best = data.get("best_block_height")
    tip = chain_tip(context)
    if tip is None and isinstance(best, int) and not isinstance(best, bool) and best >= 0:
        tip = best
    time = data.get("best_block_time")
    return ChainStats(
        tip=tip,
        best_block_time=time if isinstance(time, str) else None,
        family=family_of_stats(data),
    )
