"""One careful HTTP client shared by the Blockchair and CoinGecko sources.

Every request has a timeout, waits for a per-client rate limiter (pyrate-limiter), and is
retried on transient failures with exponential backoff + jitter (tenacity), honouring
``Retry-After``. Responses are mapped to the errors in :mod:`pipeline.errors` by
:func:`classify_response`. The API key never reaches a log line or an exception text.
This is the only module of the pipeline that imports ``requests`` (and urllib3).

No reply can hang or bloat the process. Each attempt has an overall deadline (connect, headers and
every byte of the body) and the body is streamed in pieces against a size cap. Requests' own read
timeout restarts on every byte and Python resumes a blocking ``recv`` after a signal (PEP 475), so
the sockets are read through :class:`_WatchedSocketReader`: each ``recv`` blocks for a short slice
at most, and between slices it checks the deadline, the longest allowed silence and the stop flag.
A unit of ingestion opens :func:`unit_limits`, which bounds every request made inside it by the
unit's remaining time budget and by the process's stop flag (SIGTERM).
"""

from __future__ import annotations

import email.utils
import html
import http.client
import io
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Final, Literal, NoReturn
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import requests
import urllib3
from pydantic import SecretStr
from pyrate_limiter import InMemoryBucket, Limiter, Rate
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline.errors import (
    AuthError,
    ConfigError,
    DeadlineExceeded,
    FatalSourceError,
    Interrupted,
    PipelineError,
    PlanLimitError,
    RateLimitedError,
    ResponseFormatError,
    ResponseTooLarge,
    RetriableSourceError,
    SourceError,
    UnitTimeout,
)

__all__ = [
    "NO_AUTH",
    "ApiClient",
    "Auth",
    "RequestStats",
    "UnitLimits",
    "classify_response",
    "current_unit",
    "parse_retry_after",
    "safe_url",
    "scrub_query_secrets",
    "unit_limits",
]

logger = logging.getLogger(__name__)

MASK: Final = "***"
BLOCKCHAIR: Final = "blockchair"

# CoinGecko error_code values: key missing/wrong, or a key used against the wrong host.
_AUTH_API_CODES: Final = frozenset({10002, 10010, 10011})
# CoinGecko error_code values: endpoint (10005) or time range (10012) not in the plan.
_PLAN_API_CODES: Final = frozenset({10005, 10012})
# Blockchair "limit exceeded, the IP is released after a while": back off, don't give up.
_BLOCKCHAIR_BACKOFF: Final = frozenset({435, 436, 437})
# Blockchair answers a bad key with 402 "Invalid API token", which must not be retried.
_INVALID_KEY_RE: Final = re.compile(r"invalid api (?:key|token)", re.IGNORECASE)
_TITLE_RE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SNIPPET_CHARS: Final = 100
_SNIFF_BYTES: Final = 20_000
# pyrate-limiter pads each wait by this much; small, because the interval is already exact.
_LIMITER_BUFFER_MS: Final = 10
_TRANSIENT_EXCEPTIONS: Final = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)
# The longest blocking wait between two checks of the stop flag and the deadline: SIGTERM is noticed
# this fast even while a source sends nothing.
_WAIT_SLICE: Final = 0.25
# Body pieces: small enough that the size cap is checked often, big enough to cost nothing.
_READ_CHUNK: Final = 64 * 1024
# An error reply is classified from its first bytes (status, JSON error, <title>); more is never needed.
_ERROR_BODY_BYTES: Final = 64 * 1024
DEFAULT_DEADLINE: Final = 60.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
# urllib3 logs full request URLs (query string included) at DEBUG.
_URL_LOGGING_LOGGERS: Final = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection")

# Query parameters that carry API keys: Blockchair `key`, CoinGecko's query-string alternatives.
# Clients add the name they are configured with, so the log filter also masks custom names.
_secret_params: set[str] = {"key", "api_key", "apikey", "x_cg_demo_api_key", "x_cg_pro_api_key"}
_secret_params_lock = threading.Lock()


class _Unread:
    """Marker: the response body has not been decoded yet."""


class _NotJson:
    """Marker: the response body is not valid JSON."""


_UNREAD: Final = _Unread()
_NOT_JSON: Final = _NotJson()


# ---------------------------------------------------------------- secrets


@cache
def _query_secret_pattern(names: frozenset[str]) -> re.Pattern[str]:
    """Regex matching `?name=value` / `&name=value` for any of `names`."""
    alternatives = "|".join(sorted(re.escape(name) for name in names))
    return re.compile(rf"([?&;](?:{alternatives})=)[^&#\s'\"]*", re.IGNORECASE)


def _register_secret_param(name: str) -> None:
    """Remember one more query parameter name whose value must be masked."""
    with _secret_params_lock:
        _secret_params.add(name.lower())


def scrub_query_secrets(text: str) -> str:
    """Mask the values of key-carrying query parameters anywhere in `text`."""
    with _secret_params_lock:
        names = frozenset(_secret_params)
    return _query_secret_pattern(names).sub(rf"\g<1>{MASK}", text)


def safe_url(url: str) -> str:
    """Return `url` with key-carrying query values (and any password) masked, for storing."""
    parts = urlsplit(url)
    # Scrub the raw query rather than re-encode it, so the rest of the URL stays byte-identical.
    query = scrub_query_secrets(f"?{parts.query}")[1:]
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class _RedactQueryFilter(logging.Filter):
    """Mask key-carrying query values in third-party log records before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it contains a secret; never drop the record."""
        message = record.getMessage()
        cleaned = scrub_query_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@cache
def _install_log_redaction() -> None:
    """Attach the redacting filter to the urllib3 loggers (once per process)."""
    for name in _URL_LOGGING_LOGGERS:
        logging.getLogger(name).addFilter(_RedactQueryFilter())


# ---------------------------------------------------------------- auth and stats


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
        value = self.secret.get_secret_value() if self.secret is not None else ""
        forms = {value, quote(value), quote(value, safe=""), quote_plus(value)} - {""}
        return tuple(sorted(forms, key=len, reverse=True))


NO_AUTH: Final = Auth("none")


@dataclass
class RequestStats:
    """Counters for one run of one client."""

    requests: int = 0  # HTTP attempts sent, retries included
    retries: int = 0
    wait_seconds: float = 0.0  # rate limiter + retry backoff
    rate_limited: int = 0  # 429s received

    def snapshot(self) -> dict[str, float | int]:
        """Plain dict copy, e.g. for storing with a run record."""
        return asdict(self)


# ---------------------------------------------------------------- response classification


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value or not value.strip():
        return None
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


def _reject_constant(name: str) -> NoReturn:
    """Refuse NaN/Infinity: they are not JSON and never a valid amount."""
    msg = f"non-standard JSON constant {name}"
    raise ValueError(msg)


def _decode_json(response: requests.Response) -> Any:
    """Decode the body with floats as Decimal; return _NOT_JSON if it is not valid JSON."""
    if not response.content:
        return _NOT_JSON
    try:
        # Bytes, not response.text: JSON is UTF-8 and charset sniffing is slow and can guess wrong.
        return json.loads(response.content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _as_int(value: Any) -> int | None:
    """An int from an int or a digit string; None otherwise (bool is not a code)."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _as_text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value.strip() else None


def _api_error(body: Any) -> tuple[int | None, str | None]:
    """(error code, message) from any known JSON error shape; (None, None) if there is none."""
    if not isinstance(body, dict):
        return None, None
    context = body.get("context")
    if isinstance(context, dict) and _as_int(context.get("code")) is not None:
        # Blockchair: {"data": null, "context": {"code": N, "error": "..."}}
        return _as_int(context.get("code")), _as_text(context.get("error"))
    error = body.get("error")
    if isinstance(error, dict):
        # CoinGecko plan errors: {"error": {"status": {"error_code": N, "error_message": "..."}}}
        return _api_error(error)
    status = body.get("status")
    if isinstance(status, dict):
        # CoinGecko: {"status": {"error_code": N, "error_message": "..."}}
        return _as_int(status.get("error_code")), _as_text(status.get("error_message"))
    # {"error": "text"} and {"status": 500, "error": "text"}
    return None, _as_text(error) or _as_text(body.get("message"))


def _text_snippet(response: requests.Response) -> str:
    """The <title> of an HTML page, else the first characters of the body, whitespace collapsed."""
    text = response.content[:_SNIFF_BYTES].decode(response.encoding or "utf-8", errors="replace")
    title = _TITLE_RE.search(text)
    snippet = " ".join(html.unescape(title.group(1) if title else text).split())
    return snippet[:_SNIPPET_CHARS] or response.reason or "empty body"


def _error_class(source: str, status: int, api_code: int | None, message: str | None) -> type[SourceError]:
    """Pick the error class for an error status and the API's own error code."""
    if api_code in _AUTH_API_CODES:
        return AuthError
    if api_code in _PLAN_API_CODES:
        return PlanLimitError
    if message and _INVALID_KEY_RE.search(message):
        return AuthError
    if status == 429:
        return RateLimitedError
    if status in (401, 403):
        return AuthError
    transient = status == 408 or 500 <= status < 600 or status in _BLOCKCHAIR_BACKOFF
    if transient or (status == 402 and source == BLOCKCHAIR):
        return RetriableSourceError
    # Other 4xx, Blockchair 430/434 (IP blacklisted), and anything unexpected.
    return FatalSourceError


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
) -> SourceError | None:
    """Return None if the response is usable, else the SourceError it represents.

    The single place that maps HTTP statuses and API error codes to error classes.
    `body` is the already-decoded JSON (or _NOT_JSON) to avoid decoding twice.
    """
    status = response.status_code
    decoded = _decode_json(response) if isinstance(body, _Unread) else body
    endpoint = redact(endpoint)
    if 200 <= status < 300:
        return _classify_success(source, endpoint, response, decoded, redact, status)
    if 300 <= status < 400:
        # Redirects are not followed: requests would forward the key header to the new host.
        target = safe_url(response.headers.get("Location", "")) or "?"
        detail = redact(f"unexpected redirect to {target}")
        return FatalSourceError(detail, source=source, endpoint=endpoint, status=status)
    api_code, message = _api_error(decoded)
    detail = redact(message or _text_snippet(response))
    cls = _error_class(source, status, api_code, message)
    return _make_error(
        cls, detail, source=source, endpoint=endpoint, status=status, api_code=api_code, response=response
    )


def _classify_success(
    source: str,
    endpoint: str,
    response: requests.Response,
    body: Any,
    redact: Callable[[str], str],
    status: int,
) -> SourceError | None:
    """A 2xx is an error if its body is not JSON or carries an API error code (Blockchair envelope)."""
    if isinstance(body, _NotJson):
        detail = redact(f"body is not valid JSON: {_text_snippet(response)}")
        return ResponseFormatError(detail, source=source, endpoint=endpoint, status=status)
    api_code, message = _api_error(body)
    if api_code is None or api_code < 400:
        return None
    detail = redact(message or _text_snippet(response))
    cls = _error_class(source, api_code, api_code, message)
    return _make_error(
        cls, detail, source=source, endpoint=endpoint, status=status, api_code=api_code, response=response
    )


# ---------------------------------------------------------------- limits: unit budget, deadline, stop flag


def _never() -> bool:
    return False


@dataclass(frozen=True)
class UnitLimits:
    """What bounds every request of one ingestion unit: when its time budget ends, and the stop flag."""

    ends_at: float  # time.monotonic() at which the unit's budget is spent
    budget_seconds: float
    should_stop: Callable[[], bool] = _never

    def remaining(self) -> float:
        """Seconds left of the budget (negative once spent)."""
        return self.ends_at - time.monotonic()

    def spent(self) -> bool:
        """True once the budget is used up."""
        return self.remaining() <= 0

    def timeout_error(self) -> UnitTimeout:
        """The error a unit ends with when its budget is spent."""
        return UnitTimeout(
            f"unit time budget of {self.budget_seconds:g} s spent (UNIT_TIME_BUDGET_SECONDS); "
            "rerun the slice to finish it"
        )


# A context variable, not an attribute of the client: one client may serve units of several threads.
_UNIT: ContextVar[UnitLimits | None] = ContextVar("pipeline_http_unit", default=None)


@contextmanager
def unit_limits(budget_seconds: float, should_stop: Callable[[], bool] = _never) -> Iterator[UnitLimits]:
    """Bound every request made inside the block (in this thread) by a time budget and a stop flag.

    A request that would run past the end of the budget is cut there with UnitTimeout; one under way
    when `should_stop()` turns true is abandoned with Interrupted.
    """
    limits = UnitLimits(time.monotonic() + budget_seconds, budget_seconds, should_stop)
    token = _UNIT.set(limits)
    try:
        yield limits
    finally:
        _UNIT.reset(token)


def current_unit() -> UnitLimits | None:
    """The limits of the unit running in this thread, if any."""
    return _UNIT.get()


class _Abort(Exception):
    """Raised from inside urllib3 to end an attempt: `reason` is "deadline" or "stop".

    Deliberately not an OSError, so that neither urllib3 nor requests wraps or retries it.
    """

    def __init__(self, reason: Literal["deadline", "stop"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Watch:
    """The limits of one attempt, seen by every socket read made for it."""

    deadline: float  # time.monotonic() by which the whole reply must be in
    idle_timeout: float  # the longest silence allowed between two reads (HTTP_TIMEOUT_SECONDS)
    stopping: Callable[[], bool]

    def check(self) -> None:
        """Raise _Abort if the process is stopping or the deadline has passed."""
        if self.stopping():
            raise _Abort("stop")
        if time.monotonic() >= self.deadline:
            raise _Abort("deadline")

    def slice_timeout(self, silent_until: float) -> float:
        """How long the next `recv` may block: a slice, never past the deadline or the silence allowed."""
        now = time.monotonic()
        return max(min(_WAIT_SLICE, silent_until - now, self.deadline - now), 0.001)


# The attempt under way in this thread; a response picks it up when urllib3 creates it.
_WATCH: ContextVar[_Watch | None] = ContextVar("pipeline_http_watch", default=None)


class _WatchedSocketReader(io.RawIOBase):
    """The raw stream under http.client's buffered reader: every `recv` blocks for one slice at most.

    A `recv` that times out is simply tried again (on a TLS socket too: OpenSSL keeps a partial record
    and reads on), after checking the stop flag, the deadline and how long the source has been silent.
    """

    def __init__(self, raw: io.RawIOBase, sock: Any, watch: _Watch) -> None:
        super().__init__()
        self._raw = raw  # the socket's own file object, kept for closing (it counts the socket's users)
        self._sock = sock
        self._watch = watch

    def readable(self) -> bool:
        """Always: this is a response body."""
        return True

    def fileno(self) -> int:
        """The socket's descriptor (http.client exposes it)."""
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int:
        """Read what the socket has, once it has something, within the attempt's limits."""
        silent_until = time.monotonic() + self._watch.idle_timeout
        while True:
            self._watch.check()
            if time.monotonic() >= silent_until:
                # A plain socket timeout: urllib3 reports it as a ReadTimeout, retried like before.
                raise TimeoutError("timed out")
            self._sock.settimeout(self._watch.slice_timeout(silent_until))
            try:
                return self._sock.recv_into(buffer)
            except TimeoutError:
                continue  # nothing in this slice

    def close(self) -> None:
        """Close the socket's file object (the connection owns the socket itself)."""
        if not self.closed:
            self._raw.close()
        super().close()


class _WatchedHTTPResponse(http.client.HTTPResponse):
    """http.client's response, reading its socket through _WatchedSocketReader during our attempts."""

    def __init__(
        self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        watch = _WATCH.get()
        if watch is not None:
            # Nothing has been read yet, so the buffer being replaced is empty.
            self.fp = io.BufferedReader(_WatchedSocketReader(self.fp.detach(), sock, watch), _READ_CHUNK)


class _WatchedHTTPConnection(HTTPConnection):
    response_class = _WatchedHTTPResponse


class _WatchedHTTPSConnection(HTTPSConnection):
    response_class = _WatchedHTTPResponse


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: Final = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connection pools whose replies are read through _WatchedSocketReader."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The standard pool manager, building our pool classes (the hook requests documents)."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        """HTTP(S) proxies get our pools too (SOCKS managers have their own pool classes)."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def _declared_length(response: requests.Response) -> int | None:
    """The Content-Length header as an int, or None if absent or not a number."""
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


# ---------------------------------------------------------------- retry policy pieces


class _StopWhenBudgetSpent(stop_base):
    """Stop when the next backoff would push the total retry wait past the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        """True if idle time so far plus the upcoming sleep exceeds the budget."""
        return retry_state.idle_for + retry_state.upcoming_sleep > self.budget


class _StopAtUnitEnd(stop_base):
    """Stop when the next backoff would end after the running unit's time budget."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        """True if a unit is running in this thread and the upcoming sleep outlasts its budget."""
        unit = current_unit()
        return unit is not None and unit.remaining() <= retry_state.upcoming_sleep


def _give_up(retry_state: RetryCallState) -> NoReturn:
    """Raise the last retriable error, its message noting how many attempts were made."""
    error = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(error, SourceError):
        # Raised outside any `except`, so no requests exception (with the URL) gets chained.
        raise error.with_attempts(retry_state.attempt_number) from None
    msg = "retrying stopped without a source error"
    raise RuntimeError(msg)


def _make_limiter(requests_per_minute: float | None) -> Limiter | None:
    """A blocking limiter allowing one request per 60/rpm seconds, or None for unlimited."""
    if requests_per_minute is None:
        return None
    interval_ms = max(1, round(60_000 / requests_per_minute))
    # Even spacing (no burst of a whole minute's quota): Blockchair also has a per-second soft limit.
    return Limiter(InMemoryBucket([Rate(1, interval_ms)]), buffer_ms=_LIMITER_BUFFER_MS)


def _check_settings(
    source: str,
    base_url: str,
    requests_per_minute: float | None,
    timeout: float,
    max_attempts: int,
    max_total_wait: float,
    backoff_base: float,
    backoff_max: float,
    deadline: float,
    max_response_bytes: int,
) -> None:
    """Raise ConfigError for settings the client cannot work with."""
    problems = [
        text
        for bad, text in (
            (not source, "source must be set"),
            (not base_url.startswith(("https://", "http://")), "base_url must be an http(s) URL"),
            (requests_per_minute is not None and requests_per_minute <= 0, "requests_per_minute must be > 0"),
            (timeout <= 0, "timeout must be > 0"),
            (max_attempts < 1, "max_attempts must be >= 1"),
            (max_total_wait < 0, "max_total_wait must be >= 0"),
            (backoff_base < 0 or backoff_max < 0, "backoff_base and backoff_max must be >= 0"),
            (deadline <= 0, "deadline must be > 0"),
            (max_response_bytes < 1, "max_response_bytes must be >= 1"),
        )
        if bad
    ]
    if problems:
        msg = f"ApiClient({source!r}): " + "; ".join(problems)
        raise ConfigError(msg)


# ---------------------------------------------------------------- the client


class ApiClient:
    """GET JSON from one source with timeouts, rate limiting, retries and redacted errors.

    `timeout` is the longest silence (connect, or between two reads); `deadline` bounds a whole
    attempt, connect to last byte; bodies over `max_response_bytes` are refused while they stream.
    `should_stop` (and the stop flag of the unit running, see :func:`unit_limits`) abandons a request
    under way and any backoff with Interrupted.

    Thread-safe: the limiter and the stats are locked; the requests Session's connection
    pool is shared by threads. A `session` passed in keeps its own adapters: the deadline and
    the stop flag are then checked between body pieces only, not while a read blocks.
    """

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        auth: Auth = NO_AUTH,
        requests_per_minute: float | None = 30,
        timeout: float = 20.0,
        max_attempts: int = 5,
        max_total_wait: float = 120.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        should_stop: Callable[[], bool] = _never,
        user_agent: str = "crypto-pipeline/0.1",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        _check_settings(
            source,
            base_url,
            requests_per_minute,
            timeout,
            max_attempts,
            max_total_wait,
            backoff_base,
            backoff_max,
            deadline,
            max_response_bytes,
        )
        self.source = source
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._secret_forms = auth.secret_forms()
        self._timeout = timeout
        self._deadline = deadline
        self._max_response_bytes = max_response_bytes
        self._should_stop = should_stop
        self._max_attempts = max_attempts
        self._max_total_wait = max_total_wait
        self._backoff = wait_exponential_jitter(multiplier=backoff_base, max=backoff_max, jitter=backoff_base)
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._owns_session = session is None
        self._session = session if session is not None else _watched_session()
        self._sleep = sleep if sleep is not None else self._pause
        self._limiter = _make_limiter(requests_per_minute)
        self._stats_lock = threading.Lock()
        self.stats = RequestStats()
        if auth.kind == "query":
            _register_secret_param(auth.name)
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"ApiClient(source={self.source!r}, base_url={self.redact(self.base_url)!r})"

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API

    def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, endpoint: str | None = None
    ) -> Any:
        """GET base_url + path and return the decoded JSON (floats as Decimal); raise a SourceError."""
        label = self.redact(endpoint or path)
        retrying = Retrying(
            retry=retry_if_exception_type(RetriableSourceError),
            stop=(
                stop_after_attempt(self._max_attempts)
                | _StopWhenBudgetSpent(self._max_total_wait)
                | _StopAtUnitEnd()
            ),
            wait=self._retry_wait,
            sleep=self._retry_sleep,
            before_sleep=self._log_retry,
            retry_error_callback=_give_up,
        )
        return retrying(self._attempt, path, dict(params or {}), label)

    def reset_stats(self) -> RequestStats:
        """Start a new run's counters and return the previous ones."""
        with self._stats_lock:
            old, self.stats = self.stats, RequestStats()
        return old

    def redact(self, text: str) -> str:
        """Replace the API key (raw or URL-encoded) and key-like query values in `text` with ***."""
        for form in self._secret_forms:
            text = text.replace(form, MASK)
        return scrub_query_secrets(text)

    def close(self) -> None:
        """Stop the limiter's background leak thread and close the session if we created it."""
        if self._limiter is not None:
            self._limiter.close()
        if self._owns_session:
            self._session.close()

    # -- one attempt

    def _attempt(self, path: str, params: dict[str, Any], endpoint: str) -> Any:
        """Send one GET and return its JSON, or raise the classified error."""
        if self._stopping():  # before waiting for the rate limiter
            raise Interrupted
        response = self._send(path, params, endpoint)
        body = _decode_json(response)
        error = classify_response(self.source, endpoint, response, body=body, redact=self.redact)
        if error is None:
            return body
        if isinstance(error, RateLimitedError):
            self._count(rate_limited=1)
        raise error

    def _send(self, path: str, params: dict[str, Any], endpoint: str) -> requests.Response:
        """Wait for the rate limiter, send one GET, read its body within the attempt's limits.

        Transport failures become SourceErrors; the deadline, the stop flag and the unit's budget
        end the attempt with DeadlineExceeded, Interrupted or UnitTimeout.
        """
        self._throttle()
        watch, cut_by_unit = self._watch()
        headers, query = self._auth.apply(self._headers, params)
        url = f"{self.base_url}/{path.lstrip('/')}"
        self._count(sent=1)
        started = time.monotonic()
        # The connect timeout also ends at the deadline; reads are bounded by _WatchedSocketReader.
        wait = max(min(self._timeout, watch.deadline - started), 0.001)
        response: requests.Response | None = None
        token = _WATCH.set(watch)
        try:
            response = self._session.get(
                url,
                params=query,
                headers=headers,
                timeout=(wait, wait),
                allow_redirects=False,
                stream=True,
            )
            self._read_body(response, watch, endpoint)
        except requests.RequestException as exc:
            error = self._transport_error(exc, endpoint)
            logger.debug("GET %s -> %s in %.0f ms", endpoint, type(exc).__name__, _ms_since(started))
        except _Abort as exc:
            error = self._abort_error(exc, endpoint, response, cut_by_unit=cut_by_unit)
            logger.debug("GET %s -> cut (%s) after %.0f ms", endpoint, exc.reason, _ms_since(started))
        else:
            # Display only; status mapping lives in classify_response.
            logger.debug("GET %s -> HTTP %s in %.0f ms", endpoint, response.status_code, _ms_since(started))
            return response
        finally:
            _WATCH.reset(token)
        # Raised here, after the except block, so the requests exception (whose text holds the
        # full URL, key included) is neither __cause__ nor __context__.
        raise error

    def _watch(self) -> tuple[_Watch, bool]:
        """This attempt's limits, and whether its deadline is the unit's end rather than our own."""
        if self._stopping():
            raise Interrupted
        now = time.monotonic()
        deadline = now + self._deadline
        unit = current_unit()
        cut_by_unit = unit is not None and unit.ends_at < deadline
        if unit is not None and cut_by_unit:
            if unit.ends_at <= now:
                raise unit.timeout_error()
            deadline = unit.ends_at
        return _Watch(deadline, self._timeout, self._stopping), cut_by_unit

    def _read_body(self, response: requests.Response, watch: _Watch, endpoint: str) -> None:
        """Stream the body in pieces within the size cap; leave it where `response.content` reads it.

        A success body over the cap is refused (ResponseTooLarge, without reading it if its
        Content-Length says so); an error body is cut to its first bytes, enough to classify it.
        """
        status = response.status_code
        success = 200 <= status < 300
        limit = self._max_response_bytes if success else _ERROR_BODY_BYTES
        declared = _declared_length(response)
        body = bytearray()
        try:
            if success and declared is not None and declared > limit:
                raise self._too_large(endpoint, status, f"Content-Length is {declared} bytes")
            # Decoded pieces (gzip included), so the cap also holds for a small body that inflates.
            for piece in response.iter_content(_READ_CHUNK):
                body += piece
                if len(body) > limit:
                    if success:
                        raise self._too_large(endpoint, status, f"more than {limit} bytes streamed")
                    del body[limit:]
                    response.close()  # not read to the end: drop the connection, never reuse it
                    break
                watch.check()  # also between pieces that arrive without blocking
        except BaseException:
            # The traceback keeps this frame, and so `body`, alive until the cyclic GC runs (tenacity
            # keeps the error in a reference cycle): free the up to HTTP_MAX_RESPONSE_BYTES now.
            body.clear()
            response.close()
            raise
        # requests keeps the body here; setting it makes `response.content` the bytes read above.
        response._content = bytes(body)

    def _too_large(self, endpoint: str, status: int, detail: str) -> ResponseTooLarge:
        """The error for a body over the cap (fatal: the same request gives the same body)."""
        limit = self._max_response_bytes
        message = f"reply body over the {limit} byte limit (HTTP_MAX_RESPONSE_BYTES): {detail}"
        return ResponseTooLarge(message, source=self.source, endpoint=endpoint, status=status)

    def _abort_error(
        self, exc: _Abort, endpoint: str, response: requests.Response | None, *, cut_by_unit: bool
    ) -> PipelineError:
        """The error for an attempt ended by the stop flag or the deadline."""
        if exc.reason == "stop":
            return Interrupted()
        unit = current_unit()
        if cut_by_unit and unit is not None:
            return unit.timeout_error()
        status = response.status_code if response is not None else None
        detail = f"no complete reply within the {self._deadline:g} s deadline (HTTP_DEADLINE_SECONDS)"
        return DeadlineExceeded(detail, source=self.source, endpoint=endpoint, status=status)

    def _stopping(self) -> bool:
        """True when this client, or the unit running in this thread, is asked to stop."""
        if self._should_stop():
            return True
        unit = current_unit()
        return unit is not None and unit.should_stop()

    def _pause(self, seconds: float) -> None:
        """Sleep before a retry in short slices: a stopping process does not wait out a long backoff."""
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            if self._stopping():
                raise Interrupted
            time.sleep(min(left, _WAIT_SLICE))

    def _transport_error(self, exc: requests.RequestException, endpoint: str) -> SourceError:
        """Map a requests exception to a redacted SourceError (transient ones are retriable)."""
        detail = self.redact(f"{type(exc).__name__}: {exc}")
        cls = RetriableSourceError if isinstance(exc, _TRANSIENT_EXCEPTIONS) else FatalSourceError
        return cls(detail, source=self.source, endpoint=endpoint)

    def _throttle(self) -> None:
        """Block until the rate limiter admits one more request; count the time blocked."""
        if self._limiter is None:
            return
        started = time.monotonic()
        self._limiter.try_acquire("request")
        self._count(wait_seconds=time.monotonic() - started)

    # -- tenacity hooks

    def _retry_wait(self, retry_state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never shorter than the server's Retry-After."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        return max(self._backoff(retry_state), retry_after)

    def _retry_sleep(self, seconds: float) -> None:
        """Sleep before a retry, counting the time as waiting."""
        self._count(retries=1, wait_seconds=seconds)
        self._sleep(seconds)

    def _log_retry(self, retry_state: RetryCallState) -> None:
        """WARNING line for each retry: the error (source, endpoint, status), attempt and wait."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        logger.warning(
            "%s; attempt %d of %d failed, retrying in %.1f s",
            self.redact(str(error)),
            retry_state.attempt_number,
            self._max_attempts,
            retry_state.upcoming_sleep,
        )

    def _count(
        self, *, sent: int = 0, retries: int = 0, wait_seconds: float = 0.0, rate_limited: int = 0
    ) -> None:
        """Add to the current run's counters (thread-safe)."""
        with self._stats_lock:
            self.stats.requests += sent
            self.stats.retries += retries
            self.stats.wait_seconds += wait_seconds
            self.stats.rate_limited += rate_limited


def _watched_session() -> requests.Session:
    """A requests Session whose HTTP(S) replies are read through _WatchedSocketReader."""
    session = requests.Session()
    session.mount("http://", _WatchedAdapter())
    session.mount("https://", _WatchedAdapter())
    return session


def _ms_since(started: float) -> float:
    """Milliseconds elapsed since a time.monotonic() reading."""
    return (time.monotonic() - started) * 1000
