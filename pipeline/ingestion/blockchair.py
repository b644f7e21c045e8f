"""Blockchair ingestor: blocks, transactions and watched addresses of every chain in `coin_metadata`.

Request budget: listings use `limit=100` and page with a filter on `id` pinned to the tip seen on the first
page (`id(a..tip)`), never deep offsets, so n new blocks cost about n/100 requests. Every block run
re-reads the newest `REORG_DEPTH` blocks and replaces any whose hash changed (a reorganisation), dropping
the orphaned blocks' transactions so that the transaction job fetches the new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, TypeVar

from pydantic import BaseModel

from pipeline.errors import ResponseFormatError
from pipeline.http.client import ApiClient
from pipeline.ingestion.base import Ingestor
from pipeline.ingestion.units import IngestionResult, RunSlice, RunTally
from pipeline.lazy import lazy
from pipeline.ranges import contiguous_ranges
from pipeline.schemas import BlockchainBlockData, BlockchainTransactionData, CoinMetadataData
from pipeline.services.quality import apply_findings, block_findings, check_transactions
from pipeline.sources.blockchair import (
    PAGE_SIZE,
    address_requests,
    blockchair_client,
    parse_address_dashboard,
    parse_blocks,
    parse_transactions,
    row_ids,
)
from pipeline.sources.common import ParseResult
from pipeline.sources.pagination import keyset_pages

logger = logging.getLogger(__name__)

SOURCE = "blockchair"
# A hard stop on any listing, past the guard against a cursor that does not advance.
MAX_PAGES = 10_000

_R = TypeVar("_R", bound=BaseModel)
# One page of a listing: its parse, and the source ids of its rows (valid or not) that paging moves on.
_Listing: TypeAlias = tuple[ParseResult[_R], list[int]]


class BlockchairIngestor(Ingestor):
    """Fetch, parse and load Blockchair data; one logged run per chain and data type."""

    source = SOURCE

    def build_client(self) -> ApiClient:
        """The Blockchair client from settings."""
        return blockchair_client(self.settings)

    # ------------------------------------------------------------------ entry points

    def run_daily_ingestion(
        self,
        chains: Iterable[str] | None = None,
        data_types: Iterable[str] = ("blocks", "transactions", "addresses"),
        *,
        trigger: str = "manual",
    ) -> dict[str, dict[str, IngestionResult]]:
        """Ingest each chain's new blocks, their transactions and the watched addresses."""
        coins = [self.coin(c) for c in chains] if chains is not None else self._active_chains()
        results: dict[str, dict[str, IngestionResult]] = {}
        for coin in coins:
            per_type = results.setdefault(coin.blockchair_chain or coin.symbol, {})
            for data_type in data_types:
                result = self.ingest(coin, data_type, trigger=trigger)
                if result is not None:
                    per_type[data_type] = result
        return results

    def ingest(self, coin: CoinMetadataData, data_type: str, **kwargs: Any) -> IngestionResult | None:
        """One unit of `data_type` ("blocks", "transactions" or "addresses") for a chain."""
        handlers: dict[str, Callable[..., IngestionResult | None]] = {
            "blocks": self.ingest_blocks,
            "transactions": self.ingest_transactions,
            "addresses": self.ingest_addresses,
        }
        if data_type not in handlers:
            msg = f"unknown Blockchair data type {data_type!r}; use one of {', '.join(handlers)}"
            raise ValueError(msg)
        return handlers[data_type](coin, **kwargs)

    def _active_chains(self) -> list[CoinMetadataData]:
        return [c for c in self.db.get_coins(active_only=True) if c.blockchair_chain]

    # ------------------------------------------------------------------ blocks

    def ingest_blocks(
        self,
        coin: CoinMetadataData,
        *,
        start_height: int | None = None,
        end_height: int | None = None,
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> IngestionResult:
        """New blocks since the highest stored one (re-reading the newest few), or an explicit range."""
        chain = _chain(coin)
        if start_height is None:
            stored = self.db.max_block_height(coin.symbol)
            if stored is not None:
                start_height = max(stored - self.settings.REORG_DEPTH + 1, 0)
        run = RunSlice(
            SOURCE, "blocks", chain, {"chain": chain}, start_height=start_height, end_height=end_height
        )
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            if start_height is None:
                tip = self._tip(chain, coin)
                start_height = max(tip - self.settings.BLOCKS_INITIAL_DEPTH + 1, 0)
                end_height = tip
            self._page_blocks(coin, start_height, end_height, tally)
        assert tally.result is not None
        return tally.result

    def _tip(self, chain: str, coin: CoinMetadataData) -> int:
        """The chain tip, from the newest block row (one request; the first run needs it)."""
        payload = self.client.get_json(f"/{chain}/blocks", {"limit": 1}, endpoint=f"/{chain}/blocks")
        page = parse_blocks(payload, coin_symbol=coin.symbol, family=coin.chain_family, now=self.clock())
        if page.tip is None:
            msg = "no chain tip (context.state) in the reply"
            raise ResponseFormatError(msg, source=SOURCE, endpoint=f"/{chain}/blocks", status=200)
        return page.tip

    def _page_blocks(self, coin: CoinMetadataData, start: int, end: int | None, tally: RunTally) -> None:
        chain = _chain(coin)
        endpoint = f"/{chain}/blocks"
        seen: set[int] = set()
        reorganised: list[int] = []

        def fetch(cursor: int | None) -> _Listing[BlockchainBlockData]:
            self.check_stop()
            low = start if cursor is None else cursor
            params = {"q": f"id({low}..{'' if end is None else end})", "s": "id(asc)", "limit": PAGE_SIZE}
            payload = self.client.get_json(endpoint, params, endpoint=endpoint)
            page = parse_blocks(payload, coin_symbol=coin.symbol, family=coin.chain_family, now=self.clock())
            return page, row_ids(payload)

        def next_height(listing: _Listing[BlockchainBlockData]) -> int | None:
            # Reads `end` as pinned by the loop below, after the page was handled.
            last = _last_id(*listing)
            return None if last is None or (end is not None and last >= end) else last + 1

        pages = keyset_pages(
            fetch, next_height, first=start, max_pages=MAX_PAGES, source=SOURCE, endpoint=endpoint
        )
        for page, ids in pages:
            end = page.tip if end is None else end  # pin the range so that new blocks cannot shift pages
            seen.update(ids)
            tally.fetched += page.rows_seen
            tally.add_rejects(page.rejects)
            reorganised += self._store_blocks(coin, page, tally)
        # The chain's daily totals, for the days this unit's pages touched: once per unit, not per page.
        self.db.refresh_chain_rollups(coin.symbol)
        replay = {"chain": chain, "start_height": start, "end_height": end}
        if reorganised:
            replay["reorganised_heights"] = reorganised
        tally.slice_updates |= {"start_height": start, "end_height": end, "params": replay}
        if seen:
            checked_to = end if end is not None else max(seen)
            apply_findings(
                self.db, tally, block_findings(self.db, self.settings, coin.symbol, start, checked_to)
            )
        if end is None:
            tally.shortfall("the source reported no chain tip")
        elif len(seen) < end - start + 1:
            tally.shortfall(f"got {len(seen)} of {end - start + 1} blocks in {start}..{end}")

    def _store_blocks(
        self, coin: CoinMetadataData, page: ParseResult[BlockchainBlockData], tally: RunTally
    ) -> list[int]:
        """Load one page and move the coin's bookmark, in one transaction; returns reorganised heights."""
        now = self.clock()
        with self.db.transaction() as conn:
            reorganised = self._replace_reorganised(conn, coin, page.records)
            written = self.db.insert_blocks(page.records, conn=conn)
            # Blocks the database refused (a hash held by another height) are rejects like the parser's.
            tally.written += written.counts()
            tally.add_rejects(written.rejects)
            self.db.advance_block_bookmark(conn, coin.symbol, at=now, tip=page.tip)
        return reorganised

    def _replace_reorganised(
        self, conn: Any, coin: CoinMetadataData, blocks: list[BlockchainBlockData]
    ) -> list[int]:
        """Heights whose stored hash differs from the source's; their transactions are dropped."""
        if not blocks:
            return []
        heights = [b.block_id for b in blocks]
        stored = self.db.block_hashes(coin.symbol, min(heights), max(heights))
        changed = [b.block_id for b in blocks if b.block_id in stored and stored[b.block_id] != b.hash]
        if changed:
            logger.warning(
                "reorganisation on %s: blocks %s changed hash; replacing them", coin.symbol, changed
            )
            self.db.delete_block_transactions(conn, coin.symbol, changed)
        return changed

    # ------------------------------------------------------------------ transactions

    def ingest_transactions(
        self,
        coin: CoinMetadataData,
        *,
        start_height: int | None = None,
        end_height: int | None = None,
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> IngestionResult | None:
        """Transactions of the newest TRANSACTIONS_WINDOW_BLOCKS stored blocks, or of an explicit range."""
        chain = _chain(coin)
        if start_height is None or end_height is None:
            top = self.db.max_block_height(coin.symbol)
            if top is None or self.settings.TRANSACTIONS_WINDOW_BLOCKS == 0:
                return None  # no blocks yet: nothing to attach transactions to
            start_height, end_height = max(top - self.settings.TRANSACTIONS_WINDOW_BLOCKS + 1, 0), top
        replay = {"chain": chain, "start_height": start_height, "end_height": end_height}
        run = RunSlice(
            SOURCE, "transactions", chain, replay, start_height=start_height, end_height=end_height
        )
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            for low, high in self._ranges_to_fetch(coin, start_height, end_height):
                self._page_transactions(coin, low, high, tally)
            apply_findings(self.db, tally, check_transactions(self.db, coin.symbol, start_height, end_height))
            incomplete = self.db.incomplete_transaction_blocks(coin.symbol, start_height, end_height)
            if incomplete:
                tally.shortfall(
                    f"{len(incomplete)} blocks still lack transactions: {contiguous_ranges(incomplete)}"
                )
        assert tally.result is not None
        return tally.result

    def _ranges_to_fetch(self, coin: CoinMetadataData, low: int, high: int) -> list[tuple[int, int]]:
        """Heights whose transactions are incomplete, or whose block is not stored, as contiguous ranges."""
        stored = self.db.block_hashes(coin.symbol, low, high)
        missing_blocks = [h for h in range(low, high + 1) if h not in stored]
        return contiguous_ranges(
            [*self.db.incomplete_transaction_blocks(coin.symbol, low, high), *missing_blocks]
        )

    def _page_transactions(self, coin: CoinMetadataData, low: int, high: int, tally: RunTally) -> None:
        # [low, high] holds only incomplete blocks, so it is read from its start: a transaction missing
        # from the middle of a block (rejected earlier) is fetched again, and stored ones upsert unchanged.
        chain = _chain(coin)
        endpoint = f"/{chain}/transactions"

        def fetch(after: int | None) -> _Listing[BlockchainTransactionData]:
            # The first page has no id filter; each next one asks for the ids after the last one seen.
            self.check_stop()
            q = f"block_id({low}..{high})" + (f",id({after + 1}..)" if after is not None else "")
            params = {"q": q, "s": "id(asc)", "limit": PAGE_SIZE}
            payload = self.client.get_json(endpoint, params, endpoint=endpoint)
            page = parse_transactions(
                payload, coin_symbol=coin.symbol, family=coin.chain_family, now=self.clock()
            )
            return page, row_ids(payload)

        # Whole pages are buffered and committed DB_BATCH_SIZE rows at a time (a commit per 100-row page
        # cost about a fifth of the throughput); on any exit the complete pages fetched so far are kept.
        buffer: list[BlockchainTransactionData] = []
        pages = keyset_pages(
            fetch, lambda listing: _last_id(*listing), max_pages=MAX_PAGES, source=SOURCE, endpoint=endpoint
        )
        try:
            for page, _ids in pages:
                tally.fetched += page.rows_seen
                tally.add_rejects(page.rejects)
                buffer += page.records
                if len(buffer) >= self.settings.DB_BATCH_SIZE:
                    buffer = self._flush_transactions(buffer, tally)
        finally:
            self._flush_transactions(buffer, tally)

    def _flush_transactions(
        self, buffer: list[BlockchainTransactionData], tally: RunTally
    ) -> list[BlockchainTransactionData]:
        if buffer:
            with self.db.transaction() as conn:
                written = self.db.insert_transactions(buffer, conn=conn)
                tally.written += written.counts()
                tally.add_rejects(written.rejects)
        return []

    # ------------------------------------------------------------------ addresses

    def ingest_addresses(
        self,
        coin: CoinMetadataData,
        *,
        addresses: list[str] | None = None,
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> IngestionResult | None:
        """Balances of the chain's watched addresses (WATCH_ADDRESSES), or of the given ones."""
        chain = _chain(coin)
        watched = addresses if addresses is not None else self.settings.WATCH_ADDRESSES.get(chain, [])
        if not watched:
            return None
        run = RunSlice(SOURCE, "addresses", chain, {"chain": chain, "addresses": list(watched)})
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            for path, batch in address_requests(chain, coin.chain_family, watched):
                self.check_stop()
                payload = self.client.get_json(path, endpoint=f"/{chain}/dashboards/address")
                page = parse_address_dashboard(
                    payload,
                    coin_symbol=coin.symbol,
                    family=coin.chain_family,
                    requested=batch,
                    now=self.clock(),
                )
                tally.fetched += page.rows_seen
                tally.add_rejects(page.rejects)
                if page.records:
                    with self.db.transaction() as conn:
                        written = self.db.insert_addresses(page.records, conn=conn)
                        tally.written += written.counts()
                        tally.add_rejects(written.rejects)
        assert tally.result is not None
        return tally.result


def _chain(coin: CoinMetadataData) -> str:
    if not coin.blockchair_chain:
        msg = f"coin {coin.symbol} has no blockchair_chain"
        raise ValueError(msg)
    return coin.blockchair_chain


def _last_id(page: ParseResult[Any], ids: list[int]) -> int | None:
    """The highest row id of a full page; None when the page is the listing's last (short or empty)."""
    return None if page.rows_seen < PAGE_SIZE or not ids else max(ids)


# The seed's entry point: `blockchair_ingestor.run_daily_ingestion(["bitcoin", "ethereum", "dogecoin"])`.
blockchair_ingestor: BlockchairIngestor = lazy(BlockchairIngestor)
