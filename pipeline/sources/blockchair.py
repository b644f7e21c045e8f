"""Parse Blockchair responses into validated records.

Quirks handled here (apis.md 1.2-1.5): `data` is a list for row queries, a dict keyed by the identifier
as sent for dashboards, and an empty list `[]` when nothing matched; `context.limit` may be an int, a
string ("100,100") or null and is never relied on; `context.state` is the chain tip. Bitcoin-like rows
carry satoshi integers, Ethereum rows carry wei as decimal strings, both kept exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline.schemas import BlockchainAddressData, BlockchainBlockData, BlockchainTransactionData
from pipeline.sources.common import ParseResult, Reject, format_error, validate_into, validation_context

SOURCE = "blockchair"


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
