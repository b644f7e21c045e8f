"""Who may read: API keys with scopes, and where the API may listen without them.

With API_KEYS set (`KEY:SCOPE[+SCOPE]` entries separated by commas, see `pipeline.config.parse_api_keys`),
every /v1 request must send a key in the `X-API-Key` header: none, or one that is not configured, is a
401; a key without the scope the route needs is a 403. Scopes: `read` (every /v1 resource) and `health`
(only /v1/health, for a monitor that should see nothing else). A key is compared with every configured key by
`hmac.compare_digest` (of their SHA-256 digests), without stopping at a match, so timing tells nothing
about which key, or how much of one, was right. Keys are never logged, echoed or stored: a problem says
only that a key is missing or wrong. `/docs`, `/openapi.json` and the `/problems/...` pages stay open.

Where the API may listen without keys is `pipeline.api.binding`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader

from pipeline.api.problems import ApiProblem
from pipeline.config import Settings, parse_api_keys

HEADER = "X-API-Key"
CHALLENGE = {"WWW-Authenticate": f'APIKey header="{HEADER}"'}
_scheme = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key of API_KEYS: scope `read` for every /v1 resource, `health` for /v1/health.",
)


class KeyRing:
    """The configured keys and their scopes, matched in constant time."""

    def __init__(self, keys: dict[str, frozenset[str]]) -> None:
        self._keys = [(_digest(key), scopes) for key, scopes in keys.items()]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys of API_KEYS."""
        return cls(parse_api_keys(settings.API_KEYS))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def scopes_of(self, given: str) -> frozenset[str] | None:
        """The scopes of the key `given`, or None when it is not configured (every key is compared)."""
        candidate = _digest(given)
        found: frozenset[str] | None = None
        for key, scopes in self._keys:
            if hmac.compare_digest(candidate, key):
                found = scopes
        return found


def _digest(key: str) -> bytes:
    """Keys are compared as SHA-256 digests: of equal length, so the comparison time tells nothing."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def require_scope(ring: KeyRing, *accepted: str) -> Callable[[str | None], None]:
    """A dependency that lets a request through only with a key in X-API-Key that has one of the
    `accepted` scopes."""

    def check(key: Annotated[str | None, Security(_scheme)] = None) -> None:
        if not key:
            raise ApiProblem("unauthorized", f"send an API key in the {HEADER} header", headers=CHALLENGE)
        scopes = ring.scopes_of(key)
        if scopes is None:
            raise ApiProblem("unauthorized", f"the {HEADER} key is not valid", headers=CHALLENGE)
        if scopes.isdisjoint(accepted):
            raise ApiProblem("forbidden", f"this key lacks the {' or '.join(map(repr, accepted))} scope")

    return check
