"""one name per idea: bookmarks on coin_metadata, replay_requests for reruns and backfills

The incremental position of a coin was called a cursor, marks and last_* in different places; it is a
bookmark everywhere now. The queue of reruns and backfills was `rerun_requests` although half of it are
backfills; it is `replay_requests`, like the code that serves it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BOOKMARKS = {
    "last_block_height": "block_bookmark",
    "last_block_ingested_at": "block_bookmark_at",
    "last_price_date": "price_bookmark",
    "last_price_ingested_at": "price_bookmark_at",
}
OPEN = "status IN ('pending', 'running')"


def _rename_bookmarks(names: dict[str, str]) -> None:
    with op.batch_alter_table("coin_metadata") as batch:
        for old, new in names.items():
            batch.alter_column(old, new_column_name=new)


def _indexes(table: str) -> list[tuple[str, list[str], bool]]:
    return [
        (f"ix_{table}_status_requested", ["status", "requested_at"], False),
        (f"ix_{table}_run", ["run_id"], False),
        (f"uq_{table}_open_run", ["run_id"], True),
        (f"uq_{table}_open_slice", ["slice_key"], True),
    ]


def _rename_requests(old: str, new: str) -> None:
    for name, _columns, _unique in _indexes(old):
        op.drop_index(name, table_name=old)
    op.rename_table(old, new)
    if op.get_bind().dialect.name == "postgresql":
        # SQLite keeps constraint names inside the table's SQL, where nothing looks them up.
        op.execute(f"ALTER TABLE {new} RENAME CONSTRAINT pk_{old} TO pk_{new}")
        for column in ("run_id", "result_run_id"):
            op.execute(
                f"ALTER TABLE {new} RENAME CONSTRAINT fk_{old}_{column}_data_ingestion_logs "
                f"TO fk_{new}_{column}_data_ingestion_logs"
            )
        op.execute(f"ALTER SEQUENCE IF EXISTS {old}_id_seq RENAME TO {new}_id_seq")
    for name, columns, unique in _indexes(new):
        where = sa.text(OPEN) if unique else None
        op.create_index(name, new, columns, unique=unique, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    _rename_bookmarks(BOOKMARKS)
    _rename_requests("rerun_requests", "replay_requests")


def downgrade() -> None:
    _rename_requests("replay_requests", "rerun_requests")
    _rename_bookmarks({new: old for old, new in BOOKMARKS.items()})
