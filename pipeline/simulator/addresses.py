"""Deterministic address dashboards: any plausible address gets stable balances."""

from __future__ import annotations

import re
from typing import Any

from pipeline.simulator.blockgen import SAT, WEI
from pipeline.simulator.detrand import fmt_time, hex_bits, rng_for

_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{25,35}")
_BECH32 = re.compile(r"(bc|ltc|tb|tltc)1[02-9ac-hj-np-z]{8,87}")
_CASHADDR = re.compile(r"(bitcoincash:)?[qp][02-9ac-hj-np-z]{41}")
_ETH = re.compile(r"0x[0-9a-fA-F]{40}")
_SCRIPT_FIRST = set("3M29A7")  # first characters of P2SH addresses on the supported chains
DAY = 86_400


def is_bitcoin_address(address: str) -> bool:
    """Tell whether ``address`` looks like a base58, bech32 or cashaddr address."""
    return any(p.fullmatch(address) for p in (_BASE58, _BECH32, _CASHADDR))


def is_ethereum_address(address: str) -> bool:
    """Tell whether ``address`` is 0x followed by 40 hex digits."""
    return _ETH.fullmatch(address) is not None


def _script(address: str, rng_hex: str) -> tuple[str, str]:
    body = address.split(":")[-1]
    if _BECH32.fullmatch(address):
        witness = body.split("1", 1)[1]
        if witness.startswith("p"):
            return "witness_v1_taproot", "5120" + rng_hex[:64]
        if len(address) > 50:
            return "witness_v0_scripthash", "0020" + rng_hex[:64]
        return "witness_v0_keyhash", "0014" + rng_hex[:40]
    if body[0] in _SCRIPT_FIRST or body[0] == "p":
        return "scripthash", "a914" + rng_hex[:40] + "87"
    return "pubkeyhash", "76a914" + rng_hex[:40] + "88ac"


def _split(total: int, parts: int, rng: Any) -> list[int]:
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    edges = [0, *cuts, total]
    return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def bitcoin_address(
    seed: int, chain: str, address: str, now_ts: int, price: float, scale: int, limits: tuple[int, int]
) -> dict[str, Any]:
    """Return {address, transactions (detailed objects), utxo} for a Bitcoin-like address."""
    rng = rng_for(seed, chain, "address", address)
    received = rng.randint(10_000, 5 * SAT) * scale
    mode = rng.random()
    # A quarter never spent, a quarter emptied, the rest partly spent.
    spent = 0 if mode < 0.25 else received if mode < 0.5 else rng.randint(1, received - 1)
    balance = received - spent
    output_count = rng.randint(1, 40)
    unspent = 0 if balance == 0 else min(rng.randint(1, output_count), balance)
    spend_count = 0 if spent == 0 else rng.randint(1, output_count)
    first_recv = now_ts - rng.randint(30, 3000) * DAY
    last_recv = first_recv + rng.randint(0, (now_ts - first_recv) // 2)
    first_spend = None if spent == 0 else first_recv + rng.randint(1, DAY * 10)
    last_spend = None if first_spend is None else max(first_spend, last_recv - rng.randint(0, DAY))
    kind, script_hex = _script(address, hex_bits(rng, 256))
    tx_count = output_count + spend_count
    txs = []
    for _ in range(min(tx_count, limits[0])):
        change = rng.randint(-received // 4, received // 2)
        when = rng.randint(first_recv, max(first_recv, last_recv))
        txs.append(
            {
                "block_id": rng.randint(100_000, 800_000),
                "hash": hex_bits(rng, 256),
                "time": fmt_time(when),
                "balance_change": change,
            }
        )
    values = _split(balance, unspent, rng) if unspent else []
    utxo = [
        {
            "block_id": rng.randint(100_000, 800_000),
            "transaction_hash": hex_bits(rng, 256),
            "index": rng.randint(0, 3),
            "value": value,
        }
        for value in values[: limits[1]]
    ]
    info = {
        "type": kind,
        "script_hex": script_hex,
        "balance": balance,
        "balance_usd": round(balance / SAT * price, 4),
        "received": received,
        "received_usd": round(received / SAT * price, 4),
        "spent": spent,
        "spent_usd": round(spent / SAT * price, 4),
        "output_count": output_count,
        "unspent_output_count": unspent,
        "first_seen_receiving": fmt_time(first_recv),
        "last_seen_receiving": fmt_time(last_recv),
        "first_seen_spending": None if first_spend is None else fmt_time(first_spend),
        "last_seen_spending": None if last_spend is None else fmt_time(last_spend),
        "scripthash_type": None,
        "transaction_count": tx_count,
    }
    return {"address": info, "transactions": txs, "utxo": utxo}


def address_set(entries: dict[str, dict[str, Any]], price: float) -> dict[str, Any]:
    """Return the `set` totals of the multi-address dashboard."""
    infos = [e["address"] for e in entries.values()]
    balance = sum(i["balance"] for i in infos)

    def _pick(key: str, fn: Any) -> str | None:
        seen = [i[key] for i in infos if i[key] is not None]
        return fn(seen) if seen else None

    return {
        "address_count": len(infos),
        "balance": balance,
        "balance_usd": round(balance / SAT * price, 4),
        "received": sum(i["received"] for i in infos),
        "spent": sum(i["spent"] for i in infos),
        "output_count": sum(i["output_count"] for i in infos),
        "unspent_output_count": sum(i["unspent_output_count"] for i in infos),
        "first_seen_receiving": _pick("first_seen_receiving", min),
        "last_seen_receiving": _pick("last_seen_receiving", max),
        "first_seen_spending": _pick("first_seen_spending", min),
        "last_seen_spending": _pick("last_seen_spending", max),
        "transaction_count": sum(i["transaction_count"] for i in infos),
    }


def ethereum_address(seed: int, address: str, now_ts: int, price: float, limit: int) -> dict[str, Any]:
    """Return the dashboard entry {address, calls} for an Ethereum address."""
    rng = rng_for(seed, "ethereum", "address", address.lower())
    balance = rng.randint(0, 40 * WEI) if rng.random() < 0.8 else rng.randint(20 * WEI, 90_000 * WEI)
    spent = 0 if rng.random() < 0.2 else rng.randint(1, 200 * WEI)
    fees = rng.randint(10**15, 10**18)
    received = balance + spent + fees
    recv_calls = rng.randint(1, 300)
    spend_calls = 0 if spent == 0 else rng.randint(1, 300)
    first_recv = now_ts - rng.randint(30, 2500) * DAY
    last_recv = first_recv + rng.randint(0, (now_ts - first_recv) // 2)

    def _approx(wei: int) -> str:
        # The real API rounds these totals; the balance stays exact.
        return str(round(wei, -12))

    calls = []
    for _ in range(min(recv_calls + spend_calls, limit)):
        value = rng.randint(0, 5 * WEI)
        calls.append(
            {
                "block_id": rng.randint(15_000_000, 20_900_000),
                "transaction_hash": "0x" + hex_bits(rng, 256),
                "index": "0",
                "time": fmt_time(rng.randint(first_recv, now_ts)),
                "sender": "0x" + hex_bits(rng, 160),
                "recipient": address.lower(),
                # The docs' example has this wei amount as a JSON number, unlike the other wei fields.
                "value": value,
                "value_usd": round(value / WEI * price, 4),
                "transferred": True,
            }
        )
    info = {
        "type": "account",
        "contract_code_hex": None,
        "contract_created": None,
        "contract_destroyed": None,
        "balance": str(balance),
        "balance_usd": round(balance / WEI * price, 4),
        "received_approximate": _approx(received),
        "received_usd": round(received / WEI * price, 4),
        "spent_approximate": _approx(spent),
        "spent_usd": round(spent / WEI * price, 4),
        "fees_approximate": _approx(fees),
        "fees_usd": round(fees / WEI * price, 4),
        "receiving_call_count": recv_calls,
        "spending_call_count": spend_calls,
        "call_count": recv_calls + spend_calls,
        "transaction_count": spend_calls + recv_calls // 2 + 1,
        "first_seen_receiving": fmt_time(first_recv),
        "last_seen_receiving": fmt_time(last_recv),
        "first_seen_spending": None if spend_calls == 0 else fmt_time(first_recv + DAY),
        "last_seen_spending": None if spend_calls == 0 else fmt_time(last_recv),
    }
    return {"address": info, "calls": calls}
