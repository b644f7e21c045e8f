"""The ingestion run log (filtered, newest first; one run with its reruns), data-quality findings and
incidents."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import StringConstraints

from pipeline.api import convert
from pipeline.api.context import Ctx, IsoTime, check_order, utc_time
from pipeline.api.models import Finding, Item, Page, Run, RunDetail
from pipeline.api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    Limit,
    decode_cursor,
    encode_cursor,
    from_micros,
    micros,
)
from pipeline.api.problems import not_found
from pipeline.api.routes.common import ID_RANGE, TIME_RANGE, RunId, documented, reply
from pipeline.schemas import CoinMetadataData, IncidentData
from pipeline.store.api_reads import RunFilter, newest

router = APIRouter(tags=["runs and quality"])

Status = Literal["running", "success", "partial", "failed"]
Source = Literal["blockchair", "coingecko"]
CoinNames = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None,
    Query(max_length=20, description="Coins by symbol, CoinGecko id or chain (repeat for several)."),
]


def _names(coin: CoinMetadataData) -> list[str]:
    """The names a coin's runs and findings are recorded under (CoinGecko id, chain, symbol)."""
    return list(dict.fromkeys(n for n in (coin.coingecko_id, coin.blockchair_chain, coin.symbol) if n))


@router.get("/runs", response_model=Page[Run], responses=documented(400))
def list_runs(
    request: Request,
    ctx: Ctx,
    status: Annotated[list[Status] | None, Query(max_length=4, description="Any of these statuses.")] = None,
    source: Annotated[list[Source] | None, Query(max_length=2, description="Any of these sources.")] = None,
    coin: CoinNames = None,
    data_type: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]] | None,
        Query(max_length=20, description="Any of these data types (blocks, transactions, prices ...)."),
    ] = None,
    since: Annotated[
        IsoTime | None, Query(description="Started at or after, ISO 8601 (UTC by default).")
    ] = None,
    until: Annotated[IsoTime | None, Query(description="Started at or before.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """Ingestion runs matching the filters, newest first (by start time, then id)."""
    since, until = utc_time(since, "since"), utc_time(until, "until")
    check_order(since, until, ("since", "until"))
    coins = [ctx.coin(name, location="query") for name in coin or []]
    runs = RunFilter(
        statuses=sorted(set(status or [])),
        sources=sorted(set(source or [])),
        coins=sorted({name for c in coins for name in _names(c)}),
        data_types=sorted(set(data_type or [])),
        since=since,
        until=until,
    )
    scope = {"filter": runs}
    after = None
    if cursor:
        key = decode_cursor(cursor, "runs", scope, [TIME_RANGE, ID_RANGE]).key
        after = (from_micros(int(key[0])), int(key[1]))
    rows = ctx.db.runs_page(runs, limit=limit + 1, after=after)
    page, more = rows[:limit], len(rows) > limit
    last = page[-1].record if page else None
    document = Page[Run](
        data=[convert.run(r.record) for r in page],
        next_cursor=(
            encode_cursor("runs", scope, [micros(last.started_at), last.id]) if more and last else None
        ),
        limit=limit,
        data_as_of=newest([r.updated_at for r in page]),
    )
    return reply(request, ctx, document)


@router.get("/runs/{run_id}", response_model=Item[RunDetail], responses=documented(400, 404))
def get_run(request: Request, ctx: Ctx, run_id: RunId) -> Response:
    """One run, with the reruns made from it, its latest replay request and its rejected samples."""
    try:
        run = ctx.db.get_run(run_id)
    except LookupError:
        raise not_found("run_id", f"no ingestion run with id {run_id}") from None
    children = ctx.db.get_child_runs(run_id)
    detail = RunDetail(
        **convert.run(run).model_dump(),
        rejected_samples=run.rejected_samples,
        children=[convert.run(c) for c in children],
        replay_request=ctx.db.latest_request_for(run_id),
    )
    as_of = ctx.db.runs_updated_at([run_id, *(c.id for c in children)])
    return reply(request, ctx, Item[RunDetail](data=detail, data_as_of=as_of))


@router.get("/quality/findings", response_model=Page[Finding], responses=documented(400))
def list_findings(
    request: Request,
    ctx: Ctx,
    coin: CoinNames = None,
    severity: Annotated[Literal["warn", "error"] | None, Query(description="Only this severity.")] = None,
    run: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only the findings of this run.")
    ] = None,
    since: Annotated[
        IsoTime | None, Query(description="Found at or after, ISO 8601 (UTC by default).")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """Stored data-quality findings, newest first."""
    since = utc_time(since, "since")
    subjects = sorted({n for name in coin or [] for n in _names(ctx.coin(name, location="query"))})
    scope = {"subjects": subjects, "severity": severity, "run": run, "since": since}
    before = None
    if cursor:
        before = int(decode_cursor(cursor, "findings", scope, [ID_RANGE]).key[0])
    rows = ctx.db.findings_page(
        limit=limit + 1, subjects=subjects, severity=severity, run_id=run, since=since, before=before
    )
    page, more = rows[:limit], len(rows) > limit
    document = Page[Finding](
        data=[convert.finding(r) for r in page],
        next_cursor=encode_cursor("findings", scope, [page[-1]["id"]]) if more else None,
        limit=limit,
        data_as_of=newest([convert.utc(r["created_at"]) for r in page]),
    )
    return reply(request, ctx, document)


@router.get("/incidents", response_model=Item[list[IncidentData]], responses=documented(400))
def list_incidents(
    request: Request,
    ctx: Ctx,
    open_only: Annotated[
        bool, Query(alias="open", description="Only the open incidents (true), or all, newest first.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many (newest first).")] = 200,
) -> Response:
    """Incidents as the Incidents page shows them: open first, then by when they opened (the watcher
    keeps at most one open incident per kind and key, so the list stays short)."""
    rows = ctx.db.get_incidents(open_only=open_only, limit=limit)
    changed = [t for i in rows for t in (i.opened_at, i.resolved_at, i.acknowledged_at, i.notified_at)]
    return reply(request, ctx, Item[list[IncidentData]](data=rows, data_as_of=newest(changed)))


__all__ = ["router"]
