"""`DatabaseService`: the one repository of the pipeline, shared by the scheduler, the CLI and the dashboard.

Usage::

    from pipeline.database import db_service          # built from settings on first use
    db_service.create_tables()
    db_service.insert_market_prices([{"coin_id": "bitcoin", "price_date": date(2024, 1, 1),
                                      "price_usd": Decimal("42280.23")}])
    db_service.get_market_prices(coin_id="bitcoin", limit=30)
    db_service.get_database_stats()

Writes are bulk upserts in one transaction per batch; reads return Pydantic models (or DataFrames for
chart queries), never ORM objects.

This module is a facade: every statement lives in `pipeline.store`, one module per concern (the engine
and transactions, the schema, records, stats, bookmarks, the run log, worker coordination, incidents and
alert deliveries).
"""

from __future__ import annotations

from pipeline.lazy import lazy
from pipeline.store.api_reads import ApiReadMixin
from pipeline.store.audit import AuditLogMixin
from pipeline.store.bookmarks import BookmarkMixin
from pipeline.store.coins import CoinMixin
from pipeline.store.coordination import CoordinationMixin
from pipeline.store.export_reads import ExportReadMixin
from pipeline.store.incidents import IncidentMixin
from pipeline.store.meta import MetaMixin
from pipeline.store.metrics_reads import MetricsReadMixin
from pipeline.store.records import RecordMixin
from pipeline.store.rollups import RollupMixin
from pipeline.store.stats import StatsMixin

__all__ = ["DatabaseService", "db_service"]


class DatabaseService(
    RecordMixin, RollupMixin, StatsMixin, BookmarkMixin, CoordinationMixin, IncidentMixin, MetaMixin,
    ApiReadMixin,
    ExportReadMixin,
    CoinMixin,
    AuditLogMixin,
    MetricsReadMixin,
):
    """Bulk idempotent writes, queries and stats over SQLite or PostgreSQL.

    Built from a database URL (default: the settings' DATABASE_URL), settings, or an existing engine::

        db = DatabaseService("sqlite:///./data/crypto.db")
        db.create_tables()
        with db.transaction() as conn:               # one transaction for a batch and its bookmark
            db.insert_blocks(blocks, conn=conn)
            db.advance_block_bookmark(conn, "BTC", at=utcnow())
    """


db_service: DatabaseService = lazy(DatabaseService)
