"""The write actions, audited: rerun a run, acknowledge or silence an incident, fill the gaps; and the
audit log that records who did them.

Every write needs an API key with the `operate` scope, and is done as `Actor(<the key's name>, "api")`:
the store commits the write and its audit row together. Without API_KEYS the API refuses every write (a
write must always be attributable to a key); a key without the scope is refused with a 403, and the
refusal is itself recorded ("denied"). Writes go to the primary database (`ApiContext.writer`), never to
the replica the reads may come from. Their answers are never cached (`responses.written`).

The audit log (GET /v1/audit) names people, so `read` does not show it: it needs `operate` or `audit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pipeline.actors import ACTIONS, Actor
from pipeline.api.context import Ctx, IsoTime, utc_time
from pipeline.api.convert import utc
from pipeline.api.models import Item
from pipeline.api.problems import ApiProblem, Problem, not_found
from pipeline.api.responses import written
from pipeline.api.routes.common import RunId, reply
from pipeline.api.security import api_key_of
from pipeline.errors import DatabaseError
from pipeline.schemas import AuditEntryData, IncidentData, ReplayRequestData
from pipeline.services.gapfill import plan_fill, queue_plan
from pipeline.store.api_reads import newest

logger = logging.getLogger(__name__)

router = APIRouter(tags=["actions"])

OPERATE = "operate"
AUDIT_SCOPES = ("operate", "audit")
MAX_SILENCE_HOURS = 24 * 365
INT32 = 2**31 - 1

IncidentId = Annotated[int, Path(ge=1, le=INT32, description="An incident's id.")]

_DESCRIPTIONS = {
    400: "The body or a parameter is malformed or out of range.",
    403: "The key lacks the scope (writes need `operate`), or the API has no keys and so refuses writes.",
    404: "No such resource is stored.",
    409: "The run is still running; it can be rerun once it has ended.",
    503: "The database does not answer (with Retry-After) or cannot be used.",
}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problems a write documents: these, 400, 403 and 503 (never a 304: writes are not cached)."""
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS[status]}
        for status in sorted({400, 403, *statuses, 503})
    }


# ---------------------------------------------------------------------------------------------- who


def _target(request: Request) -> tuple[str | None, int | None]:
    """What a refused write was aimed at, from its path (not yet validated: only a plausible id counts),
    and the run id to link the refusal to."""
    for name, prefix in (("run_id", "run"), ("incident_id", "incident")):
        raw = str(request.path_params.get(name, ""))
        if raw.isdigit() and 0 < int(raw) <= INT32:
            return f"{prefix}:{int(raw)}", int(raw) if name == "run_id" else None
    return None, None


def operator(action: str) -> Callable[..., Actor]:
    """A dependency resolving who does `action`: the actor of the request's key when it has the `operate`
    scope. Without API keys it answers 403 (nothing to attribute the write to); a key without the scope
    gets a 403 too, recorded in the audit log as "denied" (the refusal stands if that record fails)."""

    def check(request: Request, ctx: Ctx) -> Actor:
        grant = api_key_of(request)
        if grant is None:
            msg = "writes need an API key with the 'operate' scope; this API has none (API_KEYS is not set)"
            raise ApiProblem("forbidden", msg)
        actor = Actor(name=grant.name, via="api")
        if OPERATE in grant.scopes:
            return actor
        msg = f"this key lacks the 'operate' scope that {action} needs"
        target, run_id = _target(request)
        try:
            ctx.writer.record_audit(actor, action, target=target, outcome="denied", detail=msg, run_id=run_id)
        except DatabaseError:  # the refusal stands whatever keeps its audit row out
            logger.exception("the refusal of %s by %s is not in the audit log", action, actor)
        raise ApiProblem("forbidden", msg)

    return check


def auditor(request: Request) -> None:
    """A dependency letting through a key with the `operate` or `audit` scope (the audit log names
    people, so `read` does not show it; nor does an API without keys)."""
    grant = api_key_of(request)
    if grant is None:
        msg = "the audit log needs an API key with the 'operate' or 'audit' scope (API_KEYS is not set)"
        raise ApiProblem("forbidden", msg)
    if grant.scopes.isdisjoint(AUDIT_SCOPES):
        raise ApiProblem("forbidden", "this key lacks the 'operate' or 'audit' scope the audit log needs")


def _requested_by(actor: Actor, how: str | None = None) -> str:
    """The `requested_by` of a replay request queued here: "api", the key's name, and how."""
    who = f"api ({actor.name})"
    return f"{who}: {how}" if how else who


def _incident_as_of(incident: IncidentData) -> datetime | None:
    """The newest change of an incident a write answers with."""
    return newest([utc(t) for t in (incident.opened_at, incident.resolved_at, incident.acknowledged_at)])


# ---------------------------------------------------------------------------------------------- bodies


class Acknowledgement(BaseModel):
    """Who is on it is the key's name; a note may say more."""

    model_config = ConfigDict(extra="forbid")

    # No NUL: PostgreSQL refuses it in text, which would turn a bad note into a 500 instead of a 400.
    note: str | None = Field(
        None, max_length=2000, pattern=r"^[^\x00]*$", description="What is being done (optional)."
    )


class Silence(BaseModel):
    """How long to hold back an incident's alerts."""

    model_config = ConfigDict(extra="forbid")

    hours: float | None = Field(
        ...,
        gt=0,
        le=MAX_SILENCE_HOURS,
        allow_inf_nan=False,
        description=f"Silence for this many hours (at most {MAX_SILENCE_HOURS}); null lifts the silence.",
    )


class FillGaps(BaseModel):
    """Which coins' gaps to fill."""

    model_config = ConfigDict(extra="forbid")

    coins: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        max_length=50,
        description="Coins by symbol, CoinGecko id or chain; omitted or null: every active coin.",
    )


class FillQueued(BaseModel):
    """What a gap fill queued for the scheduler (it serves backfills after its regular jobs)."""

    slices: int = Field(description="Slices the plan holds.")
    queued: int = Field(description="Backfill requests queued now.")
    already_queued: int = Field(description="Slices that already had an open request (not queued twice).")
    requests_by_source: dict[str, int] = Field(description="Source requests the plan will spend.")
    request_ids: list[int] = Field(description="The backfill request of every slice.")


# ---------------------------------------------------------------------------------------------- routes


@router.post(
    "/runs/{run_id}/rerun",
    status_code=202,
    response_model=Item[ReplayRequestData],
    responses=_problems(404, 409),
)
def rerun(ctx: Ctx, run_id: RunId, actor: Annotated[Actor, Depends(operator("rerun"))]) -> Response:
    """Queue a rerun of a run for the scheduler: 202 with the replay request (the open one when the run
    already has one; nothing is queued twice). 409 while the run is still running."""
    try:
        queued = ctx.writer.request_rerun(run_id, _requested_by(actor), actor=actor)
    except LookupError:
        raise not_found("run_id", f"no ingestion run with id {run_id}") from None
    except ValueError as exc:  # the only refusal of a known run: it is still running
        raise ApiProblem("conflict", str(exc)) from None
    document = Item[ReplayRequestData](data=queued, data_as_of=utc(queued.requested_at))
    return written(document, status_code=202)


@router.post(
    "/incidents/{incident_id}/acknowledge", response_model=Item[IncidentData], responses=_problems(404)
)
def acknowledge(
    ctx: Ctx,
    incident_id: IncidentId,
    actor: Annotated[Actor, Depends(operator("acknowledge"))],
    body: Annotated[Acknowledgement | None, Body()] = None,
) -> Response:
    """Record that the key's owner is on an incident (by: the key's name), with an optional note; its
    alerts keep their course."""
    note = ((body.note if body else None) or "").strip() or None
    try:
        incident = ctx.writer.acknowledge_incident(incident_id, by=actor.name, note=note, actor=actor)
    except LookupError:
        raise not_found("incident_id", f"no incident with id {incident_id}") from None
    return written(Item[IncidentData](data=incident, data_as_of=_incident_as_of(incident)))


@router.post("/incidents/{incident_id}/silence", response_model=Item[IncidentData], responses=_problems(404))
def silence(
    ctx: Ctx,
    incident_id: IncidentId,
    body: Silence,
    actor: Annotated[Actor, Depends(operator("silence"))],
) -> Response:
    """Hold back an incident's alerts for `hours`, or lift its silence (`hours`: null)."""
    writer = ctx.writer
    until = None if body.hours is None else writer.db_now() + timedelta(hours=body.hours)
    try:
        incident = writer.silence_incident(incident_id, until=until, by=actor.name, actor=actor)
    except LookupError:
        raise not_found("incident_id", f"no incident with id {incident_id}") from None
    return written(Item[IncidentData](data=incident, data_as_of=_incident_as_of(incident)))


@router.post("/gaps/fill", status_code=202, response_model=Item[FillQueued], responses=_problems())
def fill_gaps(
    ctx: Ctx,
    actor: Annotated[Actor, Depends(operator("fill_gaps"))],
    body: Annotated[FillGaps | None, Body()] = None,
) -> Response:
    """Plan the requests that close every gap (as `crypto-pipeline fill-gaps` does) and queue them as
    backfill requests for the scheduler: 202 with the counts. A slice already queued is not queued twice."""
    writer = ctx.writer
    names = body.coins if body and body.coins else None
    if names:  # each coin once, however many of its names were given
        found = [ctx.coin(name, location="body", parameter="coins") for name in names]
        coins = list({coin.symbol: coin for coin in found}.values())
    else:
        coins = writer.get_coins(active_only=True)
    plan = plan_fill(writer, ctx.settings, coins)
    started = writer.db_now()  # requests queued now are the ones requested from here on (one clock)
    queued = queue_plan(writer, plan, _requested_by(actor, "fill gaps"), actor=actor)
    new = sum(1 for r in queued if (utc(r.requested_at) or started) >= started)
    document = FillQueued(
        slices=len(plan.slices),
        queued=new,
        already_queued=len(queued) - new,
        requests_by_source=plan.requests_by_source,
        request_ids=[r.id for r in queued],
    )
    as_of = newest([utc(r.requested_at) for r in queued])
    return written(Item[FillQueued](data=document, data_as_of=as_of), status_code=202)


@router.get(
    "/audit",
    response_model=Item[list[AuditEntryData]],
    responses={304: {"description": "Not Modified: the client's copy is current."}, **_problems()},
    dependencies=[Depends(auditor)],
)
def list_audit(
    request: Request,
    ctx: Ctx,
    actor: Annotated[
        str | None,
        Query(
            min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="Only this actor (exact name)."
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(pattern=r"^[a-z_]{1,32}$", description=f"Only this action ({', '.join(sorted(ACTIONS))})."),
    ] = None,
    via: Annotated[
        Literal["dashboard", "cli", "api", "scheduler"] | None, Query(description="Only through this.")
    ] = None,
    run_id: Annotated[int | None, Query(ge=1, le=INT32, description="Only about this run.")] = None,
    since: Annotated[IsoTime | None, Query(description="At or after, ISO 8601 (UTC by default).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many (newest first).")] = 100,
) -> Response:
    """The audit log, newest first: every write action (rerun, backfill, fill gaps, acknowledge, silence,
    coin changes) from the dashboard, the CLI, the API and the scheduler, with who, when, what, its
    parameters and how it ended (`ok`, `denied`, `failed`)."""
    rows = ctx.db.audit_entries(
        limit=limit, since=utc_time(since, "since"), actor=actor, action=action, via=via, run_id=run_id
    )
    return reply(request, ctx, Item[list[AuditEntryData]](data=rows, data_as_of=newest([e.at for e in rows])))


__all__ = ["router"]
