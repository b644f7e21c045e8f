"""Stored records as API documents: amounts as exact decimal text, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pipeline.api.models import (
    Address,
    Block,
    Candle,
    ChainDay,
    Coin,
    DailyPrice,
    DailyStats,
    Finding,
    PricePoint,
    Run,
    Transaction,
)
from pipeline.columns import decimal_to_text
from pipeline.schemas import (
    BlockchainBlockData,
    BlockchainTransactionData,
    CandleData,
    ChainDailyStatsData,
    CoinMetadataData,
    DailyPriceStatsData,
    DataIngestionLogData,
    MarketPriceData,
    PricePointData,
)
from pipeline.store.queries import DECIMALS, AddressBalance


def exact(value: Decimal | int | None) -> str | None:
    """An amount as exact plain decimal text (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int):
        return str(value)
    return decimal_to_text(value)


def exact_required(value: Decimal | int) -> str:
    """An amount that is always there, as exact plain decimal text."""
    return exact(value) or "0"


def utc(value: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (a naive one is UTC already)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def coin(record: CoinMetadataData) -> Coin:
    """A coin."""
    return Coin(
        symbol=record.symbol,
        name=record.name,
        coingecko_id=record.coingecko_id,
        blockchair_chain=record.blockchair_chain,
        chain_family=record.chain_family,
        decimals=DECIMALS.get(record.chain_family, 8),
        listed_since=record.listed_since,
        is_active=record.is_active,
        ingestion_enabled=record.ingestion_enabled,
        block_bookmark=record.block_bookmark,
        block_bookmark_at=utc(record.block_bookmark_at),
        chain_tip_height=record.chain_tip_height,
        chain_tip_seen_at=utc(record.chain_tip_seen_at),
        price_bookmark=record.price_bookmark,
        price_bookmark_at=utc(record.price_bookmark_at),
    )


def daily_price(record: MarketPriceData) -> DailyPrice:
    """A daily USD price."""
    return DailyPrice(
        coin_id=record.coin_id,
        price_date=record.price_date,
        price_usd=exact_required(record.price_usd),
        volume_usd=exact(record.volume_usd),
        market_cap_usd=exact(record.market_cap_usd),
    )


def price_point(record: PricePointData) -> PricePoint:
    """A price point."""
    return PricePoint(
        coin_id=record.coin_id,
        quote=record.quote,
        ts=utc(record.ts) or record.ts,
        price=exact_required(record.price),
        volume_24h=exact(record.volume_24h),
        market_cap=exact(record.market_cap),
        sampling=record.sampling,
    )


def candle(record: CandleData) -> Candle:
    """A candle."""
    return Candle(
        coin_id=record.coin_id,
        quote=record.quote,
        interval=record.interval,
        start=utc(record.start) or record.start,
        open=exact_required(record.open),
        high=exact_required(record.high),
        low=exact_required(record.low),
        close=exact_required(record.close),
        volume=exact(record.volume),
        samples=record.samples,
        sampling=record.sampling,
    )


def block(record: BlockchainBlockData) -> Block:
    """A block."""
    return Block(
        coin_symbol=record.coin_symbol,
        height=record.block_id,
        hash=record.hash,
        time=utc(record.time) or record.time,
        transaction_count=record.transaction_count,
        size=record.size,
        difficulty=exact(record.difficulty),
        output_total=exact(record.output_total),
        fee_total=exact(record.fee_total),
        reward=exact(record.reward),
        output_total_usd=exact(record.output_total_usd),
        fee_total_usd=exact(record.fee_total_usd),
        reward_usd=exact(record.reward_usd),
        gas_used=record.gas_used,
        gas_limit=record.gas_limit,
        miner=record.miner,
    )


def transaction(record: BlockchainTransactionData) -> Transaction:
    """A transaction."""
    return Transaction(
        coin_symbol=record.coin_symbol,
        tx_hash=record.tx_hash,
        block_id=record.block_id,
        source_id=record.source_id,
        time=utc(record.time) or record.time,
        fee=exact(record.fee),
        input_total=exact(record.input_total),
        output_total=exact(record.output_total),
        fee_usd=exact(record.fee_usd),
        input_total_usd=exact(record.input_total_usd),
        output_total_usd=exact(record.output_total_usd),
        input_count=record.input_count,
        output_count=record.output_count,
        size=record.size,
        is_coinbase=record.is_coinbase,
        sender=record.sender,
        recipient=record.recipient,
        value=exact(record.value),
        gas_used=record.gas_used,
        failed=record.failed,
    )


def address(record: AddressBalance) -> Address:
    """A watched address."""
    return Address(
        coin_symbol=record.coin_symbol,
        address=record.address,
        balance=exact_required(record.balance),
        balance_native=exact_required(record.balance_native),
        received=exact(record.received),
        spent=exact(record.spent),
        balance_usd=exact(record.balance_usd),
        transaction_count=record.transaction_count,
        last_seen=utc(record.last_seen),
        updated_at=utc(record.updated_at),
    )


def run(record: DataIngestionLogData) -> Run:
    """A run (without its rejected samples)."""
    values = record.model_dump(exclude={"rejected_samples"})
    values["status"] = record.status.value
    for name in ("started_at", "finished_at"):
        values[name] = utc(values[name])
    return Run(**values)


def finding(row: dict[str, Any]) -> Finding:
    """A data-quality finding (a row of `data_quality_checks`)."""
    return Finding(**{**row, "created_at": utc(row["created_at"])})


def daily_stats(record: DailyPriceStatsData) -> DailyStats:
    """A day of a coin's price analytics."""
    return DailyStats(
        coin_id=record.coin_id,
        day=record.day,
        close=exact_required(record.close),
        daily_return=exact(record.daily_return),
        volatility_30d=exact(record.volatility_30d),
        running_peak=exact_required(record.running_peak),
        drawdown=exact_required(record.drawdown),
    )


def chain_day(record: ChainDailyStatsData) -> ChainDay:
    """A day of a chain's activity."""
    return ChainDay(
        coin_symbol=record.coin_symbol,
        day=record.day,
        blocks=record.blocks,
        transactions=record.transactions,
        fees_native=exact_required(record.fees_native),
        fees_usd=exact(record.fees_usd),
        mean_block_interval_s=record.mean_block_interval_s,
        mean_block_size=record.mean_block_size,
        first_height=record.first_height,
        last_height=record.last_height,
    )
