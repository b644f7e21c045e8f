"""incidents, alert deliveries, which run made a failed run good, a run's time on the wire

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pipeline.columns

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = sa.text("resolved_at IS NULL")


def upgrade() -> None:
    # A plain column: ADD COLUMN without a table rebuild on SQLite, however long the run log is.
    op.add_column("data_ingestion_logs", sa.Column("resolved_by_run_id", sa.Integer(), nullable=True))
    op.add_column("data_ingestion_logs", sa.Column("http_seconds", sa.Float(), nullable=True))
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("data_type", sa.String(length=32), nullable=True),
        sa.Column("coin", sa.String(length=64), nullable=True),
        sa.Column("first_run_id", sa.Integer(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", pipeline.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_run_id", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("notified_at", pipeline.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", pipeline.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("silenced_until", pipeline.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("silenced_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_opened", "incidents", ["opened_at"], unique=False)
    op.create_index("ix_incidents_resolved", "incidents", ["resolved_at"], unique=False)
    op.create_index(
        "uq_incidents_open_key",
        "incidents",
        ["kind", "key"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", pipeline.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", pipeline.columns.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alert_deliveries_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint(
            "incident_id", "event", "channel", name=op.f("uq_alert_deliveries_incident_id_event_channel")
        ),
    )
    op.create_index("ix_alert_deliveries_created", "alert_deliveries", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_created", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("uq_incidents_open_key", table_name="incidents", sqlite_where=OPEN, postgresql_where=OPEN)
    op.drop_index("ix_incidents_resolved", table_name="incidents")
    op.drop_index("ix_incidents_opened", table_name="incidents")
    op.drop_table("incidents")
    with op.batch_alter_table("data_ingestion_logs") as batch:
        batch.drop_column("http_seconds")
        batch.drop_column("resolved_by_run_id")
