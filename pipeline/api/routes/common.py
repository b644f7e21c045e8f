"""What the route modules share: path and query parameter types, cursor key ranges, replies, and the
error responses each route documents."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import Path, Request, Response
from pydantic import BaseModel

from pipeline.api.context import EARLIEST, LATEST, ApiContext
from pipeline.api.pagination import micros
from pipeline.api.problems import Problem
from pipeline.api.responses import respond

CoinPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="A coin's symbol (`BTC`), CoinGecko id (`bitcoin`) or Blockchair chain, any case.",
    ),
]
Height = Annotated[int, Path(ge=0, le=2**63 - 1, description="A block height.")]
RunId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A run's id.")]

# Ranges of the values cursors carry (checked when a cursor is decoded).
TIME_RANGE = (micros(EARLIEST), micros(LATEST))
DAY_RANGE = (EARLIEST.date().toordinal(), LATEST.date().toordinal())
HEIGHT_RANGE = (0, 2**63 - 1)
ID_RANGE = (0, 2**31 - 1)


def midnight(day: date) -> datetime:
    """00:00 UTC of a day."""
    return datetime.combine(day, time(0), UTC)


def reply(request: Request, ctx: ApiContext, document: BaseModel) -> Response:
    """A document as the response, with its cache validators."""
    return respond(request, document, private=ctx.private)


_DESCRIPTIONS = {
    304: "Not Modified: the client's copy (If-None-Match / If-Modified-Since) is current.",
    400: "A parameter is malformed or out of range, or the cursor is invalid.",
    404: "No such resource is stored.",
    503: "The database does not answer (with Retry-After) or cannot be used.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: 304, and problems for these statuses and 503."""
    responses: dict[int | str, dict[str, Any]] = {304: {"description": _DESCRIPTIONS[304]}}
    for status in (*statuses, 503):
        responses[status] = {"model": Problem, "description": _DESCRIPTIONS[status]}
    return responses
