"""Who may read and write: API keys with names and scopes, and where the API may listen without them.

With API_KEYS set (`[NAME:]KEY:SCOPE[+SCOPE]` entries separated by commas, see
`pipeline.config.parse_api_keys`), every /v1 request must send a key in the `X-API-Key` header: none, or
one that is not configured, is a 401; a key without the scope the route needs is a 403. Scopes: `read`
(every /v1 resource), `health` (only /v1/health, for a monitor that should see nothing else), `operate`
(the write actions of `pipeline.api.routes.actions`, and the audit log) and `audit` (the audit log only).
A key's name (or, unnamed, `key sha256:<8 hex>`) is who its writes are recorded as in the audit log; the
key matched is kept on the request (`request.state.api_key`) for the routes that need its name. Without
API_KEYS nothing can write: a write must always be attributable.

A key is compared with every configured key by `hmac.compare_digest` (of their SHA-256 digests), without
stopping at a match, so timing tells nothing about which key, or how much of one, was right. Keys are
never logged, echoed or stored: a problem says only that a key is missing or wrong. `/docs`,
`/openapi.json` and the `/problems/...` pages stay open.

Where the API may listen without keys is `pipeline.api.binding`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from pipeline.api.problems import ApiProblem
from pipeline.config import ApiKeyGrant, Settings, parse_api_keys

HEADER = "X-API-Key"
CHALLENGE = {"WWW-Authenticate": f'APIKey header="{HEADER}"'}
_scheme = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description=(
        "An API key of API_KEYS: scope `read` for every /v1 resource, `health` for /v1/health, `operate`"
        " for the write actions and the audit log, `audit` for the audit log."
    ),
)


class KeyRing:
    """The configured keys with their names and scopes, matched in constant time."""

    def __init__(self, keys: dict[str, ApiKeyGrant]) -> None:
        self._keys = [(_digest(key), grant) for key, grant in keys.items()]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys of API_KEYS."""
        return cls(parse_api_keys(settings.API_KEYS))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def grant_of(self, given: str) -> ApiKeyGrant | None:
        """The name and scopes of the key `given`, or None when it is not configured (every key is
        compared)."""
        candidate = _digest(given)
        found: ApiKeyGrant | None = None
        for key, grant in self._keys:
            if hmac.compare_digest(candidate, key):
                found = grant
        return found


def _digest(key: str) -> bytes:
    """Keys are compared as SHA-256 digests: of equal length, so the comparison time tells nothing."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _authenticate(ring: KeyRing, request: Request, key: str | None) -> ApiKeyGrant:
    """The grant of the key sent (kept on the request), or a 401 without one or with an unknown one."""
    if not key:
        raise ApiProblem("unauthorized", f"send an API key in the {HEADER} header", headers=CHALLENGE)
    grant = ring.grant_of(key)
    if grant is None:
        raise ApiProblem("unauthorized", f"the {HEADER} key is not valid", headers=CHALLENGE)
    request.state.api_key = grant
    return grant


def require_scope(ring: KeyRing, *accepted: str) -> Callable[..., None]:
    """A dependency that lets a request through only with a key in X-API-Key that has one of the
    `accepted` scopes."""

    def check(request: Request, key: Annotated[str | None, Security(_scheme)] = None) -> None:
        grant = _authenticate(ring, request, key)
        if grant.scopes.isdisjoint(accepted):
            raise ApiProblem("forbidden", f"this key lacks the {' or '.join(map(repr, accepted))} scope")

    return check


def require_key(ring: KeyRing) -> Callable[..., None]:
    """A dependency that lets a request through with any configured key in X-API-Key (kept on the request
    as `request.state.api_key`); the route itself checks the scope, so that it can audit a refusal."""

    def check(request: Request, key: Annotated[str | None, Security(_scheme)] = None) -> None:
        _authenticate(ring, request, key)

    return check


def api_key_of(request: Request) -> ApiKeyGrant | None:
    """The key the request was let in with (its name and scopes), None when the API has no keys."""
    grant: ApiKeyGrant | None = getattr(request.state, "api_key", None)
    return grant
