"""indexes of the run log for the Coverage and Database pages

- ix_data_ingestion_logs_unit_end (source, data_type, coin, end_date, start_date): the price runs that
  covered a coin's missing days (`store.coverage.price_run_outcomes`: `start_date <= last AND end_date >=
  first`). With only the unit index (source, data_type, coin, started_at) that read every run the coin
  ever had; this one starts at the runs that end on or after the first missing day.
- ix_data_ingestion_logs_type_status_started (data_type, status, started_at, records_inserted): runs and
  rows inserted per day, status and data type (`store.queries.run_log_per_day`), counted and summed from
  the index alone on SQLite instead of sorting every run of the window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_ingestion_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_data_ingestion_logs_unit_end",
            ["source", "data_type", "coin", "end_date", "start_date"],
            unique=False,
        )
        batch_op.create_index(
            "ix_data_ingestion_logs_type_status_started",
            ["data_type", "status", "started_at", "records_inserted"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("data_ingestion_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_data_ingestion_logs_type_status_started")
        batch_op.drop_index("ix_data_ingestion_logs_unit_end")
