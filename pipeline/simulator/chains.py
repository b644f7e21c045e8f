"""Deterministic chain state: tips, reorg epochs, block times and cached block contents."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from pipeline.simulator.blockgen import (
    BitcoinTxNumbers,
    BlockContext,
    bitcoin_block,
    bitcoin_numbers,
    bitcoin_transactions,
)
from pipeline.simulator.detrand import digest_int
from pipeline.simulator.ethgen import (
    EthereumTxNumbers,
    ethereum_block,
    ethereum_numbers,
    ethereum_transactions,
)
from pipeline.simulator.market import Market, ts_day

TX_ID_FACTOR = 1_000_000

# A block's per-transaction numbers; which of the two shapes depends on the chain's family.
TxNumbers = tuple[BitcoinTxNumbers, ...] | tuple[EthereumTxNumbers, ...]
COUNT_CHUNK = 1024
TX_ROW_BUDGET = 40_000  # cached transaction rows (about 1.6 kB each)


@dataclass(frozen=True)
class ChainSpec:
    """Static properties of a simulated chain."""

    name: str
    family: str  # "bitcoin" (UTXO) or "ethereum" (account)
    interval: int  # target seconds between blocks
    segwit: bool = False
    hash_zeros: int = 0
    extra: str = ""  # chain-specific columns: "aux" (dogecoin) or "dash"


CHAINS: dict[str, ChainSpec] = {
    c.name: c
    for c in (
        ChainSpec("bitcoin", "bitcoin", 600, segwit=True, hash_zeros=19),
        ChainSpec("ethereum", "ethereum", 12),
        ChainSpec("dogecoin", "bitcoin", 60, hash_zeros=8, extra="aux"),
        ChainSpec("litecoin", "bitcoin", 150, segwit=True, hash_zeros=12),
        ChainSpec("bitcoin-cash", "bitcoin", 600, hash_zeros=16),
        ChainSpec("dash", "bitcoin", 150, hash_zeros=12, extra="dash"),
    )
}


def tx_id(height: int, index: int) -> int:
    """Return the Blockchair-style internal transaction id: monotonic in (block, index)."""
    return height * TX_ID_FACTOR + index


class ChainBook:
    """All simulated chains: tips that grow with time, reorg history and block data."""

    def __init__(
        self,
        seed: int,
        tips: dict[str, int],
        tx_per_block: tuple[int, int],
        tip_growth: bool,
        anchor_ts: int,
        clock: Callable[[], float],
        market: Market,
    ) -> None:
        self._seed = seed
        self._base = dict(tips)
        self._tx_range = tx_per_block
        self._growth = tip_growth
        self._anchor = int(anchor_ts)  # T0: the time of the block at the configured tip height
        self._clock = clock
        self._market = market
        self._lock = threading.Lock()
        self._advanced = dict.fromkeys(CHAINS, 0)
        self._reorgs: dict[str, list[tuple[int, int]]] = {name: [] for name in CHAINS}
        # Three caches: cheap numeric columns, block rows (small) and transaction rows (large).
        self._numbers = lru_cache(maxsize=512)(self._build_numbers)
        self._blocks = lru_cache(maxsize=16_384)(self._build_block)
        self._txs = lru_cache(maxsize=max(16, TX_ROW_BUDGET // max(tx_per_block[1], 1)))(self._build_txs)
        self._count = lru_cache(maxsize=262_144)(self._tx_count)
        self._prefix = lru_cache(maxsize=4096)(self._chunk_prefix)

    @property
    def anchor_ts(self) -> int:
        """Return T0, the UNIX time of the block at the configured tip height."""
        return self._anchor

    def tip(self, chain: str) -> int:
        """Return the current tip height of ``chain``.

        With tip growth, one block per chain interval has been added since T0, so the newest block
        (dated within its interval, see `block_time`) is always less than one interval away from now.
        """
        spec = CHAINS[chain]
        grown = 0
        if self._growth:
            grown = max(0, int((self._clock() - self._anchor) // spec.interval))
        return self._base[chain] + self._advanced[chain] + grown

    def tips(self) -> dict[str, int]:
        """Return every chain's tip."""
        return {name: self.tip(name) for name in CHAINS}

    def advance(self, chain: str, blocks: int) -> None:
        """Move the tip of ``chain`` forward by ``blocks``."""
        if blocks < 0:
            raise ValueError("blocks must be >= 0")
        with self._lock:
            self._advanced[chain] += blocks

    def reorg(self, chain: str, depth: int) -> None:
        """Replace the newest ``depth`` blocks at the current tip with different ones."""
        if depth < 1:
            raise ValueError("depth must be >= 1")
        with self._lock:
            self._reorgs[chain].append((self.tip(chain), depth))

    def epoch(self, chain: str, height: int) -> int:
        """Return how many reorgs replaced the block at ``height``."""
        events = self._reorgs[chain]
        if not events:
            return 0
        return sum(1 for tip, depth in events if tip - depth < height <= tip)

    def reorg_history(self) -> dict[str, list[tuple[int, int]]]:
        """Return (tip, depth) of every reorg per chain."""
        return {name: list(events) for name, events in self._reorgs.items()}

    def block_time(self, chain: str, height: int) -> int:
        """Return the block's UNIX time: ~interval apart, jittered, strictly increasing.

        Block ``tips[chain] + k`` is dated in ``[T0 + k * interval, T0 + (k + 1) * interval)``; the
        block at the configured tip itself is dated exactly T0.
        """
        spec = CHAINS[chain]
        offset = height - self._base[chain]
        jitter = digest_int(self._seed, chain, "time", height) % spec.interval if offset else 0
        return self._anchor + offset * spec.interval + jitter

    def _tx_count(self, chain: str, height: int, epoch: int) -> int:
        lo, hi = self._tx_range
        n = lo + digest_int(self._seed, chain, "ntx", height, epoch) % (hi - lo + 1)
        # Every UTXO block has at least its coinbase transaction.
        return max(n, 1) if CHAINS[chain].family == "bitcoin" else n

    def tx_count(self, chain: str, height: int) -> int:
        """Return the number of transactions in the block at ``height``."""
        return self._count(chain, height, self.epoch(chain, height))

    def _chunk_prefix(self, chain: str, chunk: int, _reorg_key: int) -> tuple[int, ...]:
        base = chunk * COUNT_CHUNK
        prefix = [0]
        for height in range(base, base + COUNT_CHUNK):
            prefix.append(prefix[-1] + self.tx_count(chain, height))
        return tuple(prefix)

    def count_txs(self, chain: str, lo: int, hi: int) -> int:
        """Return the number of transactions in blocks ``lo..hi`` (inclusive), using cached chunk sums."""
        if hi < lo:
            return 0
        tx_lo, tx_hi = self._tx_range
        if tx_lo == tx_hi:
            return (hi - lo + 1) * self._tx_count(chain, lo, 0)
        total = 0
        for chunk in range(lo // COUNT_CHUNK, hi // COUNT_CHUNK + 1):
            base = chunk * COUNT_CHUNK
            end = base + COUNT_CHUNK - 1
            # The overlapping reorgs only ever grow, so their count identifies this chunk's epochs.
            key = sum(1 for tip, depth in self._reorgs[chain] if tip - depth < end and tip >= base)
            prefix = self._prefix(chain, chunk, key)
            total += prefix[min(hi, end) - base + 1] - prefix[max(lo, base) - base]
        return total

    def mean_tx_count(self, chain: str) -> float:
        """Return the expected number of transactions per block."""
        lo, hi = self._tx_range
        mean = (lo + hi) / 2
        return max(mean, 1.0) if CHAINS[chain].family == "bitcoin" else mean

    def _context(self, chain: str, height: int, epoch: int) -> BlockContext:
        spec = CHAINS[chain]
        ts = self.block_time(chain, height)
        return BlockContext(
            chain=chain,
            seed=self._seed,
            height=height,
            epoch=epoch,
            tx_count=self._count(chain, height, epoch),
            ts=ts,
            median_ts=self.block_time(chain, max(height - 5, 0)),
            price=self._market.price_on(chain, ts_day(ts)),
            segwit=spec.segwit,
            hash_zeros=spec.hash_zeros,
            extra=spec.extra,
            id_factor=TX_ID_FACTOR,
        )

    def _build_numbers(self, chain: str, height: int, epoch: int) -> tuple[BlockContext, TxNumbers]:
        ctx = self._context(chain, height, epoch)
        if CHAINS[chain].family == "ethereum":
            return ctx, ethereum_numbers(ctx)
        return ctx, bitcoin_numbers(ctx)

    # The family decides the shape of the cached numbers (see _build_numbers), hence the casts below.
    def _build_block(self, chain: str, height: int, epoch: int) -> dict[str, Any]:
        ctx, numbers = self._numbers(chain, height, epoch)
        if CHAINS[chain].family == "ethereum":
            return ethereum_block(ctx, cast(tuple[EthereumTxNumbers, ...], numbers))
        return bitcoin_block(ctx, cast(tuple[BitcoinTxNumbers, ...], numbers))

    def _build_txs(self, chain: str, height: int, epoch: int) -> tuple[dict[str, Any], ...]:
        ctx, numbers = self._numbers(chain, height, epoch)
        if CHAINS[chain].family == "ethereum":
            return ethereum_transactions(ctx, cast(tuple[EthereumTxNumbers, ...], numbers))
        return bitcoin_transactions(ctx, cast(tuple[BitcoinTxNumbers, ...], numbers))

    def block(self, chain: str, height: int) -> dict[str, Any]:
        """Return the /blocks row for ``height`` (shared; callers must not mutate it)."""
        return self._blocks(chain, height, self.epoch(chain, height))

    def transactions(self, chain: str, height: int) -> tuple[dict[str, Any], ...]:
        """Return the /transactions rows of block ``height`` in index order (shared, read-only)."""
        return self._txs(chain, height, self.epoch(chain, height))
