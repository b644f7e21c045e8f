"""price points in several quotes, candles, and the daily analytics rollups of prices and chains

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:10:00
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from alembic import op

import pipeline.columns
from pipeline.store.rollups import block_days, rebuild_chain_days, refresh_daily_stats

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _audit() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "price_points",
        sa.Column("coin_id", sa.String(length=64), nullable=False),
        sa.Column("quote", sa.String(length=10), nullable=False),
        sa.Column("ts", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("price", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("volume_24h", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("market_cap", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("sampling", sa.String(length=2), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("coin_id", "quote", "ts", name=op.f("pk_price_points")),
    )
    op.create_table(
        "price_candles",
        sa.Column("coin_id", sa.String(length=64), nullable=False),
        sa.Column("quote", sa.String(length=10), nullable=False),
        sa.Column("interval", sa.String(length=2), nullable=False),
        sa.Column("start", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("open", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("high", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("low", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("close", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("volume", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("sampling", sa.String(length=2), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("coin_id", "quote", "interval", "start", name=op.f("pk_price_candles")),
    )
    op.create_table(
        "daily_price_stats",
        sa.Column("coin_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("close", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("daily_return", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("volatility_30d", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("running_peak", pipeline.columns.ExactDecimal(), nullable=False),
        sa.Column("drawdown", pipeline.columns.ExactDecimal(), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("coin_id", "day", name=op.f("pk_daily_price_stats")),
    )
    op.create_table(
        "chain_daily_stats",
        sa.Column("coin_symbol", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.Column("fees_native", pipeline.columns.NativeAmount(), nullable=False),
        sa.Column("fees_usd", pipeline.columns.ExactDecimal(), nullable=True),
        sa.Column("mean_block_interval_s", sa.Float(), nullable=True),
        sa.Column("mean_block_size", sa.Float(), nullable=True),
        sa.Column("first_height", sa.BigInteger(), nullable=False),
        sa.Column("last_height", sa.BigInteger(), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("coin_symbol", "day", name=op.f("pk_chain_daily_stats")),
    )

    op.create_table(
        "chain_days_pending",
        sa.Column("coin_symbol", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("coin_symbol", "day", name=op.f("pk_chain_days_pending")),
    )
    _fill_rollups()


def _fill_rollups() -> None:
    """Build the analytics of the prices and blocks already stored, so that an upgraded database shows
    them at once (price points are new here, so there are no candles to build). This uses the rollup
    code of the release that adds them; later releases rebuild with `crypto-pipeline rebuild-rollups`."""
    conn = op.get_bind()
    coins = conn.execute(sa.text("SELECT DISTINCT coin_id FROM market_prices")).scalars().all()
    for coin_id in coins:
        refresh_daily_stats(conn, coin_id, date.min + timedelta(days=31))
    chains = conn.execute(sa.text("SELECT DISTINCT coin_symbol FROM blockchain_blocks")).scalars().all()
    for symbol in chains:
        rebuild_chain_days(conn, symbol, block_days(conn, symbol))


def downgrade() -> None:
    for table in (
        "chain_days_pending",
        "chain_daily_stats",
        "daily_price_stats",
        "price_candles",
        "price_points",
    ):
        op.drop_table(table)
