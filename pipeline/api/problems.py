"""Errors as RFC 9457 problem details (`application/problem+json`), and the handlers that make them.

Every error the API answers with is a `Problem`: `type` (a URI naming the kind, described at
`/problems/<kind>`), `title`, `status`, `detail`, `instance` (the request's path) and `errors`, the
parameters at fault. Bad input is a 4xx naming the parameter, never a 500; a database that does not
answer is a 503 with Retry-After. No response carries a traceback, a driver's message or a secret: the
handlers write their own text, and an unexpected error is logged here and answered with a fixed one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import DatabaseError, DatabaseUnavailable

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5
MAX_INSTANCE_CHARS = 300


@dataclass(frozen=True)
class Kind:
    """One kind of problem: its status, title and what it means (served at /problems/<slug>)."""

    slug: str
    status: int
    title: str
    description: str

    @property
    def type(self) -> str:
        """The problem's `type` URI (relative to the API's address; `about:blank` for a bare status)."""
        return f"/problems/{self.slug}" if self.slug else "about:blank"


KINDS = {
    kind.slug: kind
    for kind in (
        Kind("invalid-parameter", 400, "Invalid parameter", "A parameter is malformed or out of range."),
        Kind(
            "invalid-cursor",
            400,
            "Invalid cursor",
            "The cursor is not one this API issued for this listing (malformed, altered, or from"
            " another listing or filter); start again without a cursor.",
        ),
        Kind("unauthorized", 401, "API key required", "Send a valid key in the X-API-Key header."),
        Kind(
            "forbidden",
            403,
            "Scope missing",
            "The API key does not grant the scope this needs. Writes and the audit log need a key with the"
            " `operate` scope (the audit log also `audit`), so an API without API_KEYS refuses them.",
        ),
        Kind("not-found", 404, "Not found", "No such resource is stored."),
        Kind(
            "method-not-allowed",
            405,
            "Method not allowed",
            "This path does not take this method (see Allow): resources are read with GET, the write"
            " actions are POSTs.",
        ),
        Kind(
            "conflict",
            409,
            "Conflict",
            "The resource is not in a state that allows this action now (a run still running cannot be"
            " rerun); try again once it has changed.",
        ),
        Kind(
            "database-unavailable",
            503,
            "Database unavailable",
            "The database does not answer right now; try again after Retry-After seconds.",
        ),
        Kind(
            "database-error",
            503,
            "Database cannot be used",
            "The database cannot be used as it is (missing, damaged, or at another schema version).",
        ),
        Kind("internal-error", 500, "Internal error", "Something unexpected failed; it has been logged."),
    )
}
_BY_STATUS = {kind.status: kind for kind in reversed(KINDS.values())}


class ParameterError(BaseModel):
    """One parameter at fault."""

    name: str = Field(description="The parameter's name, e.g. `limit`.")
    location: str = Field(description="Where it was sent: `query`, `path` or `header`.")
    detail: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="A URI naming the kind of problem (described at that address).")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The path of the request.")
    errors: list[ParameterError] = Field(default_factory=list, description="The parameters at fault.")


class ApiProblem(Exception):
    """Raised by a route to answer with a problem of a kind, optionally naming the parameters at fault."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        errors: list[ParameterError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.kind = KINDS[slug]
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        super().__init__(detail)


def bad_parameter(
    name: str, detail: str, *, location: str = "query", slug: str = "invalid-parameter"
) -> ApiProblem:
    """A 400 about one parameter."""
    return ApiProblem(
        slug, f"{name}: {detail}", errors=[ParameterError(name=name, location=location, detail=detail)]
    )


def not_found(name: str, detail: str, *, location: str = "path") -> ApiProblem:
    """A 404 naming the path parameter that names nothing stored."""
    return ApiProblem(
        "not-found", detail, errors=[ParameterError(name=name, location=location, detail=detail)]
    )


def problem_response(
    request: Request,
    kind: Kind,
    detail: str,
    *,
    errors: list[ParameterError] | None = None,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
) -> JSONResponse:
    """The problem+json response of a kind."""
    body = Problem(
        type=kind.type,
        title=kind.title,
        status=status or kind.status,
        detail=detail,
        instance=request.url.path[:MAX_INSTANCE_CHARS],
        errors=errors or [],
    )
    return JSONResponse(
        body.model_dump(), status_code=body.status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE
    )


def _validation_errors(exc: RequestValidationError) -> list[ParameterError]:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or location
        errors.append(ParameterError(name=name, location=location, detail=str(error.get("msg", "invalid"))))
    return errors


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    detail = "; ".join(f"{e.name}: {e.detail}" for e in errors) or "invalid request"
    return problem_response(request, KINDS["invalid-parameter"], detail, errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _BY_STATUS.get(exc.status_code)
    if kind is None:  # a status without a kind of its own: RFC 9457's about:blank, titled by the status
        kind = Kind("", exc.status_code, HTTPStatus(exc.status_code).phrase, "")
    detail = exc.detail if isinstance(exc.detail, str) else kind.title
    return problem_response(request, kind, detail, headers=exc.headers, status=exc.status_code)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(request, exc.kind, exc.detail, errors=exc.errors, headers=exc.headers)


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    # The error's own message is one line without a password, but may name a file: say less.
    if isinstance(exc, DatabaseUnavailable):
        return problem_response(
            request,
            KINDS["database-unavailable"],
            "the database does not answer right now",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    kind_name = exc.kind if isinstance(exc, DatabaseError) else "DatabaseError"
    return problem_response(request, KINDS["database-error"], f"the database cannot be used ({kind_name})")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return problem_response(request, KINDS["internal-error"], "an unexpected error occurred")


def install_handlers(app: FastAPI) -> None:
    """Answer every error of the app with a problem (FastAPI's own 422 and HTTP errors included)."""
    handlers: dict[Any, Any] = {
        RequestValidationError: _on_validation,
        StarletteHTTPException: _on_http,
        ApiProblem: _on_problem,
        DatabaseError: _on_database,
        Exception: _on_unexpected,
    }
    for error, handler in handlers.items():
        app.add_exception_handler(error, handler)


def describe_kind(slug: str) -> dict[str, Any] | None:
    """What a problem type means, for its /problems/<slug> page; None for an unknown one."""
    kind = KINDS.get(slug)
    if kind is None:
        return None
    return {"type": kind.type, "title": kind.title, "status": kind.status, "description": kind.description}
