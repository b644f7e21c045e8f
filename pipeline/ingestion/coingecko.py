"""CoinGecko ingestor: daily USD price, 24 h volume and market cap per coin, and price points (hourly,
5-minute within the last day) in every quote currency.

Request budget: date ranges go through `/coins/{id}/market_chart/range` with `interval=daily`, one request
per coin per window of up to 365 days, and only the coin-days missing from the database are asked for. A
365-day backfill of 3 coins is 3 requests. Days the plan cannot serve (older than its history limit) or
that precede the coin's listing are unavailable: they are never requested, so they cost nothing per run.

Price points use CoinGecko's automatic granularity, which every plan has: no `interval` is sent, and the
window picks the sampling (up to a day ending now: 5-minute points; up to 90 days: hourly). `interval=
hourly` and `interval=5m` are never sent (Enterprise-only in the documents we follow). Missing hours are
asked for in the fewest windows of at most 90 days, so 365 days of 3 coins cost at most 15 requests, and
the incremental run asks for one window from the newest stored point to now: one request per coin and
quote, whose 5-minute points give the latest intraday price.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pipeline.http.client import ApiClient
from pipeline.ingestion.base import Ingestor
from pipeline.ingestion.units import IngestionResult, RunSlice, RunTally
from pipeline.lazy import lazy
from pipeline.ranges import HOUR, MAX_HOURLY_WINDOW, day_windows, hour_floor, hour_windows, servable_range
from pipeline.schemas import CoinMetadataData, MarketPriceData, PricePointData
from pipeline.services.coverage import missing_price_days, missing_price_hours
from pipeline.services.quality import apply_findings, price_findings
from pipeline.sources.coingecko import (
    coingecko_client,
    parse_history,
    parse_market_chart,
    parse_price_points,
)

SOURCE = "coingecko"
DEFAULT_COINS = {"BTC": "bitcoin", "ETH": "ethereum", "DOGE": "dogecoin"}
GRANULARITIES = ("hourly", "daily")
# A window that ends this close to now is asked up to a little past now, so that the reply surely holds
# CoinGecko's trailing "now" point, which the parser then drops.
_NOW_SLACK = timedelta(minutes=5)


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

    # ------------------------------------------------------------------ price points

    def ingest_price_points(
        self,
        coin: CoinMetadataData,
        start: date,
        end: date,
        *,
        quote: str = "usd",
        granularity: str = "hourly",
        trigger: str = "manual",
        parent_run_id: int | None = None,
    ) -> IngestionResult:
        """Fetch the missing hours (or, for `daily`, days) of [start, end] in `quote`. Daily USD is the
        seed's `market_prices` series, so it goes through `ingest_price_range`."""
        if granularity not in GRANULARITIES:
            msg = f"granularity must be hourly or daily, not {granularity!r}"
            raise ValueError(msg)
        if granularity == "daily" and quote == "usd":
            return self.ingest_price_range(coin, start, end, trigger=trigger, parent_run_id=parent_run_id)
        coin_id = _coin_id(coin)
        params = {
            "coin_id": coin_id,
            "quote": quote,
            "granularity": granularity,
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
        run = RunSlice(SOURCE, "price_points", coin_id, params, start_date=start, end_date=end)
        with self.recorded(run, trigger=trigger, parent_run_id=parent_run_id) as tally:
            low, high = self.servable_range(coin, start, end)
            if low > start:
                tally.slice_updates["params"] = params | {"unavailable_before": low.isoformat()}
            if low <= high and granularity == "hourly":
                self._fetch_missing_hours(coin, quote, _day_start(low), _day_start(high) + DAY, tally)
            elif low <= high:
                self._fetch_missing_quote_days(coin, quote, low, high, tally)
        assert tally.result is not None
        return tally.result

    def ingest_latest_points(
        self, coin: CoinMetadataData, quote: str = "usd", *, trigger: str = "manual"
    ) -> IngestionResult:
        """The incremental run: one window from the newest stored point (or HOURLY_DAYS back) to now.
        Within a day of now CoinGecko answers with 5-minute points, the newest of which is the coin's
        latest intraday price (`get_latest_price`)."""
        coin_id = _coin_id(coin)
        now = self.clock()
        # One hour short of the full span, so a first run of HOURLY_DAYS=90 is one hourly window.
        floor = hour_floor(
            max(now - timedelta(days=self.settings.hourly_days), now - MAX_HOURLY_WINDOW + HOUR)
        )
        newest = self.db.get_latest_price(coin_id, quote)
        first = floor if newest is None or newest.ts < floor else newest.ts
        params = {
            "coin_id": coin_id,
            "quote": quote,
            "granularity": "hourly",
            "start": first.date().isoformat(),
            "end": now.date().isoformat(),
        }
        run = RunSlice(SOURCE, "price_points", coin_id, params, start_date=first.date(), end_date=now.date())
        with self.recorded(run, trigger=trigger, parent_run_id=None) as tally:
            if newest is None or newest.ts < floor:
                # A first run (or one after a long outage) also fills the rest of HOURLY_DAYS, in 90-day
                # windows: 365 days are 5 requests per coin and quote.
                # An hour inside the plan's history limit, as `floor` is: the same bound, so a first run of
                # HOURLY_DAYS <= 90 adds no sliver of a request before the window.
                oldest = hour_floor(now - timedelta(days=self.settings.hourly_days) + HOUR)
                for low, high in _spans(oldest, first):
                    self.check_stop()
                    self._fetch_points(coin, quote, low, high, tally)
            self._fetch_points(coin, quote, first, now, tally)
        assert tally.result is not None
        return tally.result

    def _fetch_missing_hours(
        self, coin: CoinMetadataData, quote: str, start: datetime, end: datetime, tally: RunTally
    ) -> None:
        coin_id = _coin_id(coin)
        for low, high in hour_windows(missing_price_hours(self.db, coin_id, quote, start, end)):
            self.check_stop()
            self._fetch_points(coin, quote, low, high, tally)
        still_missing = missing_price_hours(self.db, coin_id, quote, start, end)
        if still_missing:
            spans = ", ".join(
                f"{a:%Y-%m-%d %H:00}..{b - HOUR:%Y-%m-%d %H:00}"
                for a, b in hour_windows(still_missing, max_span=timedelta.max)
            )
            tally.shortfall(f"{len(still_missing)} hours without a price point in {quote}: {spans}")

    def _fetch_points(
        self, coin: CoinMetadataData, quote: str, low: datetime, high: datetime, tally: RunTally
    ) -> None:
        """One `market_chart/range` request for [low, high) without an interval; every point stored."""
        coin_id = _coin_id(coin)
        now = self.clock()
        reaches_now = high >= now - _NOW_SLACK
        # `to` is inclusive: a second short of the window's end keeps the next hour's point out. A window
        # that reaches now ends a little after it (the source's clock may run ahead), but never past 90
        # days from `low`: a window a second longer is answered with daily points (late in an hour, a
        # 90-day window plus the slack was exactly that).
        last = min(now + _NOW_SLACK, low + MAX_HOURLY_WINDOW) if reaches_now else high
        params = {"vs_currency": quote, "from": int(low.timestamp()), "to": int(last.timestamp()) - 1}
        payload = self.client.get_json(
            f"/coins/{coin_id}/market_chart/range", params, endpoint="/coins/{id}/market_chart/range"
        )
        # CoinGecko's rule for the window: up to a day ending now is 5-minute points, else hourly.
        expected = "5m" if reaches_now and now - low <= DAY else "1h"
        page = parse_price_points(
            payload,
            coin_id=coin_id,
            quote=quote,
            now=now,
            reaches_now=reaches_now,
            expected_sampling=expected,
        )
        self._store_points(page.records, page.rows_seen, page.rejects, tally)

    def _fetch_missing_quote_days(
        self, coin: CoinMetadataData, quote: str, low: date, high: date, tally: RunTally
    ) -> None:
        coin_id = _coin_id(coin)
        held = {
            p.ts.date()
            for p in self.db.get_price_points(
                coin_id=coin_id, start=low, end=high, quote=quote, granularity="daily"
            )
        }
        days = [low + timedelta(days=i) for i in range((high - low).days + 1)]
        missing = [d for d in days if d not in held]
        for first, last in day_windows(missing):
            self.check_stop()
            params = {
                "vs_currency": quote,
                "from": _midnight(first),
                "to": _midnight(last) + 3600,
                "interval": "daily",
            }
            payload = self.client.get_json(
                f"/coins/{coin_id}/market_chart/range", params, endpoint="/coins/{id}/market_chart/range"
            )
            page = parse_price_points(payload, coin_id=coin_id, quote=quote, now=self.clock(), daily=True)
            self._store_points(page.records, page.rows_seen, page.rejects, tally)

    def _store_points(
        self, records: list[PricePointData], fetched: int, rejects: list[Any], tally: RunTally
    ) -> None:
        tally.fetched += fetched
        tally.add_rejects(rejects)
        if not records:
            return
        with self.db.transaction() as conn:
            # The candles of the touched buckets are rebuilt in this same transaction.
            written = self.db.insert_price_points(records, conn=conn)
            tally.written += written.counts()
            tally.add_rejects(written.rejects)

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


DAY = timedelta(days=1)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _spans(low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
    """[low, high) cut into windows of at most 90 days (CoinGecko's hourly limit), oldest first."""
    spans = []
    while low < high:
        spans.append((low, min(high, low + MAX_HOURLY_WINDOW)))
        low += MAX_HOURLY_WINDOW
    return spans


def _coin_id(coin: CoinMetadataData) -> str:
    if not coin.coingecko_id:
        msg = f"coin {coin.symbol} has no coingecko_id"
        raise ValueError(msg)
    return coin.coingecko_id


# The seed's entry point: `coingecko_ingestor.ingest_coingecko_data_for_date({"BTC": "bitcoin", ...})`.
coingecko_ingestor: CoinGeckoIngestor = lazy(CoinGeckoIngestor)
