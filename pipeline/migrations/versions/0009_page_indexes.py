"""index the run log by unit and end date: the runs that covered a coin's missing days

The Coverage page (and gap planning) asks which price runs of a coin covered its missing days
(`store.coverage.price_run_outcomes`: `start_date <= last AND end_date >= first`). With only the unit
index (source, data_type, coin, started_at) that read every run the coin ever had; this index starts at
the runs that end on or after the first missing day, and holds start_date to test the other bound.

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


def downgrade() -> None:
    with op.batch_alter_table("data_ingestion_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_data_ingestion_logs_unit_end")
