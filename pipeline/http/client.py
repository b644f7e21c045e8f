"""One careful HTTP client shared by the Blockchair and CoinGecko sources.

Every request has a timeout, waits for a per-client rate limiter (pyrate-limiter), and is
retried on transient failures with exponential backoff + jitter (tenacity), honouring
``Retry-After``. Responses are mapped to the errors in :mod:`pipeline.errors` by
:func:`pipeline.http.classify.classify_response`, with the source's own :class:`SourceRules`
(each source module defines its rules and builds its client). The API key never reaches a log
line or an exception text (:mod:`pipeline.http.redact`). The http package is the only part of the
pipeline that imports ``requests`` (and urllib3).

No reply can hang or bloat the process. Each attempt has an overall deadline (connect, headers and
every byte of the body) and the body is streamed in pieces against a size cap; the sockets are read
in short slices (:mod:`pipeline.http.transport`) so the deadline and the stop flag are checked while
a source is silent. A unit of ingestion opens :func:`pipeline.http.limits.unit_limits`, which bounds
every request made inside it by the unit's remaining time budget and by the process's stop flag.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

import requests
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
    ConfigError,
    DeadlineExceeded,
    FatalSourceError,
    Interrupted,
    PipelineError,
    RateLimitedError,
    ResponseTooLarge,
    RetriableSourceError,
    SourceError,
)
from pipeline.http.auth import NO_AUTH, Auth
from pipeline.http.classify import HTTP_RULES, SourceRules, classify_response, decode_json
from pipeline.http.limits import current_unit, never
from pipeline.http.redact import install_log_redaction, mask_secrets, register_secret_param
from pipeline.http.transport import READ_CHUNK, WAIT_SLICE, Abort, Watch, watched_session, watching

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ApiClient",
    "RequestStats",
]

logger = logging.getLogger(__name__)

# pyrate-limiter pads each wait by this much; small, because the interval is already exact.
_LIMITER_BUFFER_MS: Final = 10
_TRANSIENT_EXCEPTIONS: Final = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)
# An error reply is classified from its first bytes (status, JSON error, <title>); more is never needed.
_ERROR_BODY_BYTES: Final = 64 * 1024
DEFAULT_DEADLINE: Final = 60.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024


@dataclass
class RequestStats:
    """Counters for one run of one client."""

    requests: int = 0  # HTTP attempts sent, retries included
    retries: int = 0
    wait_seconds: float = 0.0  # rate limiter + retry backoff
    http_seconds: float = 0.0  # on the wire: from sending a request to the end of its body
    rate_limited: int = 0  # 429s received

    def snapshot(self) -> dict[str, float | int]:
        """Plain dict copy, e.g. for storing with a run record."""
        return asdict(self)


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
    under way and any backoff with Interrupted. `rules` are the source's own error codes (see
    :class:`SourceRules`); without them replies are classified by plain HTTP meaning only.

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
        should_stop: Callable[[], bool] = never,
        user_agent: str = "crypto-pipeline/0.1",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        rules: SourceRules = HTTP_RULES,
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
        self._rules = rules
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
        self._session = session if session is not None else watched_session()
        self._sleep = sleep if sleep is not None else self._pause
        self._limiter = _make_limiter(requests_per_minute)
        self._stats_lock = threading.Lock()
        self.stats = RequestStats()
        if auth.kind == "query":
            register_secret_param(auth.name)
        install_log_redaction()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        source: str,
        base_url: str,
        auth: Auth,
        requests_per_minute: float,
        rules: SourceRules,
        should_stop: Callable[[], bool] = never,
    ) -> ApiClient:
        """A source's client with the HTTP_* settings (timeout, deadline, body cap, retries, backoff);
        the source says where it lives, where its key goes, its request budget and its error rules."""
        return cls(
            source=source,
            base_url=base_url,
            auth=auth,
            requests_per_minute=requests_per_minute,
            timeout=settings.HTTP_TIMEOUT_SECONDS,
            deadline=settings.HTTP_DEADLINE_SECONDS,
            max_response_bytes=settings.HTTP_MAX_RESPONSE_BYTES,
            should_stop=should_stop,
            max_attempts=settings.HTTP_MAX_ATTEMPTS,
            max_total_wait=settings.HTTP_MAX_TOTAL_WAIT_SECONDS,
            backoff_base=settings.HTTP_BACKOFF_BASE_SECONDS,
            rules=rules,
        )

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
        return mask_secrets(text, self._secret_forms)

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
        body = decode_json(response)
        error = classify_response(
            self.source, endpoint, response, body=body, redact=self.redact, rules=self._rules
        )
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
        # The connect timeout also ends at the deadline; reads are bounded by the watched session.
        wait = max(min(self._timeout, watch.deadline - started), 0.001)
        response: requests.Response | None = None
        error: PipelineError
        try:
            with watching(watch), self._timed():
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
        except Abort as exc:
            error = self._abort_error(exc, endpoint, response, cut_by_unit=cut_by_unit)
            logger.debug("GET %s -> cut (%s) after %.0f ms", endpoint, exc.reason, _ms_since(started))
        else:
            # Display only; status mapping lives in classify_response.
            logger.debug("GET %s -> HTTP %s in %.0f ms", endpoint, response.status_code, _ms_since(started))
            return response
        # Raised here, after the except block, so the requests exception (whose text holds the
        # full URL, key included) is neither __cause__ nor __context__.
        raise error

    def _watch(self) -> tuple[Watch, bool]:
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
        return Watch(deadline, self._timeout, self._stopping), cut_by_unit

    def _read_body(self, response: requests.Response, watch: Watch, endpoint: str) -> None:
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
            for piece in response.iter_content(READ_CHUNK):
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
        self, exc: Abort, endpoint: str, response: requests.Response | None, *, cut_by_unit: bool
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
            time.sleep(min(left, WAIT_SLICE))

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
        self,
        *,
        sent: int = 0,
        retries: int = 0,
        wait_seconds: float = 0.0,
        http_seconds: float = 0.0,
        rate_limited: int = 0,
    ) -> None:
        """Add to the current run's counters (thread-safe)."""
        with self._stats_lock:
            self.stats.requests += sent
            self.stats.retries += retries
            self.stats.wait_seconds += wait_seconds
            self.stats.http_seconds += http_seconds
            self.stats.rate_limited += rate_limited

    @contextmanager
    def _timed(self) -> Iterator[None]:
        """Count the time inside as time on the wire, however the attempt ends."""
        started = time.monotonic()
        try:
            yield
        finally:
            self._count(http_seconds=time.monotonic() - started)


def _ms_since(started: float) -> float:
    """Milliseconds elapsed since a time.monotonic() reading."""
    return (time.monotonic() - started) * 1000
