"""Turn a reply into data or the SourceError it stands for.

The shared rules are plain HTTP: 429 is a rate limit, 401/403 a key problem, 408 and 5xx transient, any
other 4xx permanent, a redirect refused, a 2xx body that is not JSON malformed. What one API adds (where
its error code sits in a JSON body, and what its own codes mean) is a :class:`SourceRules` that the
source's module defines and passes to its client; the shared code here knows no source by name.
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, NoReturn

import requests

from pipeline.errors import (
    AuthError,
    FatalSourceError,
    RateLimitedError,
    ResponseFormatError,
    RetriableSourceError,
    SourceError,
)
from pipeline.http.redact import safe_url, scrub_query_secrets

__all__ = [
    "HTTP_RULES",
    "NOT_JSON",
    "ApiErrorReader",
    "ErrorClassChooser",
    "NotJson",
    "SourceRules",
    "as_int",
    "as_text",
    "classify_response",
    "decode_json",
    "parse_retry_after",
    "plain_api_error",
    "says_invalid_key",
]

# A message that says the key is bad means a key problem whatever the status (Blockchair answers a bad
# key with 402 "Invalid API token", a status that otherwise means "back off").
_INVALID_KEY_RE: Final = re.compile(r"invalid api (?:key|token)", re.IGNORECASE)
_TITLE_RE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SNIPPET_CHARS: Final = 100
_SNIFF_BYTES: Final = 20_000


class _Unread:
    """Marker: the response body has not been decoded yet."""


class NotJson:
    """Marker: the response body is not valid JSON."""


_UNREAD: Final = _Unread()
NOT_JSON: Final = NotJson()

# (decoded JSON body) -> (the API's error code, its error message), either None when absent.
ApiErrorReader = Callable[[Any], tuple[int | None, str | None]]
# (status, api_code, message) -> the error class this API means, or None for the shared HTTP rules.
ErrorClassChooser = Callable[[int, int | None, str | None], type[SourceError] | None]


# ---------------------------------------------------------------- reading bodies


def decode_json(response: requests.Response) -> Any:
    """Decode the body with floats as Decimal; return NOT_JSON if it is not valid JSON."""
    if not response.content:
        return NOT_JSON
    try:
        # Bytes, not response.text: JSON is UTF-8 and charset sniffing is slow and can guess wrong.
        return json.loads(response.content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return NOT_JSON


def _reject_constant(name: str) -> NoReturn:
    """Refuse NaN/Infinity: they are not JSON and never a valid amount."""
    msg = f"non-standard JSON constant {name}"
    raise ValueError(msg)


def as_int(value: Any) -> int | None:
    """An int from an int or a digit string; None otherwise (bool is not a code)."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def as_text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value.strip() else None


def plain_api_error(body: Any) -> tuple[int | None, str | None]:
    """(None, message) from the common JSON error shapes, {"error": "text"}, {"message": "text"} and
    {"error": {"message": "text"}}; (None, None) when there is none. No code: codes are per API."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        return plain_api_error(error)
    return None, as_text(error) or as_text(body.get("message"))


def says_invalid_key(message: str | None) -> bool:
    """True when an error message says the API key or token is invalid."""
    return bool(message and _INVALID_KEY_RE.search(message))


def _text_snippet(response: requests.Response) -> str:
    """The <title> of an HTML page, else the first characters of the body, whitespace collapsed."""
    text = response.content[:_SNIFF_BYTES].decode(response.encoding or "utf-8", errors="replace")
    title = _TITLE_RE.search(text)
    snippet = " ".join(html.unescape(title.group(1) if title else text).split())
    return snippet[:_SNIPPET_CHARS] or response.reason or "empty body"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value or not value.strip():
        return None
    seconds: float | None
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = _seconds_until(value.strip(), now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    """Seconds from `now` until an HTTP-date, or None if it does not parse."""
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" zones parse naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()


# ---------------------------------------------------------------- per-source rules


def _no_special_codes(status: int, api_code: int | None, message: str | None) -> type[SourceError] | None:
    """The plain HTTP meaning applies to every status."""
    return None


@dataclass(frozen=True)
class SourceRules:
    """What one API adds to the shared classification.

    `api_error` finds the API's own error code and message in a decoded JSON body (also in a 2xx body:
    a code of 400 or more there makes the reply an error, classified as if the code were its status).
    `error_class` picks the error class for the API's own codes, or returns None to leave the choice to
    the plain HTTP rules.
    """

    api_error: ApiErrorReader = plain_api_error
    error_class: ErrorClassChooser = _no_special_codes


# Plain HTTP, for a client that no source module configured.
HTTP_RULES: Final = SourceRules()


def _error_class(
    rules: SourceRules, status: int, api_code: int | None, message: str | None
) -> type[SourceError]:
    """Pick the error class: the API's own rules first, then the plain HTTP meaning of the status."""
    special = rules.error_class(status, api_code, message)
    if special is not None:
        return special
    if says_invalid_key(message):
        return AuthError
    if status == 429:
        return RateLimitedError
    if status in (401, 403):
        return AuthError
    if status == 408 or 500 <= status < 600:
        return RetriableSourceError
    # Other 4xx, and anything unexpected: the same request will fail again.
    return FatalSourceError


# ---------------------------------------------------------------- classification


def _make_error(
    cls: type[SourceError],
    detail: str,
    *,
    source: str,
    endpoint: str,
    status: int,
    api_code: int | None,
    response: requests.Response,
) -> SourceError:
    """Instantiate `cls`, adding Retry-After for retriable errors."""
    fields: dict[str, Any] = {"source": source, "endpoint": endpoint, "status": status, "api_code": api_code}
    if issubclass(cls, RetriableSourceError):
        return cls(detail, retry_after=parse_retry_after(response.headers.get("Retry-After")), **fields)
    return cls(detail, **fields)


def classify_response(
    source: str,
    endpoint: str,
    response: requests.Response,
    *,
    body: Any = _UNREAD,
    redact: Callable[[str], str] = scrub_query_secrets,
    rules: SourceRules = HTTP_RULES,
) -> SourceError | None:
    """Return None if the response is usable, else the SourceError it represents.

    The single place that maps HTTP statuses and API error codes to error classes, with `rules` adding
    the API's own codes. `body` is the already-decoded JSON (or NOT_JSON) to avoid decoding twice.
    """
    status = response.status_code
    decoded = decode_json(response) if isinstance(body, _Unread) else body
    endpoint = redact(endpoint)
    if 200 <= status < 300:
        return _classify_success(source, endpoint, response, decoded, redact, rules)
    if 300 <= status < 400:
        # Redirects are not followed: requests would forward the key header to the new host.
        target = safe_url(response.headers.get("Location", "")) or "?"
        detail = redact(f"unexpected redirect to {target}")
        return FatalSourceError(detail, source=source, endpoint=endpoint, status=status)
    api_code, message = rules.api_error(decoded)
    detail = redact(message or _text_snippet(response))
    cls = _error_class(rules, status, api_code, message)
    return _make_error(
        cls, detail, source=source, endpoint=endpoint, status=status, api_code=api_code, response=response
    )


def _classify_success(
    source: str,
    endpoint: str,
    response: requests.Response,
    body: Any,
    redact: Callable[[str], str],
    rules: SourceRules,
) -> SourceError | None:
    """A 2xx is an error if its body is not JSON or carries an API error code (Blockchair's envelope)."""
    status = response.status_code
    if isinstance(body, NotJson):
        detail = redact(f"body is not valid JSON: {_text_snippet(response)}")
        return ResponseFormatError(detail, source=source, endpoint=endpoint, status=status)
    api_code, message = rules.api_error(body)
    if api_code is None or api_code < 400:
        return None
    detail = redact(message or _text_snippet(response))
    cls = _error_class(rules, api_code, api_code, message)
    return _make_error(
        cls, detail, source=source, endpoint=endpoint, status=status, api_code=api_code, response=response
    )
