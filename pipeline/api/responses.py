"""JSON responses with validators for HTTP caching: ETag, Last-Modified, and 304 Not Modified.

The body is serialised once, here; its ETag is a digest of those bytes (a strong validator: it changes
with any byte, `data_as_of` included), and Last-Modified is the document's `data_as_of`. A request whose
If-None-Match names the current ETag, or, without If-None-Match, whose If-Modified-Since is not older
than `data_as_of` (to the second, as HTTP dates go), is answered 304 with no body (RFC 9110 13.1).
Responses must be revalidated before reuse (`Cache-Control: no-cache`), and with API keys they are
`private` as well, so a shared cache never hands one client's answer to another. The answers to writes
(`written`) carry no validators and `Cache-Control: no-store`: no cache keeps them.
"""

from __future__ import annotations

import hashlib
from email.utils import format_datetime

from fastapi import Request, Response
from pydantic import BaseModel

from pipeline.api.convert import utc

JSON = "application/json"


def etag_of(body: bytes) -> str:
    """A strong entity tag for a body."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def not_modified(request: Request, etag: str) -> bool:
    """Whether the client's copy is current: its If-None-Match names this body's ETag.

    If-Modified-Since alone never gives a 304. `data_as_of` (sent as Last-Modified) is the newest stored
    change a response reflects, but some content moves without one: a worker's heartbeat going stale, a
    replay request on a run, a deleted row, a silenced incident. The ETag is a digest of the finished
    body, so it is exact, and answering by date would save no work (RFC 9110 allows ignoring the date).
    """
    match = request.headers.get("if-none-match")
    if match is None:
        return False
    tags = _tags(match)
    return "*" in tags or etag in tags


def respond(request: Request, document: BaseModel, *, private: bool, status_code: int = 200) -> Response:
    """The document as JSON with its validators, or 304 when the client's copy is current."""
    body = document.model_dump_json().encode()
    etag = etag_of(body)
    as_of = utc(getattr(document, "data_as_of", None))
    headers = {"ETag": etag, "Cache-Control": "private, no-cache" if private else "no-cache"}
    if as_of is not None:
        headers["Last-Modified"] = format_datetime(as_of, usegmt=True)
    if status_code == 200 and not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status_code, media_type=JSON, headers=headers)


def written(document: BaseModel, *, status_code: int = 200) -> Response:
    """The answer to a write (a POST): the document, never stored by a cache (`Cache-Control: no-store`)
    and without validators, since it tells what this write did rather than the state of a resource that a
    later GET could revalidate; an If-None-Match sent with a write never turns it into a 304."""
    return Response(
        document.model_dump_json().encode(),
        status_code=status_code,
        media_type=JSON,
        headers={"Cache-Control": "no-store"},
    )
