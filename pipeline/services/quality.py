"""Data-quality checks on the slice each ingestion unit wrote: whether the numbers can be trusted.

A check never blocks ingestion. Its findings are stored (check, severity, slice, observed value, threshold,
sample rows) for the dashboard and the CLI; an `error` finding turns the unit's run `partial`.
Thresholds come from settings.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import utcnow
from pipeline.schemas import FUTURE_TOLERANCE, BlockchainBlockData, MarketPriceData
from pipeline.store.quality import (
    hashes_at_several_heights,
    insert_findings,
    select_findings,
    stored_transactions_per_block,
)

WARN, ERROR = "warn", "error"
MAX_SAMPLES = 5
MEDIAN_WINDOW = 7  # days of prices a move is compared with
MEDIAN_BLOCKS = 11  # Bitcoin's median-time-past window


@dataclass
class Finding:
    """One check that fired on a slice."""

    check_name: str
    severity: str
    subject: str
    slice: str
    observed: str
    threshold: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)


def _sample(**values: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal | date | datetime) else v) for k, v in values.items()}


def _finding(
    name: str, severity: str, subject: str, slice_: str, bad: list[dict[str, Any]], threshold: str | None
) -> Finding:
    return Finding(name, severity, subject, slice_, f"{len(bad)} rows", threshold, bad[:MAX_SAMPLES])


# ---------------------------------------------------------------------- prices


def check_prices(prices: list[MarketPriceData], start: date, end: date, settings: Settings) -> list[Finding]:
    """Spikes against the rolling median, caps that move without the price, non-positive values."""
    prices = sorted(prices, key=lambda p: p.price_date)
    if not prices:
        return []
    subject, slice_ = prices[0].coin_id, f"{start}..{end}"
    spikes, cap_jumps, non_positive = [], [], []
    limit = Decimal(str(settings.PRICE_MOVE_WARN_RATIO))
    divergence = Decimal(str(settings.MARKET_CAP_DIVERGENCE_RATIO))
    for i, p in enumerate(prices):
        if not start <= p.price_date <= end:
            continue
        values = (p.price_usd, p.volume_usd, p.market_cap_usd)
        if any(v is not None and v <= 0 for v in values):
            non_positive.append(
                _sample(day=p.price_date, price=p.price_usd, volume=p.volume_usd, cap=p.market_cap_usd)
            )
            continue  # ratios against a non-positive value mean nothing
        window = [q.price_usd for q in prices[max(0, i - MEDIAN_WINDOW) : i]]
        if len(window) >= 3:
            median = statistics.median(window)
            if median > 0 and abs(p.price_usd / median - 1) > limit:
                spikes.append(_sample(day=p.price_date, price=p.price_usd, rolling_median=median))
        previous = prices[i - 1] if i else None
        if previous and p.market_cap_usd and previous.market_cap_usd and previous.price_usd > 0 < p.price_usd:
            cap_ratio = p.market_cap_usd / previous.market_cap_usd
            price_ratio = p.price_usd / previous.price_usd
            if abs(cap_ratio / price_ratio - 1) > divergence:
                cap_jumps.append(_sample(day=p.price_date, cap_change=cap_ratio, price_change=price_ratio))
    findings = []
    if spikes:
        findings.append(
            _finding("price_move", WARN, subject, slice_, spikes, f"> {limit:.0%} from the median")
        )
    if cap_jumps:
        findings.append(
            _finding("market_cap_vs_price", WARN, subject, slice_, cap_jumps, f"> {divergence:.0%}")
        )
    if non_positive:
        findings.append(_finding("non_positive_value", ERROR, subject, slice_, non_positive, "> 0"))
    return findings


# ---------------------------------------------------------------------- blocks


def check_blocks(
    blocks: list[BlockchainBlockData], low: int, high: int, settings: Settings, now: datetime
) -> list[Finding]:
    """Block times, sizes and gas, for the blocks in [low, high] (earlier ones give the median time)."""
    blocks = sorted(blocks, key=lambda b: b.block_id)
    if not blocks:
        return []
    subject, slice_ = blocks[0].coin_symbol, f"{low}..{high}"
    tolerance = timedelta(minutes=settings.BLOCK_TIME_TOLERANCE_MINUTES)
    early, future, sizes, gas = [], [], [], []
    for i, b in enumerate(blocks):
        if not low <= b.block_id <= high:
            continue
        previous = [x.time for x in blocks[max(0, i - MEDIAN_BLOCKS) : i]]
        if len(previous) == MEDIAN_BLOCKS and b.time < statistics.median_low(previous) - tolerance:
            early.append(
                _sample(height=b.block_id, time=b.time, median_of_previous=statistics.median_low(previous))
            )
        if b.time > now + FUTURE_TOLERANCE:
            future.append(_sample(height=b.block_id, time=b.time))
        if b.size is not None and b.size <= 0:
            sizes.append(_sample(height=b.block_id, size=b.size))
        if b.gas_used is not None and b.gas_limit is not None and b.gas_used > b.gas_limit:
            gas.append(_sample(height=b.block_id, gas_used=b.gas_used, gas_limit=b.gas_limit))
    checks = [
        (
            "block_time_before_median",
            WARN,
            early,
            f"not earlier than median of {MEDIAN_BLOCKS} - {tolerance}",
        ),
        ("block_time_in_future", ERROR, future, f"<= now + {FUTURE_TOLERANCE}"),
        ("non_positive_size", ERROR, sizes, "> 0"),
        ("gas_used_above_limit", ERROR, gas, "gas_used <= gas_limit"),
    ]
    return [_finding(name, sev, subject, slice_, bad, limit) for name, sev, bad, limit in checks if bad]


def check_chain_integrity(db: DatabaseService, coin_symbol: str, low: int, high: int) -> list[Finding]:
    """The same hash at two heights, or one height under two hashes: neither may ever be stored."""
    slice_ = f"{low}..{high}"
    bad = [_sample(hash=h, heights=n) for h, n in hashes_at_several_heights(db, coin_symbol, low, high)]
    return (
        [_finding("hash_at_two_heights", ERROR, coin_symbol, slice_, bad, "1 height per hash")] if bad else []
    )


def check_transactions(db: DatabaseService, coin_symbol: str, low: int, high: int) -> list[Finding]:
    """Stored transactions per block against transaction_count, and fee totals where all are stored."""
    slice_ = f"{low}..{high}"
    blocks = stored_transactions_per_block(db, coin_symbol, low, high)
    too_many = [
        _sample(height=b.height, transaction_count=b.transaction_count, stored=b.stored)
        for b in blocks
        if b.stored > b.transaction_count
    ]
    # Only a block whose transactions are all stored can be held to its fee total.
    mismatched = [
        _sample(height=b.height, fee_total=b.fee_total, sum_of_fees=b.stored_fees)
        for b in blocks
        if b.stored_fees is not None and b.stored_fees != b.fee_total
    ]
    findings = []
    if too_many:
        findings.append(
            _finding("transactions_above_count", ERROR, coin_symbol, slice_, too_many, "<= count")
        )
    if mismatched:
        findings.append(
            _finding("fee_total_mismatch", ERROR, coin_symbol, slice_, mismatched, "== sum of fees")
        )
    return findings


# ---------------------------------------------------------------------- storage


def record_findings(db: DatabaseService, run_id: int | None, findings: Iterable[Finding]) -> None:
    """Store findings of one run."""
    insert_findings(db, [{"run_id": run_id, "created_at": utcnow(), **f.__dict__} for f in findings])


def get_findings(
    db: DatabaseService, *, subject: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Stored findings, newest first."""
    return select_findings(db, subject=subject, limit=limit)


def price_findings(
    db: DatabaseService, settings: Settings, coin_id: str, start: date, end: date
) -> list[Finding]:
    """Check the stored prices of a slice (with the days before it as context)."""
    since = start - timedelta(days=MEDIAN_WINDOW)
    prices = db.get_market_prices(coin_id=coin_id, start_date=since, end_date=end, limit=None)
    return check_prices(prices, start, end, settings)


def block_findings(
    db: DatabaseService, settings: Settings, coin_symbol: str, low: int, high: int
) -> list[Finding]:
    """Check the stored blocks of a slice (with the blocks before it as context) and chain integrity."""
    blocks = db.blocks_between(coin_symbol, max(low - MEDIAN_BLOCKS, 0), high)
    return check_blocks(blocks, low, high, settings, utcnow()) + check_chain_integrity(
        db, coin_symbol, low, high
    )


class Tally(Protocol):
    """What the checks need of a unit's run tally (`pipeline.ingestion.units.RunTally`): its run, and a
    way to say the unit got less than it should (a protocol, so this layer does not import ingestion)."""

    run_id: int | None

    def shortfall(self, reason: str) -> None:
        """Note that the unit cannot end as `success`."""


def apply_findings(db: DatabaseService, tally: Tally, findings: list[Finding]) -> None:
    """Store a unit's findings; an error finding makes the unit `partial` (it never stops ingestion)."""
    record_findings(db, tally.run_id, findings)
    errors = [f for f in findings if f.severity == ERROR]
    if errors:
        tally.shortfall("quality: " + ", ".join(f"{f.check_name} ({f.observed})" for f in errors))
