"""The audit log (`audit_log`): every write action, who did it, and how it ended.

Writers record an action inside the transaction of the write itself (pass `conn`), so the change and its
audit row commit together or not at all: a rerun queued is always a rerun audited. A refused attempt (a
viewer's forged rerun, say) is recorded on its own with outcome "denied". Rows are never updated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select

from pipeline.actors import Actor
from pipeline.models import AuditEntry, ReplayRequest
from pipeline.schemas import AuditEntryData
from pipeline.store.engine import DatabaseCore

OUTCOMES = ("ok", "denied", "failed")
_TEXT = 200  # the width of actor and target


class AuditLogMixin(DatabaseCore):
    """`audit_log` statements of `DatabaseService`."""

    def record_audit(
        self,
        actor: Actor,
        action: str,
        *,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        outcome: str = "ok",
        detail: str | None = None,
        run_id: int | None = None,
        request_id: int | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Append one action to the audit log; inside `conn`'s transaction when given, else in its own."""
        if outcome not in OUTCOMES:
            msg = f"unknown audit outcome {outcome!r} (one of {', '.join(OUTCOMES)})"
            raise ValueError(msg)
        if conn is None:
            with self.transaction() as own:
                self._insert_audit(own, actor, action, target, params, outcome, detail, run_id, request_id)
            return
        self._insert_audit(conn, actor, action, target, params, outcome, detail, run_id, request_id)

    def _insert_audit(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        target: str | None,
        params: dict[str, Any] | None,
        outcome: str,
        detail: str | None,
        run_id: int | None,
        request_id: int | None,
    ) -> None:
        conn.execute(
            insert(AuditEntry).values(
                at=self.db_now(conn),
                actor=actor.name[:_TEXT],
                via=actor.via,
                role=actor.role,
                action=action[:32],
                target=target[:_TEXT] if target else None,
                params=params or None,
                outcome=outcome,
                detail=detail,
                run_id=run_id,
                request_id=request_id,
            )
        )

    def audit_entries(
        self,
        *,
        limit: int = 100,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        via: str | None = None,
        run_id: int | None = None,
    ) -> list[AuditEntryData]:
        """The newest actions first, filtered by time, actor (exact name), action, channel or run."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        if actor is not None:
            stmt = stmt.where(AuditEntry.actor == actor)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        if via is not None:
            stmt = stmt.where(AuditEntry.via == via)
        if run_id is not None:
            stmt = stmt.where(AuditEntry.run_id == run_id)
        return self._select_models(stmt, AuditEntryData)

    def audit_for_runs(self, run_ids: list[int] | tuple[int, ...]) -> dict[int, list[AuditEntryData]]:
        """Run id -> the actions about it (a rerun of it) and the actions that caused it (the request whose
        replay produced it), oldest first; runs with none are left out."""
        if not run_ids:
            return {}
        ids = list(dict.fromkeys(run_ids))
        caused = select(ReplayRequest.id, ReplayRequest.result_run_id).where(
            ReplayRequest.result_run_id.in_(ids)
        )
        with self.engine.connect() as conn:
            result_of = {row[0]: row[1] for row in conn.execute(caused) if row[1] is not None}
        stmt = (
            select(AuditEntry)
            .where(or_(AuditEntry.run_id.in_(ids), AuditEntry.request_id.in_(list(result_of) or [-1])))
            .order_by(AuditEntry.id)
        )
        found: dict[int, list[AuditEntryData]] = {}
        for entry in self._select_models(stmt, AuditEntryData):
            if entry.run_id in ids:
                found.setdefault(entry.run_id, []).append(entry)
            result = result_of.get(entry.request_id) if entry.request_id is not None else None
            if result is not None and result != entry.run_id:
                found.setdefault(result, []).append(entry)
        return found
