"""What every route needs: the settings, the database, and the checks of common parameters.

`ApiContext` is built once per app (`create_app`) and handed to routes as a dependency (`Ctx`). Routes
read `db`, which is the replica of DATABASE_READ_URL when `crypto-pipeline api` runs with one; the write
actions go through `writer`, always the primary of DATABASE_URL (a replica refuses writes). Its
helpers turn a coin name (symbol, CoinGecko id or Blockchair chain, any case) into the stored coin, check
quote currencies and time ranges, and raise the problems the API answers bad input with.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BeforeValidator, WithJsonSchema

from pipeline.api.problems import bad_parameter, not_found
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.schemas import CoinMetadataData

# Times and days the API accepts: windows are added to them, and both dialects store them exactly.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
QUOTES_TTL_SECONDS = 60.0
COINS_TTL_SECONDS = 5.0  # how long names are resolved from memory (the coins' own data is read fresh)
ISO_TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$"
ISO_DAY = r"^\d{4}-\d{2}-\d{2}$"


def _iso(pattern: str, example: str) -> Any:
    """A check that a parameter is ISO 8601 text, run before pydantic's own parsing (which would take a
    bare number for a Unix timestamp)."""

    def check(value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(pattern, value.strip()):
            msg = f"not an ISO 8601 value such as {example}"
            raise ValueError(msg)
        return value

    return BeforeValidator(check)


# A time parameter: ISO 8601 (`2026-01-31T12:00:00Z`; without an offset it is UTC; a day alone is 00:00).
IsoTime = Annotated[
    datetime,
    _iso(ISO_TIME, "2026-01-31T12:00:00Z"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": ISO_TIME}),
]
# A day parameter: `2026-01-31`.
IsoDay = Annotated[
    date,
    _iso(ISO_DAY, "2026-01-31"),
    WithJsonSchema({"type": "string", "format": "date", "pattern": ISO_DAY}),
]


@dataclass
class ApiContext:
    """The settings and database of one app, and the lookups its routes share."""

    settings: Settings
    db: DatabaseService
    private: bool  # API keys are configured: responses are private to their client
    _writer: DatabaseService | None = field(default=None, repr=False)
    _stored_quotes: tuple[float, frozenset[str]] | None = field(default=None, repr=False)
    _coin_cache: tuple[float, list[CoinMetadataData]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def writer(self) -> DatabaseService:
        """The database writes go to: the primary of DATABASE_URL. That is `db` itself, unless `db` reads
        the replica of DATABASE_READ_URL; then a service on the primary, opened at the first write (its
        schema is the replica's: replication copies it)."""
        with self._lock:
            if self._writer is None:
                reads_replica = self.db.database_url == self.settings.DATABASE_READ_URL
                self._writer = (
                    DatabaseService(self.settings.DATABASE_URL, settings=self.settings)
                    if reads_replica and self.db.database_url != self.settings.DATABASE_URL
                    else self.db
                )
            return self._writer

    # ------------------------------------------------------------------ coins

    def find_coin(self, name: str) -> CoinMetadataData | None:
        """The stored coin whose symbol, CoinGecko id or Blockchair chain is `name` (any case). The coins
        are cached for COINS_TTL_SECONDS (a name not found reads them again, so a new coin is found)."""
        wanted = name.strip().lower()
        for fresh in (False, True):
            for coin in self._coins(fresh=fresh):
                names = {
                    coin.symbol.lower(),
                    (coin.coingecko_id or "").lower(),
                    (coin.blockchair_chain or "").lower(),
                }
                if wanted in names:
                    return coin
        return None

    def _coins(self, *, fresh: bool) -> list[CoinMetadataData]:
        with self._lock:
            cached = self._coin_cache
            if not fresh and cached is not None and time.monotonic() - cached[0] < COINS_TTL_SECONDS:
                return cached[1]
        coins = self.db.get_coins()
        with self._lock:
            self._coin_cache = (time.monotonic(), coins)
        return coins

    def coin(self, name: str, *, location: str = "path", parameter: str = "coin") -> CoinMetadataData:
        """The stored coin named `name`: a 404 for an unknown coin in the path, a 400 in the query."""
        found = self.find_coin(name)
        if found is None:
            detail = f"no coin {name[:64]!r} is known (a symbol, CoinGecko id or chain: see /v1/coins)"
            if location == "path":
                raise not_found(parameter, detail)
            raise bad_parameter(parameter, detail, location=location)
        return found

    @staticmethod
    def price_id(coin: CoinMetadataData) -> str:
        """The id a coin's prices are stored under."""
        return coin.coingecko_id or coin.symbol.lower()

    @staticmethod
    def chain(coin: CoinMetadataData) -> str:
        """The symbol a coin's blocks and transactions are stored under."""
        return coin.symbol

    # ------------------------------------------------------------------ quotes

    def check_quote(self, quote: str) -> str:
        """A quote currency the pipeline ingests (QUOTE_CURRENCIES, usd) or holds candles in; else a 400."""
        quote = quote.lower()
        if quote == "usd" or quote in self.settings.QUOTE_CURRENCIES or quote in self._quotes_in_store():
            return quote
        known = ", ".join(sorted({"usd", *self.settings.QUOTE_CURRENCIES}))
        raise bad_parameter("quote", f"unknown quote currency {quote!r}; known: {known}")

    def _quotes_in_store(self) -> frozenset[str]:
        with self._lock:
            cached = self._stored_quotes
            if cached is not None and time.monotonic() - cached[0] < QUOTES_TTL_SECONDS:
                return cached[1]
        quotes = frozenset(q for _coin, q in self.db.price_point_quotes())
        with self._lock:
            self._stored_quotes = (time.monotonic(), quotes)
        return quotes


def get_context(request: Request) -> ApiContext:
    """The app's context (a FastAPI dependency)."""
    context: ApiContext = request.app.state.context
    return context


Ctx = Annotated[ApiContext, Depends(get_context)]


# ---------------------------------------------------------------------------------------------- ranges


def utc_time(value: datetime | None, name: str) -> datetime | None:
    """A time parameter in UTC (a time without offset is UTC), within the range the API accepts."""
    if value is None:
        return None
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        moment = EARLIEST - timedelta(days=1)
    if not EARLIEST <= moment <= LATEST:
        raise bad_parameter(name, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return moment


def day_param(value: date | None, name: str) -> date | None:
    """A day parameter within the range the API accepts."""
    if value is not None and not EARLIEST.date() <= value <= LATEST.date():
        raise bad_parameter(name, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


def check_order(
    start: date | datetime | None, end: date | datetime | None, names: tuple[str, str] = ("start", "end")
) -> None:
    """A 400 naming the second parameter (`end`) when it comes before the first (`start`)."""
    if start is not None and end is not None and end < start:
        raise bad_parameter(names[1], f"must not be before {names[0]} ({start.isoformat()})")
