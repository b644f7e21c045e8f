"""Blockchair endpoints: stats, blocks, transactions and address dashboards."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.simulator import addresses
from pipeline.simulator.blockgen import VALUE_SCALE
from pipeline.simulator.chains import CHAINS, TX_ID_FACTOR, ChainBook
from pipeline.simulator.detrand import fmt_time
from pipeline.simulator.envelope import Reply, bc_context, bc_error
from pipeline.simulator.market import Market
from pipeline.simulator.query import QueryError, RowQuery, parse_row_query, request_cost

EXACT_COUNT_SPAN = 20_000  # beyond this many blocks, total_rows is an estimate (as costly queries are)
MAX_SCAN = 100_000
MAX_DASHBOARD_ADDRESSES = 100


class BlockchairApi:
    """Answers Blockchair requests from the deterministic chain book."""

    def __init__(
        self, seed: int, book: ChainBook, market: Market, anchor_ts: int, now: Callable[[], float]
    ) -> None:
        self._seed = seed
        self._book = book
        self._market = market
        self._anchor_ts = anchor_ts
        self._now = now

    def price(self, chain: str) -> float:
        """Return today's USD price of the chain's coin, as `market_price_usd` shows it."""
        values = self._market.value_at(chain, self._now())
        return round(values[0], 2) if values else 0.0

    def handle(self, kind: str, chain: str, parts: list[str], params: dict[str, str]) -> Reply:
        """Route one request; ``parts`` is the path after the chain name."""
        if chain not in CHAINS or kind == "unknown":
            return bc_error(404)
        started = time.perf_counter()
        try:
            if kind == "stats":
                return self._stats(chain, started)
            if kind == "blocks":
                return self._blocks(chain, params, started)
            if kind == "transactions":
                return self._transactions(chain, params, started)
            return self._dashboard(kind, chain, parts[-1], params, started)
        except QueryError as exc:
            return bc_error(400, str(exc))

    def _ok(self, data: Any, started: float, chain: str, tip: int, **fields: Any) -> Reply:
        fields = {**fields, "state": tip, "market_price_usd": self.price(chain)}
        if chain == "ethereum":
            fields["state_layer_2"] = tip - 3
        return Reply(200, {"data": data, "context": bc_context(started, **fields)})

    def _stats(self, chain: str, started: float) -> Reply:
        book, tip = self._book, self._book.tip(chain)
        spec = CHAINS[chain]
        best = book.block(chain, tip)
        price = self.price(chain)
        per_day = 86_400 // spec.interval
        avg = sum(book.tx_count(chain, h) for h in range(max(tip - 99, 0), tip + 1)) / min(tip + 1, 100)
        data = {
            "blocks": tip + 1,
            "transactions": int((tip + 1) * avg),
            "outputs": int((tip + 1) * avg * 2.4),
            "circulation": (tip + 1) * 5 * 10**8,
            "blocks_24h": per_day,
            "transactions_24h": int(per_day * avg),
            "difficulty": best["difficulty"],
            "volume_24h": int(per_day * avg) * 10**9,
            "mempool_transactions": 1000 + tip % 5000,
            "mempool_size": 400_000 + tip % 100_000,
            "mempool_tps": 3.2,
            "mempool_total_fee_usd": 1234.5,
            "mempool_outputs": 2500 + tip % 5000,
            "best_block_height": tip,
            "best_block_hash": best["hash"],
            "best_block_time": best["time"],
            "blockchain_size": (tip + 1) * 700_000,
            "average_transaction_fee_24h": 2500,
            "median_transaction_fee_24h": 1200,
            "inflation_24h": 0,
            "cdd_24h": 12345.678,
            "largest_transaction_24h": {"hash": best["hash"], "value_usd": 1.5e7},
            "hashrate_24h": str(10**18 + tip),
            "inflation_usd_24h": 0,
            "average_transaction_fee_usd_24h": 1.2,
            "median_transaction_fee_usd_24h": 0.6,
            "market_price_usd": price,
            "market_price_btc": round(price / max(self.price("bitcoin"), 1e-9), 8),
            "market_price_usd_change_24h_percentage": 0.81,
            "market_cap_usd": int(price * 1e7),
            "market_dominance_percentage": 1.0,
            "suggested_transaction_fee_per_byte_sat": 3,
            "hodling_addresses": 50_000_000 + tip % 1_000_000,
        }
        if spec.family == "ethereum":
            # Ethereum-like stats (Blockchair's docs): no UTXO counts; calls, uncles, approximate wei.
            for name in ("outputs", "circulation", "mempool_outputs"):
                del data[name]
            del data["suggested_transaction_fee_per_byte_sat"]
            data |= {
                "circulation_approximate": str((tip + 1) * 5 * 10**18),
                "uncles": tip // 20,
                "uncles_24h": per_day // 20,
                "calls": int((tip + 1) * avg * 3),
                "mempool_median_gas_price": 20_000_000_000,
                "layer_2": {"erc_20": {"tokens": 1000, "transactions": (tip + 1) * 2}},
            }
        if spec.family == "bitcoin":
            best_ts = book.block_time(chain, tip)
            retarget = best_ts + (2016 - tip % 2016) * spec.interval
            data["next_retarget_time_estimate"] = fmt_time(retarget)
            data["next_difficulty_estimate"] = int(best["difficulty"] * 1.01)
        return self._ok(data, started, chain, tip)

    def _blocks(self, chain: str, params: dict[str, str], started: float) -> Reply:
        query = parse_row_query(params, {"id"}, {"id"})
        tip = self._book.tip(chain)
        lo, hi = query.bounds("id")
        lo, hi = max(lo, 0), min(hi, tip)
        total = max(0, hi - lo + 1)
        if query.descending:
            first = hi - query.offset
            heights = range(first, max(first - query.limit, lo - 1), -1)
        else:
            first = lo + query.offset
            heights = range(first, min(first + query.limit, hi + 1))
        rows = [self._book.block(chain, h) for h in heights]
        return self._page(rows, total, query, started, chain, tip, 2)

    def _page(
        self,
        rows: list[dict[str, Any]],
        total: int,
        query: RowQuery,
        started: float,
        chain: str,
        tip: int,
        base: float,
    ) -> Reply:
        return self._ok(
            rows,
            started,
            chain,
            tip,
            limit=query.limit,
            offset=query.offset,
            rows=len(rows),
            total_rows=total,
            request_cost=request_cost(base, query),
        )

    def _tx_slice(self, chain: str, height: int, id_lo: int, id_hi: int) -> tuple[int, int]:
        """Return the inclusive index range of ``height``'s transactions inside [id_lo, id_hi]."""
        base = height * TX_ID_FACTOR
        return max(0, id_lo - base), min(self._book.tx_count(chain, height) - 1, id_hi - base)

    def _transactions(self, chain: str, params: dict[str, str], started: float) -> Reply:
        query = parse_row_query(params, {"block_id", "id"}, {"id", "block_id"})
        tip = self._book.tip(chain)
        id_lo, id_hi = query.bounds("id")
        b_lo, b_hi = query.bounds("block_id")
        b_lo = max(b_lo, 0, id_lo // TX_ID_FACTOR)
        b_hi = min(b_hi, tip, id_hi // TX_ID_FACTOR)
        heights = range(b_hi, b_lo - 1, -1) if query.descending else range(b_lo, b_hi + 1)
        skip = query.offset
        rows: list[dict[str, Any]] = []
        for scanned, height in enumerate(heights):
            if len(rows) >= query.limit or scanned >= MAX_SCAN:
                break
            first, last = self._tx_slice(chain, height, id_lo, id_hi)
            count = last - first + 1
            if count <= 0:
                continue
            if skip >= count:
                skip -= count  # offsets are skipped by count, without generating the block
                continue
            txs = self._book.transactions(chain, height)[first : last + 1]
            if query.descending:
                txs = txs[::-1]
            take = txs[skip : skip + query.limit - len(rows)]
            skip = 0
            rows.extend(take)
        total = self._total_txs(chain, b_lo, b_hi, id_lo, id_hi)
        return self._page(rows, total, query, started, chain, tip, 5)

    def _total_txs(self, chain: str, b_lo: int, b_hi: int, id_lo: int, id_hi: int) -> int:
        if b_hi < b_lo:
            return 0
        if b_hi - b_lo + 1 > EXACT_COUNT_SPAN:
            return int((b_hi - b_lo + 1) * self._book.mean_tx_count(chain))
        total = self._book.count_txs(chain, b_lo, b_hi)
        # An id filter can cut into the first and last block only.
        for height in {b_lo, b_hi}:
            first, last = self._tx_slice(chain, height, id_lo, id_hi)
            total -= self._book.tx_count(chain, height) - max(0, last - first + 1)
        return total

    def _dashboard(self, kind: str, chain: str, raw: str, params: dict[str, str], started: float) -> Reply:
        spec = CHAINS[chain]
        tip = self._book.tip(chain)
        limits = _parse_limits(params.get("limit", "100"))
        price = self.price(chain)
        if kind == "addresses":
            if spec.family != "bitcoin":
                return bc_error(400, f"This endpoint is not available for {chain}")
            wanted = list(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
            if len(wanted) > MAX_DASHBOARD_ADDRESSES:
                return bc_error(400, f"Maximum number of addresses is {MAX_DASHBOARD_ADDRESSES}")
        else:
            wanted = [raw]
        # The multi-address dashboard always lists transaction objects.
        details = kind == "addresses" or params.get("transaction_details", "false").lower() == "true"
        entries = {a: self._address_entry(chain, a, price, limits, details) for a in wanted}
        found = {a: e for a, e in entries.items() if e is not None}
        cost = round(1 + 0.1 * max(len(wanted) - 1, 0), 4)
        limit: str | None = f"{limits[0]},{limits[1]}"
        offset: str | None = "0,0"
        if spec.family == "ethereum":
            limit = offset = None  # the real API varies here; clients must accept null
        data: Any = []
        if found and kind == "addresses":
            data = {
                "set": addresses.address_set(found, price),
                "addresses": {a: e["address"] for a, e in found.items()},
                "transactions": [{**t, "address": a} for a, e in found.items() for t in e["transactions"]],
                "utxo": [{**u, "address": a} for a, e in found.items() for u in e["utxo"]],
            }
        elif found:
            data = found
        return self._ok(
            data, started, chain, tip, limit=limit, offset=offset, results=len(found), request_cost=cost
        )

    def _address_entry(
        self, chain: str, address: str, price: float, limits: tuple[int, int], details: bool
    ) -> dict[str, Any] | None:
        if CHAINS[chain].family == "ethereum":
            if not addresses.is_ethereum_address(address):
                return None
            return addresses.ethereum_address(self._seed, address, self._anchor_ts, price, limits[0])
        if not addresses.is_bitcoin_address(address):
            return None
        entry = addresses.bitcoin_address(
            self._seed, chain, address, self._anchor_ts, price, VALUE_SCALE[chain], limits
        )
        if not details:
            entry["transactions"] = [t["hash"] for t in entry["transactions"]]
        return entry


def _parse_limits(text: str) -> tuple[int, int]:
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise QueryError(f"Invalid limit: {text!r}") from None
    tx_limit, utxo_limit = (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    if not (0 <= tx_limit <= 10_000 and 0 <= utxo_limit <= 10_000):
        raise QueryError("Limit should be between 0 and 10000")
    return tx_limit, utxo_limit
