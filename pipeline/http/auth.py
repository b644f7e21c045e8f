"""Where an API key travels: nowhere, in a request header, or in a query parameter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.http.redact import secret_forms

__all__ = ["NO_AUTH", "Auth"]


@dataclass(frozen=True)
class Auth:
    """Where the API key goes: nowhere, a request header, or a query parameter."""

    kind: Literal["none", "header", "query"]
    name: str = ""
    secret: SecretStr | None = None

    def __post_init__(self) -> None:
        """Reject inconsistent settings early (the message never contains the secret)."""
        if self.kind not in ("none", "header", "query"):
            msg = f"Auth kind must be 'none', 'header' or 'query', not {self.kind!r}"
            raise ConfigError(msg)
        has_secret = self.secret is not None and bool(self.secret.get_secret_value())
        if self.kind == "none" and has_secret:
            msg = "Auth kind 'none' takes no secret; use 'header' or 'query'"
            raise ConfigError(msg)
        if self.kind != "none" and not (self.name and has_secret):
            msg = f"Auth kind {self.kind!r} needs a parameter name and a non-empty secret"
            raise ConfigError(msg)

    @classmethod
    def header(cls, name: str, secret: str | SecretStr) -> Auth:
        """Send the key in the request header `name`."""
        return cls("header", name, secret if isinstance(secret, SecretStr) else SecretStr(secret))

    @classmethod
    def query(cls, name: str, secret: str | SecretStr) -> Auth:
        """Send the key as the query parameter `name`."""
        return cls("query", name, secret if isinstance(secret, SecretStr) else SecretStr(secret))

    def apply(
        self, headers: Mapping[str, str], params: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Return copies of headers and params with the key added where configured."""
        new_headers, new_params = dict(headers), dict(params)
        value = self.secret.get_secret_value() if self.secret is not None else ""
        if self.kind == "header":
            new_headers[self.name] = value
        elif self.kind == "query":
            new_params[self.name] = value
        return new_headers, new_params

    def secret_forms(self) -> tuple[str, ...]:
        """The key as it may appear in text: raw and URL-encoded, longest first."""
        return secret_forms(self.secret.get_secret_value() if self.secret is not None else "")


NO_AUTH: Final = Auth("none")
