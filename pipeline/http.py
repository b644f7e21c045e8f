"""One careful HTTP client shared by the Blockchair and CoinGecko sources.

Every request has a timeout, waits for a per-client rate limiter (pyrate-limiter), and is
retried on transient failures with exponential backoff + jitter (tenacity), honouring
``Retry-After``. Responses are mapped to the errors in :mod:`pipeline.errors` by
:func:`classify_response`. The API key never reaches a log line or an exception text.
This is the only module of the pipeline that imports ``requests``.
"""

from __future__ import annotations

import email.utils
import html
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Final, Literal, NoReturn
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import requests
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

from pipeline.errors import (
    AuthError,
    ConfigError,
    FatalSourceError,
    PlanLimitError,
    RateLimitedError,
    ResponseFormatError,
    RetriableSourceError,
    SourceError,
)

__all__ = [
    "NO_AUTH",
    "ApiClient",
    "Auth",
    "RequestStats",
    "classify_response",
    "parse_retry_after",
    "safe_url",
    "scrub_query_secrets",
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


# ---------------------------------------------------------------- retry policy pieces


class _StopWhenBudgetSpent(stop_base):
    """Stop when the next backoff would push the total retry wait past the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        """True if idle time so far plus the upcoming sleep exceeds the budget."""
        return retry_state.idle_for + retry_state.upcoming_sleep > self.budget


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
        )
        if bad
    ]
    if problems:
        msg = f"ApiClient({source!r}): " + "; ".join(problems)
        raise ConfigError(msg)


# ---------------------------------------------------------------- the client


class ApiClient:
    """GET JSON from one source with timeouts, rate limiting, retries and redacted errors.

    Thread-safe: the limiter and the stats are locked; the requests Session's connection
    pool is shared by threads.
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
        user_agent: str = "crypto-pipeline/0.1",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        )
        self.source = source
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._secret_forms = auth.secret_forms()
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_total_wait = max_total_wait
        self._backoff = wait_exponential_jitter(multiplier=backoff_base, max=backoff_max, jitter=backoff_base)
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
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
            stop=stop_after_attempt(self._max_attempts) | _StopWhenBudgetSpent(self._max_total_wait),
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
        response = self._send(path, params, endpoint)
        body = _decode_json(response)
        error = classify_response(self.source, endpoint, response, body=body, redact=self.redact)
        if error is None:
            return body
        if isinstance(error, RateLimitedError):
            self._count(rate_limited=1)
        raise error

    def _send(self, path: str, params: dict[str, Any], endpoint: str) -> requests.Response:
        """Wait for the rate limiter, send one GET, and turn transport failures into SourceErrors."""
        self._throttle()
        headers, query = self._auth.apply(self._headers, params)
        url = f"{self.base_url}/{path.lstrip('/')}"
        self._count(sent=1)
        started = time.monotonic()
        try:
            response = self._session.get(
                url,
                params=query,
                headers=headers,
                timeout=(self._timeout, self._timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = self._transport_error(exc, endpoint)
            logger.debug("GET %s -> %s in %.0f ms", endpoint, type(exc).__name__, _ms_since(started))
        else:
            # Display only; status mapping lives in classify_response.
            logger.debug("GET %s -> HTTP %s in %.0f ms", endpoint, response.status_code, _ms_since(started))
            return response
        # Raised here, after the except block, so the requests exception (whose text holds the
        # full URL, key included) is neither __cause__ nor __context__.
        raise error

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


def _ms_since(started: float) -> float:
    """Milliseconds elapsed since a time.monotonic() reading."""
    return (time.monotonic() - started) * 1000
