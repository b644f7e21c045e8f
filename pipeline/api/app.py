"""The FastAPI app factory of the REST API: `create_app(settings, db=None)`.

Routes live under /v1 (`pipeline.api.routes`): resources to read, and the write actions with the audit
log (`routes.actions`, which need a key with the `operate` scope); /openapi.json, /docs and
/problems/<kind> are open even when API keys are required. Every error is an RFC 9457 problem
(`pipeline.api.problems`), every read a JSON document with ETag and Last-Modified
(`pipeline.api.responses`). Tests hand in their own database; `crypto-pipeline api` builds one from the
settings (the replica of DATABASE_READ_URL when set; writes go to DATABASE_URL, see `ApiContext.writer`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from pipeline.api.context import ApiContext
from pipeline.api.problems import PROBLEM_MEDIA_TYPE, Problem, describe_kind, install_handlers, not_found
from pipeline.api.routes import actions, chains, coins, health, reports, runs
from pipeline.api.security import KeyRing, require_key, require_scope
from pipeline.config import Settings
from pipeline.database import DatabaseService

API_VERSION = "1.0.0"
READ = ("read",)
HEALTH = ("read", "health")  # a monitor's key sees /v1/health and nothing else
DESCRIPTION = """\
The data crypto-pipeline holds: coins, prices (daily, intraday in several quotes, candles), blocks,
transactions, watched addresses, the run log, coverage, gaps, data quality, freshness, health, statistics
and analytics; and the operator's write actions (rerun a run, acknowledge or silence an incident, fill the
gaps), each recorded in the audit log under the name of the key that did it.

- **Amounts** are JSON strings holding the exact decimal (wei above 2^64, prices of 1e-12); native
  amounts are in the chain's base unit (see a coin's `decimals`). **Times** are ISO 8601 UTC.
- **Lists** are pages: pass `next_cursor` back as `cursor` (with the same filters) until it is null;
  `limit` is 1 to 1000 (default 100). Paging while new rows arrive returns every row that existed when it
  began exactly once.
- Every document carries **`data_as_of`**, the newest stored change it reflects, also sent as
  `Last-Modified`, with an `ETag`; `If-None-Match` / `If-Modified-Since` get 304.
- **Errors** are `application/problem+json` (RFC 9457) naming the parameters at fault in `errors`.
- With `API_KEYS` set, send a key in `X-API-Key` (401 without or with an unknown key, 403 without the
  scope: `read` for everything, `health` for /v1/health only, `operate` for the write actions and
  /v1/audit, `audit` for /v1/audit). Writes go to the primary database and are never cached; without
  `API_KEYS` every write is refused (403), since it could not be attributed to anyone.
"""


def create_app(settings: Settings, db: DatabaseService | None = None) -> FastAPI:
    """The API over `db` (default: a service on the settings' database, created here)."""
    keys = KeyRing.from_settings(settings)
    app = FastAPI(
        title="crypto-pipeline API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.context = ApiContext(
        settings=settings, db=db or DatabaseService(settings=settings), private=bool(keys)
    )
    install_handlers(app)
    for module, scopes in ((coins, READ), (chains, READ), (runs, READ), (reports, READ), (health, HEALTH)):
        guard = [Depends(require_scope(keys, *scopes))] if keys else []
        app.include_router(
            module.router, prefix="/v1", dependencies=guard, responses=_auth_responses(scopes) if keys else {}
        )
    # The actions check their scope themselves (a refused write is audited); here only that a key is known.
    app.include_router(
        actions.router,
        prefix="/v1",
        dependencies=[Depends(require_key(keys))] if keys else [],
        responses={401: UNAUTHORIZED} if keys else {},
    )

    @app.get("/problems/{kind}", include_in_schema=False)
    def problem_kind(kind: str) -> dict[str, Any]:
        """What a problem `type` means."""
        described = describe_kind(kind)
        if described is None:
            raise not_found("kind", f"no problem type {kind[:64]!r}")
        return described

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


UNAUTHORIZED = {"model": Problem, "description": "No API key, or one that is not configured."}


def _auth_responses(scopes: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    """The 401 and 403 a route documents when API keys are required."""
    return {
        401: UNAUTHORIZED,
        403: {"model": Problem, "description": f"The key has none of the scopes {', '.join(scopes)}."},
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with errors as they are sent: problem+json, and no 422 (bad input is a 400)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                content = response.get("content", {})
                json_body = content.get("application/json", {})
                if int(status) >= 400 and json_body.get("schema", {}).get("$ref", "").endswith("/Problem"):
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
