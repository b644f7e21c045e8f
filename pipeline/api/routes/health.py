"""Health: whether the database answers and a scheduler beats (the one resource of the `health` scope,
so a monitor's key can see it and nothing else)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pipeline.api.context import Ctx
from pipeline.api.models import Health, Item
from pipeline.api.responses import respond
from pipeline.api.routes.common import documented
from pipeline.schemas import WorkerState
from pipeline.store.api_reads import newest

router = APIRouter(tags=["reports"])


@router.get(
    "/health",
    response_model=Item[Health],
    responses={
        **documented(),
        503: {"model": Item[Health], "description": "The database does not answer, or cannot be used."},
    },
)
def health(request: Request, ctx: Ctx) -> Response:
    """Whether the database answers (its latency and schema revision) and which scheduler workers beat.
    503 (with the same document) when the database does not answer."""
    database = ctx.db.health_check()
    workers = ctx.db.get_workers() if database.ok else []
    document = Item[Health](
        data=Health(
            database=database,
            scheduler_alive=any(w.state == WorkerState.UP for w in workers),
            workers=workers,
        ),
        data_as_of=newest([w.last_beat for w in workers]),
    )
    return respond(request, document, private=ctx.private, status_code=200 if database.ok else 503)


__all__ = ["router"]
