"""Facts about the database itself (`pipeline_meta`): which world its data comes from, who serves it.

A database is stamped "simulated" or "real" by the first process that ingests into it; from then on a
process whose settings point at the other world is refused (WorldMismatch), so simulated blocks and prices
never mix with real ones.
"""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

from pipeline.errors import WorldMismatch
from pipeline.models import PipelineMeta
from pipeline.store.engine import DatabaseCore, dialect_insert

WORLD = "data_world"
WORLD_TEXT = {"simulated": "the local simulator (SIMULATED_DATA=true)", "real": "the real APIs"}


class MetaMixin(DatabaseCore):
    """`pipeline_meta` statements of `DatabaseService`."""

    def data_world(self) -> str | None:
        """The world the database's data comes from, or None before anything was ingested."""
        with self.engine.connect() as conn:
            value: str | None = conn.scalar(select(PipelineMeta.value).where(PipelineMeta.key == WORLD))
        return value

    def claim_world(self, world: str) -> None:
        """Stamp the database with `world` if it has none; refuse (WorldMismatch) if it has the other."""
        with self.transaction() as conn:
            stmt = dialect_insert(conn, PipelineMeta).values(
                key=WORLD, value=world, updated_at=self.db_now(conn)
            )
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            stamped = conn.scalar(select(PipelineMeta.value).where(PipelineMeta.key == WORLD))
        if stamped != world:
            msg = (
                f"this database holds data from {WORLD_TEXT.get(stamped or '', stamped)}, but the settings"
                f" point at {WORLD_TEXT.get(world, world)}; use another DATABASE_URL"
                " (the demo's is in data/demo.env)"
            )
            raise WorldMismatch(msg)

    def claim_meta(self, key: str, value: str, *, replacing: str | None = None) -> str:
        """Set a fact if it is absent (or, given `replacing`, if it still holds that value); returns the
        fact as it stands afterwards, so a caller knows whether its claim won."""
        with self.transaction() as conn:
            now = self.db_now(conn)
            if replacing is not None:
                conn.execute(
                    update(PipelineMeta)
                    .where(PipelineMeta.key == key, PipelineMeta.value == replacing)
                    .values(value=value, updated_at=now)
                )
            # Absent (never set, or removed meanwhile): insert, unless someone else just did.
            stmt = dialect_insert(conn, PipelineMeta).values(key=key, value=value, updated_at=now)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            stands: str = conn.execute(select(PipelineMeta.value).where(PipelineMeta.key == key)).scalar_one()
        return stands

    def delete_meta(self, key: str, *, value: str) -> None:
        """Remove a fact, only if it still holds `value` (someone else's is left alone)."""
        with self.transaction() as conn:
            conn.execute(delete(PipelineMeta).where(PipelineMeta.key == key, PipelineMeta.value == value))

    def replica_lag_seconds(self) -> float | None:
        """How far this database, when it is a PostgreSQL standby, trails its primary, in seconds: 0 when
        it streams from its primary and has replayed all it received (an idle primary does not make a
        standby look behind), else the age of the last transaction it replayed (so a standby cut off from
        its primary shows its age growing, not 0). None when it is not a standby (SQLite, or a primary)."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT pg_is_in_recovery(),"
                    " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
                    " AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0"
                    " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
                )
            ).one()
        if not row[0]:
            return None
        return float(row[1] or 0)
