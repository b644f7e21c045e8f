"""Generation of Ethereum block rows and transaction rows."""

from __future__ import annotations

from typing import Any

from pipeline.simulator.blockgen import WEI, BlockContext
from pipeline.simulator.detrand import fmt_date, fmt_time, hex_bits, rng_for

_GAS_LIMITS = (21_000, 21_000, 60_000, 120_000, 250_000)
_V_VALUES = ("25", "26", "0", "1")
_MERGE_HEIGHT = 15_537_394
_GENERATION = 2 * WEI
_HEX_BYTES_PER_TX = 168  # hash 32 + sender 20 + recipient 20 + input 32 + r 32 + s 32

# One transaction's numeric columns: (gas_limit, gas_used, gas_price, value, failed).
EthereumTxNumbers = tuple[int, int, int, int, bool]


def _value(choice: float, bits: int) -> int:
    if choice < 0.3:
        return 0  # contract calls without ETH: the real API sends "0"
    if choice < 0.4:
        return 20 * WEI + bits % (5_000 * WEI)  # above 2**64 wei (about 18.4 ETH)
    return 10**12 + bits % (15 * WEI)


def ethereum_numbers(ctx: BlockContext) -> tuple[EthereumTxNumbers, ...]:
    """Return (gas_limit, gas_used, gas_price, value, failed) per transaction."""
    rng = rng_for(ctx.seed, ctx.chain, "numbers", ctx.height, ctx.epoch)
    rnd = rng.random
    out: list[EthereumTxNumbers] = []
    for _ in range(ctx.tx_count):
        gas_limit = _GAS_LIMITS[int(rnd() * len(_GAS_LIMITS))]
        gas_used = gas_limit if gas_limit == 21_000 else 21_000 + int(rnd() * (gas_limit - 21_000))
        gas_price = (2 + int(rnd() * 59)) * 10**9 + rng.getrandbits(29)
        out.append((gas_limit, gas_used, gas_price, _value(rnd(), rng.getrandbits(80)), rnd() < 0.03))
    return tuple(out)


def ethereum_transactions(
    ctx: BlockContext, numbers: tuple[EthereumTxNumbers, ...]
) -> tuple[dict[str, Any], ...]:
    """Return the /transactions rows of an Ethereum block (wei amounts as decimal strings)."""
    rng = rng_for(ctx.seed, ctx.chain, "tx-strings", ctx.height, ctx.epoch)
    rnd = rng.random
    day, when, usd = fmt_date(ctx.ts), fmt_time(ctx.ts), ctx.price / WEI
    base_id = ctx.height * ctx.id_factor
    # One hex pool per block, sliced per field: much faster than one random draw per field.
    pool = rng.randbytes(_HEX_BYTES_PER_TX * len(numbers)).hex()
    rows: list[dict[str, Any]] = []
    for index, (gas_limit, gas_used, gas_price, value, failed) in enumerate(numbers):
        fee = gas_used * gas_price
        value_usd = round(value * usd, 4)
        at = index * _HEX_BYTES_PER_TX * 2
        rows.append(
            {
                "block_id": ctx.height,
                "id": base_id + index,
                "index": index,
                "hash": "0x" + pool[at : at + 64],
                "date": day,
                "time": when,
                "failed": failed,
                "type": "call",
                "sender": "0x" + pool[at + 64 : at + 104],
                "recipient": "0x" + pool[at + 104 : at + 144],
                "call_count": 1,
                "value": str(value),
                "value_usd": value_usd,
                "internal_value": str(value),
                "internal_value_usd": value_usd,
                "fee": str(fee),
                "fee_usd": round(fee * usd, 4),
                "gas_used": gas_used,
                "gas_limit": gas_limit,
                "gas_price": gas_price,
                "input_hex": "" if gas_limit == 21_000 else "a9059cbb" + pool[at + 144 : at + 208],
                "nonce": str(int(rnd() * 5000)),
                "v": _V_VALUES[int(rnd() * 4)],
                "r": pool[at + 208 : at + 272],
                "s": pool[at + 272 : at + 336],
            }
        )
    return tuple(rows)


def _usd(wei: int, price: float) -> float:
    return round(wei / WEI * price, 4)


def ethereum_block(ctx: BlockContext, numbers: tuple[EthereumTxNumbers, ...]) -> dict[str, Any]:
    """Return the /blocks row of an Ethereum block; totals are exact sums over its transactions."""
    rng = rng_for(ctx.seed, ctx.chain, "header", ctx.height, ctx.epoch)
    price = ctx.price
    gas_total = sum(n[1] for n in numbers)
    fee_total = sum(n[1] * n[2] for n in numbers)
    value_total = sum(n[3] for n in numbers)
    size = 540 + sum(110 if n[0] == 21_000 else 178 for n in numbers)
    reward = _GENERATION + fee_total
    return {
        "id": ctx.height,
        "hash": "0x" + hex_bits(rng, 256),
        "date": fmt_date(ctx.ts),
        "time": fmt_time(ctx.ts),
        "size": size,
        "miner": "0x" + hex_bits(rng, 160),
        "extra_data_hex": hex_bits(rng, 64),
        "difficulty": 0 if ctx.height >= _MERGE_HEIGHT else 2_400_000_000_000_000 + rng.getrandbits(40),
        "gas_used": gas_total,
        "gas_limit": max(30_000_000, gas_total),
        "logs_bloom": hex_bits(rng, 2048),
        "mix_hash": hex_bits(rng, 256),
        "nonce": str(rng.getrandbits(64)),
        "receipts_root": hex_bits(rng, 256),
        "sha3_uncles": hex_bits(rng, 256),
        "state_root": hex_bits(rng, 256),
        "total_difficulty": "58750003716598352816469",
        "transactions_root": hex_bits(rng, 256),
        "uncle_count": 0,
        "transaction_count": ctx.tx_count,
        "synthetic_transaction_count": 0,
        "call_count": ctx.tx_count,
        "synthetic_call_count": 0,
        "value_total": str(value_total),
        "value_total_usd": _usd(value_total, price),
        "internal_value_total": str(value_total),
        "internal_value_total_usd": _usd(value_total, price),
        "generation": str(_GENERATION),
        "generation_usd": _usd(_GENERATION, price),
        "uncle_generation": "0",
        "uncle_generation_usd": 0,
        "fee_total": str(fee_total),
        "fee_total_usd": _usd(fee_total, price),
        "reward": str(reward),
        "reward_usd": _usd(reward, price),
    }
