"""CoinGecko ingestor: daily USD price, 24 h volume and market cap per coin.

Request budget: date ranges go through `/coins/{id}/market_chart/range` with `interval=daily`, one request
per coin per window of up to 365 days, and only the coin-days missing from the database are asked for. A
365-day backfill of 3 coins is 3 requests. Days the plan cannot serve (older than its history limit) or
that precede the coin's listing are unavailable: they are never requested, so they cost nothing per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pipeline.http.client import ApiClient
from pipeline.ingestion.base import Ingestor
from pipeline.ingestion.units import IngestionResult, RunSlice, RunTally
from pipeline.lazy import lazy
from pipeline.ranges import day_windows, servable_range
from pipeline.schemas import CoinMetadataData, MarketPriceData
from pipeline.services.coverage import missing_price_days
from pipeline.services.quality import apply_findings, price_findings
from pipeline.sources.coingecko import coingecko_client, parse_history, parse_market_chart

SOURCE = "coingecko"
DEFAULT_COINS = {"BTC": "bitcoin", "ETH": "ethereum", "DOGE": "dogecoin"}



def _midnight(day: date) -> int:
    return int(datetime.combine(day, time(0), UTC).timestamp())


class CoinGeckoIngestor(Ingestor):
    """Fetch, parse and load CoinGecko daily prices; one logged run per coin and slice."""

    source = SOURCE

    def build_client(self) -> ApiClient:
        """The CoinGecko client from settings (key header and host by plan)."""
        return coingecko_client(self.settings)

    def servable_range(self, coin: CoinMetadataData, start: date, end: date) -> tuple[date, date]:
        """Clamp a range to what the plan serves and the coin's listing; empty when start > end."""
        return servable_range(coin, self.settings, start, end, self.clock().date())

    # ------------------------------------------------------------------ ranges

    def ingest_price_range(
        self,
        coin: CoinMetadataData,
        start: date,
        end: date,
        *,
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> IngestionResult:
        """Fetch the missing days of [start, end] in as few `market_chart/range` requests as possible."""
        coin_id = _coin_id(coin)
        params = {"coin_id": coin_id, "start": start.isoformat(), "end": end.isoformat()}
        run = RunSlice(SOURCE, "prices", coin_id, params, start_date=start, end_date=end)
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            low, high = self.servable_range(coin, start, end)
            if low > start:
                tally.slice_updates["params"] = params | {"unavailable_before": low.isoformat()}
            if low <= high:
                self._fetch_missing(coin, low, high, tally)
        assert tally.result is not None
        return tally.result

    def _fetch_missing(self, coin: CoinMetadataData, low: date, high: date, tally: RunTally) -> None:
        coin_id = _coin_id(coin)
        for first, last in day_windows(missing_price_days(self.db, coin_id, low, high)):
            self.check_stop()
            params = {
                "vs_currency": "usd",
                "from": _midnight(first),
                # An hour past the last midnight includes that day's point and nothing of the next day.
                "to": _midnight(last) + 3600,
                "interval": "daily",
            }
            payload = self.client.get_json(
                f"/coins/{coin_id}/market_chart/range", params, endpoint="/coins/{id}/market_chart/range"
            )
            page = parse_market_chart(payload, coin_id=coin_id, now=self.clock())
            records = [r for r in page.records if first <= r.price_date <= last]
            self._store(coin, records, page.rows_seen, page.rejects, tally)
        apply_findings(self.db, tally, price_findings(self.db, self.settings, coin_id, low, high))
        still_missing = missing_price_days(self.db, coin_id, low, high)
        if still_missing:
            spans = ", ".join(f"{a}..{b}" for a, b in day_windows(still_missing, max_days=10**6))
            tally.shortfall(f"{len(still_missing)} days without a price: {spans}")

    def _store(
        self,
        coin: CoinMetadataData,
        records: list[MarketPriceData],
        fetched: int,
        rejects: list[Any],
        tally: RunTally,
    ) -> None:
        tally.fetched += fetched
        tally.add_rejects(rejects)
        if not records:
            return
        with self.db.transaction() as conn:
            written = self.db.insert_market_prices(records, conn=conn)
            # Prices the database refused are rejects of the run, like the parser's.
            tally.written += written.counts()
            tally.add_rejects(written.rejects)
            # To the newest stored day, evaluated in SQL: never moved backwards by an older backfill or a
            # stale copy of the coin, even with several workers.
            self.db.advance_price_bookmark(conn, coin.symbol, _coin_id(coin), at=self.clock())

    def ingest_latest(self, coin: CoinMetadataData, **kwargs: Any) -> IngestionResult:
        """Today's point (and any gap since the last stored day, within PRICE_BACKFILL_DAYS)."""
        today = self.clock().date()
        return self.ingest_price_range(
            coin, today - timedelta(days=self.settings.PRICE_BACKFILL_DAYS - 1), today, **kwargs
        )

    # ------------------------------------------------------------------ one date

    def ingest_coingecko_data_for_date(
        self,
        coins: Mapping[str, str] | None = None,
        target_date: date | None = None,
        *,
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> dict[str, IngestionResult]:
        """One day (default: yesterday, UTC) per coin through `/coins/{id}/history`; keyed by symbol."""
        day = target_date or self.clock().date() - timedelta(days=1)
        results = {}
        for symbol, coin_id in (coins or DEFAULT_COINS).items():
            coin = self.coin(coin_id)
            results[symbol] = self.ingest_price_for_date(
                coin, day, trigger=trigger, parent_run_id=parent_run_id
            )
        return results

    def ingest_price_for_date(
        self, coin: CoinMetadataData, day: date, *, trigger: str = "manual", parent_run_id: int | None = None
    ) -> IngestionResult:
        """One coin-day through `/coins/{id}/history?date=dd-mm-yyyy`."""
        coin_id = _coin_id(coin)
        params = {"coin_id": coin_id, "date": day.isoformat()}
        run = RunSlice(SOURCE, "price_by_date", coin_id, params, start_date=day, end_date=day)
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            low, high = self.servable_range(coin, day, day)
            if low <= high:
                self._fetch_day(coin, day, tally)
            else:
                tally.slice_updates["params"] = params | {"unavailable": True}
        assert tally.result is not None
        return tally.result

    def _fetch_day(self, coin: CoinMetadataData, day: date, tally: RunTally) -> None:
        coin_id = _coin_id(coin)
        payload = self.client.get_json(
            f"/coins/{coin_id}/history",
            {"date": day.strftime("%d-%m-%Y"), "localization": "false"},
            endpoint="/coins/{id}/history",
        )
        page = parse_history(payload, coin_id=coin_id, day=day, now=self.clock())
        self._store(coin, page.records, page.rows_seen, page.rejects, tally)
        if not page.records and not page.rejects:
            tally.shortfall(f"no market_data for {coin_id} on {day.isoformat()}")


def _coin_id(coin: CoinMetadataData) -> str:
    if not coin.coingecko_id:
        msg = f"coin {coin.symbol} has no coingecko_id"
        raise ValueError(msg)
    return coin.coingecko_id


# The seed's entry point: `coingecko_ingestor.ingest_coingecko_data_for_date({"BTC": "bitcoin", ...})`.
coingecko_ingestor: CoinGeckoIngestor = lazy(CoinGeckoIngestor)
