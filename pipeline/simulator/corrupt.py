"""Payload corruption for the data-quality faults: only the first record is damaged."""

from __future__ import annotations

import copy
from typing import Any

# (missing key, wrong-type key, wrong value) per Blockchair endpoint kind.
_BC_DAMAGE: dict[str, tuple[str, str, Any]] = {
    "blocks": ("hash", "id", "abc"),
    "transactions": ("hash", "fee", "not-a-number"),
    "address": ("balance", "balance", {"x": 1}),
    "addresses": ("balance", "balance", {"x": 1}),
    "stats": ("best_block_height", "best_block_height", "abc"),
}


def _damage(record: dict[str, Any], kind: str, endpoint: str) -> dict[str, Any]:
    missing, wrong, value = _BC_DAMAGE[endpoint]
    record = dict(record)  # rows are shared with the block cache: never edit them in place
    if kind == "missing_field":
        record.pop(missing, None)
    else:
        record[wrong] = value
    return record


def _blockchair(kind: str, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    payload = dict(payload)
    data = payload.get("data")
    if kind == "empty_data":
        payload["data"] = []
        return payload
    if isinstance(data, list) and data:
        payload["data"] = [_damage(data[0], kind, endpoint), *data[1:]]
    elif isinstance(data, dict) and endpoint == "stats":
        payload["data"] = _damage(data, kind, endpoint)
    elif isinstance(data, dict) and endpoint == "addresses":
        entries = dict(data["addresses"])
        first = next(iter(entries))
        entries[first] = _damage(entries[first], kind, endpoint)
        payload["data"] = {**data, "addresses": entries}
    elif isinstance(data, dict) and data and endpoint == "address":
        data = dict(data)
        first = next(iter(data))
        data[first] = {**data[first], "address": _damage(data[first]["address"], kind, endpoint)}
        payload["data"] = data
    return payload


def _coingecko(kind: str, endpoint: str, payload: Any) -> Any:
    payload = copy.deepcopy(payload)  # CoinGecko bodies are small and built per request
    if endpoint == "market_chart_range":
        if kind == "empty_data":
            return {key: [] for key in payload}
        if payload["prices"]:
            ms = payload["prices"][0][0]
            payload["prices"][0] = [ms] if kind == "missing_field" else [ms, "n/a"]
    elif endpoint == "history":
        if kind == "empty_data":
            payload.pop("market_data", None)
        elif "market_data" in payload:
            price = payload["market_data"]["current_price"]
            if kind == "missing_field":
                price.pop("usd", None)
            else:
                price["usd"] = "n/a"
    elif endpoint == "coin":
        if kind == "empty_data":
            return {}
        if kind == "missing_field":
            payload.pop("name", None)
        else:
            payload["name"] = 42
    elif endpoint == "simple_price":
        if kind == "empty_data":
            return {}
        first = next((entry for entry in payload.values() if entry), None)
        if first is not None:
            if kind == "missing_field":
                first.pop("usd", None)
            else:
                first["usd"] = "n/a"
    return payload


def corrupt(kind: str, api: str, endpoint: str, payload: Any) -> Any:
    """Return a damaged copy of ``payload`` for the fault ``kind`` (missing_field, wrong_type, empty_data)."""
    if api == "blockchair" and endpoint in _BC_DAMAGE and isinstance(payload, dict):
        return _blockchair(kind, endpoint, payload)
    if api == "coingecko" and isinstance(payload, dict):
        return _coingecko(kind, endpoint, payload)
    return payload
