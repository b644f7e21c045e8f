"""Generation of one block row and its transaction rows, for both chain families."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.simulator.detrand import fmt_date, fmt_time, hex_bits, rng_for

SAT = 100_000_000
WEI = 10**18

# Typical transfer sizes in base units, so that USD amounts look plausible per coin.
VALUE_SCALE = {"bitcoin": 1, "litecoin": 60, "bitcoin-cash": 60, "dash": 100, "dogecoin": 200_000}
_DIFFICULTY = {"bitcoin": 9.2e13, "litecoin": 7.5e7, "bitcoin-cash": 6.0e11, "dash": 1.1e8, "dogecoin": 3.0e7}
_MINERS = {
    "bitcoin": ("Foundry USA", "AntPool", "ViaBTC", "F2Pool", "MARA Pool", "SpiderPool", "Unknown"),
    "litecoin": ("ViaBTC", "F2Pool", "LitecoinPool", "Poolin", "Unknown"),
    "bitcoin-cash": ("ViaBTC", "Mining-Dutch", "Unknown"),
    "dash": ("Unknown", "AntPool", "ViaBTC"),
    "dogecoin": ("ViaBTC", "F2Pool", "Unknown"),
}


@dataclass(frozen=True)
class BlockContext:
    """Inputs that fully determine one block and its transactions."""

    chain: str
    seed: int
    height: int
    epoch: int
    tx_count: int
    ts: int
    median_ts: int
    price: float
    segwit: bool
    hash_zeros: int
    extra: str
    id_factor: int


_COINBASE_WEIGHT = 892

# One non-coinbase transaction's numeric columns, in a plain tuple because building millions of them is the
# simulator's hot loop: (size, fee, value, input_count, output_count, cdd, version, has_witness, weight,
# is_instant_lock).
BitcoinTxNumbers = tuple[int, int, int, int, int, float, int, bool, int, bool]


def _usd(amount: int, unit: int, price: float) -> float:
    return round(amount / unit * price, 4)


def _generation(chain: str, height: int) -> int:
    if chain in ("bitcoin", "bitcoin-cash"):
        return (50 * SAT) >> (height // 210_000)
    if chain == "litecoin":
        return (50 * SAT) >> (height // 840_000)
    if chain == "dogecoin":
        return 10_000 * SAT
    return 230_000_000  # dash: roughly the current miner share


def bitcoin_numbers(ctx: BlockContext) -> tuple[BitcoinTxNumbers, ...]:
    """Return the numeric columns of the non-coinbase transactions (cheap; no strings, no dicts)."""
    rnd = rng_for(ctx.seed, ctx.chain, "numbers", ctx.height, ctx.epoch).random
    scale = VALUE_SCALE[ctx.chain]
    out: list[BitcoinTxNumbers] = []
    # int(rnd() * n) is several times faster than randint in this hot loop.
    for _ in range(1, ctx.tx_count):
        size = 190 + int(rnd() * 711)
        fee = size * (1 + int(rnd() * 40))
        value = (5_000 + int(rnd() * 2 * SAT)) * scale
        if rnd() < 0.05:
            value *= 500  # occasional whale transfer
        has_witness = ctx.segwit and rnd() < 0.7
        weight = size * 4 - (size + int(rnd() * size) if has_witness else 0)
        out.append(
            (
                size,
                fee,
                value,
                1 + int(rnd() * 4),
                1 + int(rnd() * 4),
                round((value + fee) / SAT * rnd() * 30, 6),
                1 if rnd() < 0.25 else 2,
                has_witness,
                weight,
                rnd() < 0.8,
            )
        )
    return tuple(out)


def bitcoin_transactions(
    ctx: BlockContext, numbers: tuple[BitcoinTxNumbers, ...]
) -> tuple[dict[str, Any], ...]:
    """Return the /transactions rows of a Bitcoin-like block, coinbase first."""
    rng = rng_for(ctx.seed, ctx.chain, "tx-strings", ctx.height, ctx.epoch)
    day, when, usd = fmt_date(ctx.ts), fmt_time(ctx.ts), ctx.price / SAT
    base_id = ctx.height * ctx.id_factor
    fee_total = sum(n[1] for n in numbers)
    reward = _generation(ctx.chain, ctx.height) + fee_total
    coinbase = {
        "block_id": ctx.height,
        "id": base_id,
        "hash": hex_bits(rng, 256),
        "date": day,
        "time": when,
        "size": 250,
        "version": 2,
        "lock_time": 0,
        "is_coinbase": True,
        "input_count": 1,
        "output_count": 2,
        "input_total": 0,
        "input_total_usd": 0,
        "output_total": reward,
        "output_total_usd": round(reward * usd, 4),
        "fee": 0,
        "fee_usd": 0,
        "fee_per_kb": 0,
        "fee_per_kb_usd": 0,
        "cdd_total": 0,
    }
    if ctx.segwit:
        coinbase.update(weight=_COINBASE_WEIGHT, has_witness=True, fee_per_kwu=0, fee_per_kwu_usd=0)
    if ctx.extra == "dash":
        coinbase.update(is_instant_lock=False, is_special=True, special_json=None)
    # One hex pool per block, sliced per transaction: much faster than one random draw per hash.
    pool = rng.randbytes(32 * len(numbers)).hex()
    rows: list[dict[str, Any]] = [coinbase]
    for index, (size, fee, value, n_in, n_out, cdd, version, witness, weight, instant) in enumerate(
        numbers, start=1
    ):
        tx_in = value + fee
        row = {
            "block_id": ctx.height,
            "id": base_id + index,
            "hash": pool[index * 64 - 64 : index * 64],
            "date": day,
            "time": when,
            "size": size,
            "version": version,
            "lock_time": 0,
            "is_coinbase": False,
            "input_count": n_in,
            "output_count": n_out,
            "input_total": tx_in,
            "input_total_usd": round(tx_in * usd, 4),
            "output_total": value,
            "output_total_usd": round(value * usd, 4),
            "fee": fee,
            "fee_usd": round(fee * usd, 4),
            "fee_per_kb": round(fee * 1000 / size, 3),
            "fee_per_kb_usd": round(fee * 1000 / size * usd, 6),
            "cdd_total": cdd,
        }
        if ctx.segwit:
            row["weight"] = weight
            row["has_witness"] = witness
            row["fee_per_kwu"] = round(fee * 1000 / weight, 3)
            row["fee_per_kwu_usd"] = round(fee * 1000 / weight * usd, 6)
        if ctx.extra == "dash":
            row.update(is_instant_lock=instant, is_special=False, special_json=None)
        rows.append(row)
    return tuple(rows)


def bitcoin_block(ctx: BlockContext, numbers: tuple[BitcoinTxNumbers, ...]) -> dict[str, Any]:
    """Return the /blocks row of a Bitcoin-like block; totals are exact sums over its transactions."""
    rng = rng_for(ctx.seed, ctx.chain, "header", ctx.height, ctx.epoch)
    price = ctx.price
    fee_total = sum(n[1] for n in numbers)
    input_total = sum(n[2] for n in numbers) + fee_total
    output_total = sum(n[2] for n in numbers)
    size = sum(n[0] for n in numbers) + 250 + 80
    weight_total = sum(n[8] for n in numbers) + _COINBASE_WEIGHT
    generation = _generation(ctx.chain, ctx.height)
    reward = generation + fee_total
    version = 536_870_912 + rng.getrandbits(13)
    block = {
        "id": ctx.height,
        "hash": "0" * ctx.hash_zeros + hex_bits(rng, 256)[ctx.hash_zeros :],
        "date": fmt_date(ctx.ts),
        "time": fmt_time(ctx.ts),
        "median_time": fmt_time(ctx.median_ts),
        "size": size,
    }
    if ctx.segwit:
        block.update(stripped_size=size - (size * 4 - weight_total) // 3, weight=weight_total + 320)
    block.update(
        {
            "version": version,
            "version_hex": format(version, "x"),
            "version_bits": format(version, "030b"),
            "merkle_root": hex_bits(rng, 256),
            "nonce": rng.getrandbits(32),
            "bits": 386_000_000 + rng.getrandbits(20),
            "difficulty": round(_DIFFICULTY[ctx.chain] * (1 + ctx.height % 2016 / 50_000), 4),
            "chainwork": format(ctx.height * 0x1F3A5C7E9B2D4F6 + 0x100010001, "064x"),
            "coinbase_data_hex": format(ctx.height, "06x") + hex_bits(rng, 96),
            "transaction_count": ctx.tx_count,
        }
    )
    if ctx.segwit:
        block["witness_count"] = 1 + sum(1 for n in numbers if n[7])
    block.update(
        {
            "input_count": 1 + sum(n[3] for n in numbers),
            "output_count": 2 + sum(n[4] for n in numbers),
            "input_total": input_total,
            "input_total_usd": _usd(input_total, SAT, price),
            "output_total": output_total + reward,
            "output_total_usd": _usd(output_total + reward, SAT, price),
            "fee_total": fee_total,
            "fee_total_usd": _usd(fee_total, SAT, price),
            "fee_per_kb": round(fee_total * 1000 / size, 3),
            "fee_per_kb_usd": _usd(fee_total * 1000 // size, SAT, price),
        }
    )
    if ctx.segwit:
        block["fee_per_kwu"] = round(fee_total * 1000 / weight_total, 3)
        block["fee_per_kwu_usd"] = _usd(fee_total * 1000 // weight_total, SAT, price)
    block.update(
        {
            "cdd_total": round(sum(n[5] for n in numbers), 6),
            "generation": generation,
            "generation_usd": _usd(generation, SAT, price),
            "reward": reward,
            "reward_usd": _usd(reward, SAT, price),
            "guessed_miner": rng.choice(_MINERS[ctx.chain]),
        }
    )
    if ctx.extra == "aux":
        block["is_aux"] = rng.random() < 0.9
    elif ctx.extra == "dash":
        cbtx = {"version": 2, "height": ctx.height, "merkleRootMNList": hex_bits(rng, 256)}
        block["cbtx"] = json.dumps(cbtx)
    return block
