"""Tests for pipeline.http.client (the shared API client) and pipeline.errors."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import traceback
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import (
    AuthError,
    ConfigError,
    DeadlineExceeded,
    FatalSourceError,
    Interrupted,
    PipelineError,
    PlanLimitError,
    RateLimitedError,
    RecordValidationError,
    ResponseFormatError,
    ResponseTooLarge,
    RetriableSourceError,
    SourceError,
    UnitTimeout,
)
from pipeline.http.client import (
    ApiClient,
    Auth,
    RequestStats,
    classify_response,
    current_unit,
    parse_retry_after,
    safe_url,
    unit_limits,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
KEY = "SECRETKEY123"
CG_URL = "https://api.coingecko.com/api/v3"
BC_URL = "https://api.blockchair.com"
CLOUDFLARE_429 = (
    "<!DOCTYPE html><html><head><title>Access denied | api.coingecko.com used Cloudflare to restrict access"
    "</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>"
)
ERROR_10002 = {"status": {"error_code": 10002, "error_message": "API Key Missing"}}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


CG_429 = fixture_text("coingecko/error_429.json")
CG_500 = fixture_text("coingecko/error_500.json")
CG_422 = fixture_text("coingecko/error_422_missing_date.json")
CG_10012 = fixture_text("coingecko/error_10012_time_range.json")
BC_430 = fixture_text("blockchair/error_430.json")


def make_client(sleeps: list[float], **overrides: Any) -> ApiClient:
    settings: dict[str, Any] = {
        "source": "coingecko",
        "base_url": CG_URL,
        "requests_per_minute": None,
        "max_attempts": 3,
        "backoff_base": 0.0,
        "sleep": sleeps.append,
    }
    return ApiClient(**{**settings, **overrides})


def blockchair_client(sleeps: list[float], **overrides: Any) -> ApiClient:
    return make_client(sleeps, source="blockchair", base_url=BC_URL, auth=Auth.query("key", KEY), **overrides)


def error_texts(exc: BaseException) -> list[str]:
    """Every text an exception can produce: str, repr, formatted traceback, and the whole chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        texts += [str(current.__cause__), str(current.__context__), repr(current.__context__)]
        current = current.__cause__ or current.__context__
    return texts


def assert_no_secret(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    for text in [*error_texts(exc), caplog.text, *(r.getMessage() for r in caplog.records)]:
        assert KEY not in text
        assert "SECRETKEY" not in text


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


# ---------------------------------------------------------------- classification table

CASES = [
    # id, source, status, body, headers, expected class, expected api_code
    ("429-json", "coingecko", 429, CG_429, {}, RateLimitedError, 429),
    ("429-cloudflare-html", "coingecko", 429, CLOUDFLARE_429, {}, RateLimitedError, None),
    ("500-json", "coingecko", 500, CG_500, {}, RetriableSourceError, None),
    ("503-text", "coingecko", 503, "Service Unavailable", {}, RetriableSourceError, None),
    ("408", "coingecko", 408, "", {}, RetriableSourceError, None),
    ("400", "coingecko", 400, '{"error":"invalid date"}', {}, FatalSourceError, None),
    ("401-10002", "coingecko", 401, json.dumps(ERROR_10002), {}, AuthError, 10002),
    ("403-html", "coingecko", 403, "<html><title>Access Denied</title></html>", {}, AuthError, None),
    ("401-10012", "coingecko", 401, CG_10012, {}, PlanLimitError, 10012),
    ("400-10012", "coingecko", 400, CG_10012, {}, PlanLimitError, 10012),
    ("404", "coingecko", 404, '{"error":"coin not found"}', {}, FatalSourceError, None),
    ("422", "coingecko", 422, CG_422, {}, FatalSourceError, None),
    ("301-redirect", "coingecko", 301, "", {"Location": f"{CG_URL}/x?key={KEY}"}, FatalSourceError, None),
    (
        "402-blockchair",
        "blockchair",
        402,
        '{"data":null,"context":{"code":402,"error":"Limit exceeded"}}',
        {},
        RetriableSourceError,
        402,
    ),
    (
        "402-blockchair-bad-key",
        "blockchair",
        402,
        '{"data":null,"context":{"code":402,"error":"Invalid API token. Please contact us at info@b"}}',
        {},
        AuthError,
        402,
    ),
    ("430-blockchair", "blockchair", 430, BC_430, {}, FatalSourceError, 430),
    ("434-blockchair", "blockchair", 434, '{"data":null,"context":{"code":434}}', {}, FatalSourceError, 434),
    ("200-html", "coingecko", 200, "<html><title>Maintenance</title></html>", {}, ResponseFormatError, None),
    ("200-malformed-json", "coingecko", 200, '{"prices": [[1, 2]', {}, ResponseFormatError, None),
    ("200-empty", "coingecko", 200, "", {}, ResponseFormatError, None),
    (
        "200-blockchair-435",
        "blockchair",
        200,
        '{"data":null,"context":{"code":435,"error":"Too many requests"}}',
        {},
        RetriableSourceError,
        435,
    ),
]


@pytest.mark.parametrize(
    ("source", "status", "body", "headers", "expected", "api_code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_classification_table(
    mocked: responses.RequestsMock,
    sleeps: list[float],
    source: str,
    status: int,
    body: str,
    headers: dict[str, str],
    expected: type[SourceError],
    api_code: int | None,
) -> None:
    mocked.get(f"{CG_URL}/coins/bitcoin", body=body, status=status, headers=headers)
    client = make_client(sleeps, source=source, max_attempts=1)

    with pytest.raises(SourceError) as info:
        client.get_json("/coins/bitcoin", endpoint="/coins/{id}")

    error = info.value
    assert type(error) is expected
    assert (error.source, error.endpoint, error.status, error.api_code) == (
        source,
        "/coins/{id}",
        status,
        api_code,
    )
    assert str(error).startswith(f"{source} /coins/{{id}}: HTTP {status}")
    assert KEY not in str(error)


def test_cloudflare_html_message_uses_title(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", body=CLOUDFLARE_429, status=429, content_type="text/html")
    with pytest.raises(RateLimitedError, match="Access denied | api.coingecko.com used Cloudflare"):
        make_client(sleeps, max_attempts=1).get_json("/ping")


def test_message_names_source_endpoint_status_and_code(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    mocked.get(f"{CG_URL}/coins/bitcoin/market_chart/range", body=CG_429, status=429)
    client = make_client(sleeps, max_attempts=1)
    with pytest.raises(RateLimitedError) as info:
        client.get_json("/coins/bitcoin/market_chart/range", endpoint="/coins/{id}/market_chart/range")
    assert str(info.value).startswith(
        "coingecko /coins/{id}/market_chart/range: HTTP 429 (error_code 429): You've exceeded the Rate Limit"
    )
    assert info.value.kind == "RateLimitedError"


def test_long_messages_are_truncated(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", json={"error": "x" * 5000}, status=400)
    with pytest.raises(FatalSourceError) as info:
        make_client(sleeps).get_json("/ping")
    assert len(str(info.value)) <= 300


def test_classify_response_accepts_good_json_and_blockchair_success_envelope() -> None:
    response = requests.Response()
    response.status_code = 200
    response._content = b'{"data": {"blocks": 1}, "context": {"code": 200}}'
    assert classify_response("blockchair", "/bitcoin/stats", response) is None


# ---------------------------------------------------------------- retries


def test_retries_5xx_then_succeeds(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    url = f"{CG_URL}/ping"
    mocked.get(url, status=503, body="busy")
    mocked.get(url, status=502, body="bad gateway")
    mocked.get(url, json={"gecko_says": "ok"})
    client = make_client(sleeps, max_attempts=5)

    assert client.get_json("/ping") == {"gecko_says": "ok"}
    assert len(mocked.calls) == 3
    assert (client.stats.requests, client.stats.retries, client.stats.rate_limited) == (3, 2, 0)
    assert len(sleeps) == 2


def test_backoff_grows_exponentially(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", status=500)
    client = make_client(sleeps, max_attempts=4, backoff_base=1.0, backoff_max=60.0)
    with pytest.raises(RetriableSourceError):
        client.get_json("/ping")
    # base * 2**n plus jitter in [0, base)
    assert [int(s) for s in sleeps] == [1, 2, 4]


def test_retry_after_seconds_is_honoured(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    url = f"{CG_URL}/ping"
    mocked.get(url, status=429, headers={"Retry-After": "7"}, body=CG_429)
    mocked.get(url, json={"ok": True})
    client = make_client(sleeps)

    assert client.get_json("/ping") == {"ok": True}
    assert sleeps[0] >= 7
    assert client.stats.rate_limited == 1
    assert client.stats.wait_seconds >= 7


def test_retry_after_http_date_is_honoured(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    url = f"{CG_URL}/ping"
    mocked.get(url, status=503, headers={"Retry-After": when})
    mocked.get(url, json={"ok": True})
    make_client(sleeps).get_json("/ping")
    assert 28 <= sleeps[0] <= 31


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, '{"error":"not found"}', FatalSourceError),
        (401, json.dumps(ERROR_10002), AuthError),
        (400, CG_10012, PlanLimitError),
        (422, CG_422, FatalSourceError),
        (200, "<html>oops</html>", ResponseFormatError),
    ],
)
def test_terminal_errors_are_not_retried(
    mocked: responses.RequestsMock, sleeps: list[float], status: int, body: str, expected: type[SourceError]
) -> None:
    mocked.get(f"{CG_URL}/ping", status=status, body=body)
    client = make_client(sleeps, max_attempts=5)
    with pytest.raises(expected):
        client.get_json("/ping")
    assert len(mocked.calls) == 1
    assert sleeps == []
    assert client.stats.retries == 0


def test_attempts_are_bounded(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", status=503, body="down")
    client = make_client(sleeps, max_attempts=4)

    with pytest.raises(RetriableSourceError, match="gave up after 4 attempts") as info:
        client.get_json("/ping")
    assert info.value.attempts == 4
    assert len(mocked.calls) == 4
    assert (client.stats.requests, client.stats.retries) == (4, 3)


def test_total_wait_is_bounded(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", status=429, headers={"Retry-After": "50"})
    client = make_client(sleeps, max_attempts=10, max_total_wait=120)

    with pytest.raises(RateLimitedError, match="gave up after 3 attempts"):
        client.get_json("/ping")
    # 50 + 50 fits in 120; a third wait of 50 would not, so it stops instead of sleeping.
    assert sleeps == [50, 50]
    assert len(mocked.calls) == 3
    assert client.stats.rate_limited == 3


def test_retry_after_beyond_budget_stops_at_once(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        make_client(sleeps, max_attempts=5).get_json("/ping")
    assert info.value.retry_after == 3600
    assert sleeps == []


def test_retry_logs_a_warning(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{CG_URL}/ping"
    mocked.get(url, status=503)
    mocked.get(url, json={})
    caplog.set_level(logging.DEBUG, logger="pipeline.http.client")
    make_client(sleeps).get_json("/ping")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "coingecko /ping: HTTP 503" in warnings[0].getMessage()
    assert "attempt 1 of 3" in warnings[0].getMessage()
    debug = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and r.name == "pipeline.http.client"
    ]
    assert any("GET /ping -> HTTP 503" in line for line in debug)


# ---------------------------------------------------------------- rate limiting


def test_rate_limiter_spaces_requests(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    sent: list[float] = []

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent.append(time.monotonic())
        return 200, {}, "{}"

    mocked.add_callback(responses.GET, f"{CG_URL}/ping", callback=reply)
    client = make_client(sleeps, requests_per_minute=600)  # one request per 100 ms
    for _ in range(4):
        client.get_json("/ping")
    client.close()

    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) >= 0.09
    assert client.stats.wait_seconds >= 0.27
    assert sleeps == []  # the limiter blocks; it is not a retry


def test_rate_limiter_is_shared_by_threads(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    sent: list[float] = []
    lock = threading.Lock()

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        with lock:
            sent.append(time.monotonic())
        return 200, {}, "{}"

    mocked.add_callback(responses.GET, f"{CG_URL}/ping", callback=reply)
    client = make_client(sleeps, requests_per_minute=600)
    threads = [threading.Thread(target=client.get_json, args=("/ping",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()

    sent.sort()
    assert len(sent) == 4
    assert min(b - a for a, b in zip(sent, sent[1:], strict=False)) >= 0.09
    assert client.stats.requests == 4


# ---------------------------------------------------------------- auth placement and secrets


def test_coingecko_key_goes_in_header(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", json={})
    make_client(sleeps, auth=Auth.header("x-cg-demo-api-key", KEY)).get_json("/ping", {"ids": "bitcoin"})
    request = mocked.calls[0].request
    assert request.headers["x-cg-demo-api-key"] == KEY
    assert request.headers["User-Agent"] == "crypto-pipeline/0.1"
    assert KEY not in request.url
    assert parse_qs(urlsplit(request.url).query) == {"ids": ["bitcoin"]}


def test_blockchair_key_goes_in_query(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{BC_URL}/bitcoin/stats", json={"data": {}, "context": {"code": 200}})
    blockchair_client(sleeps).get_json("/bitcoin/stats", {"limit": 1})
    request = mocked.calls[0].request
    assert parse_qs(urlsplit(request.url).query) == {"limit": ["1"], "key": [KEY]}
    assert all(KEY not in value for value in request.headers.values())


def test_connection_error_with_url_in_message_is_redacted(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = requests.ConnectionError(
        f"HTTPSConnectionPool(host='api.blockchair.com', port=443): Max retries exceeded with url: "
        f"/bitcoin/stats?key={KEY} (Caused by NewConnectionError('Connection refused'))"
    )
    mocked.get(f"{BC_URL}/bitcoin/stats", body=leaky)
    client = blockchair_client(sleeps, max_attempts=2)

    with pytest.raises(RetriableSourceError) as info:
        client.get_json("/bitcoin/stats")
    assert "ConnectionError" in str(info.value)
    assert "key=***" in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert_no_secret(info.value, caplog)


def test_fatal_transport_error_is_not_chained(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.get(
        f"{BC_URL}/bitcoin/stats", body=requests.exceptions.InvalidURL(f"bad url /bitcoin/stats?key={KEY}")
    )
    with pytest.raises(FatalSourceError, match="InvalidURL") as info:
        blockchair_client(sleeps).get_json("/bitcoin/stats")
    assert len(mocked.calls) == 1
    assert info.value.__context__ is None
    assert_no_secret(info.value, caplog)


def test_key_echoed_in_error_bodies_is_redacted(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.get(f"{CG_URL}/ping", status=401, json={"error": f"Invalid API key {KEY}"})
    mocked.get(
        f"{BC_URL}/bitcoin/stats", status=500, json={"data": None, "context": {"code": 500, "error": KEY}}
    )
    with pytest.raises(AuthError) as header_info:
        make_client(sleeps, auth=Auth.header("x-cg-pro-api-key", KEY)).get_json("/ping")
    with pytest.raises(RetriableSourceError) as query_info:
        blockchair_client(sleeps, max_attempts=2).get_json("/bitcoin/stats")
    assert_no_secret(header_info.value, caplog)
    assert_no_secret(query_info.value, caplog)


def test_real_connection_refused_does_not_leak_key(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(
        sleeps,
        source="blockchair",
        base_url=f"http://127.0.0.1:{port}",
        auth=Auth.query("key", KEY),
        max_attempts=2,
    )
    with pytest.raises(RetriableSourceError) as info:
        client.get_json("/bitcoin/stats")
    assert client.stats.requests == 2
    assert_no_secret(info.value, caplog)


def test_redact_and_safe_url(sleeps: list[float]) -> None:
    odd = "SEC/RET+KEY=1&2"
    client = make_client(sleeps, auth=Auth.query("key", odd))
    text = f"raw {odd} quoted SEC%2FRET%2BKEY%3D1%262 plus SEC%2FRET%2BKEY%3D1%262"
    assert odd not in client.redact(text)
    assert "SEC" not in client.redact(text)
    assert client.redact(f"/x?key={KEY}&a=1") == "/x?key=***&a=1"
    assert (
        safe_url(f"{BC_URL}/bitcoin/stats?key={KEY}&limit=10") == f"{BC_URL}/bitcoin/stats?key=***&limit=10"
    )
    assert safe_url(f"{CG_URL}/ping?x_cg_demo_api_key={KEY}") == f"{CG_URL}/ping?x_cg_demo_api_key=***"
    assert safe_url(f"https://user:{KEY}@host/p") == "https://user:***@host/p"
    assert safe_url(f"{CG_URL}/ping") == f"{CG_URL}/ping"
    assert safe_url(f"{CG_URL}/p?ids=a,b&KEY={KEY}#f") == f"{CG_URL}/p?ids=a,b&KEY=***#f"


def test_auth_repr_and_validation() -> None:
    assert KEY not in repr(Auth.header("x-cg-demo-api-key", KEY))
    with pytest.raises(ConfigError):
        Auth("header", "x-cg-demo-api-key")
    with pytest.raises(ConfigError):
        Auth.query("", KEY)
    with pytest.raises(ConfigError) as info:
        Auth("nonsense", "key")  # type: ignore[arg-type]
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "override",
    [
        {"max_attempts": 0},
        {"timeout": 0},
        {"requests_per_minute": 0},
        {"base_url": "ftp://x"},
        {"source": ""},
    ],
)
def test_bad_settings_raise_config_error(sleeps: list[float], override: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make_client(sleeps, **override)


# ---------------------------------------------------------------- real sockets: resets and timeouts


class _Handler(BaseHTTPRequestHandler):
    """Serves /flaky (reset once, then OK) and /slow (answers after the client's timeout)."""

    calls: dict[str, int] = {}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        count = self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/flaky" and count == 1:
            # RST instead of FIN: the client sees "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if path == "/slow":
            time.sleep(0.5)
        body = b'{"ok": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.calls = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_connection_reset_is_retried(
    server: str, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(sleeps, source="blockchair", base_url=server, auth=Auth.query("key", KEY))
    assert client.get_json("/flaky") == {"ok": True}
    assert (client.stats.requests, client.stats.retries) == (2, 1)
    assert any(r.levelno == logging.WARNING and "ConnectionError" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
    assert "key=***" in caplog.text  # urllib3's own URL log line was masked, not dropped


def test_timeout_is_retried_then_raised(
    server: str, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(
        sleeps, source="blockchair", base_url=server, auth=Auth.query("key", KEY), timeout=0.1, max_attempts=2
    )
    with pytest.raises(RetriableSourceError, match="ReadTimeout") as info:
        client.get_json("/slow")
    assert info.value.attempts == 2
    assert client.stats.requests == 2
    assert_no_secret(info.value, caplog)


# ---------------------------------------------------------------- decoding


def test_floats_decode_to_exact_decimals(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/simple/price", body='{"x": {"usd": 0.000000001234, "n": 3, "big": 1e400}}')
    data = make_client(sleeps).get_json("/simple/price")
    assert data["x"]["usd"] == Decimal("0.000000001234")
    assert isinstance(data["x"]["usd"], Decimal)
    assert str(data["x"]["usd"]) == "1.234E-9"
    assert data["x"]["n"] == 3
    assert isinstance(data["x"]["n"], int)
    assert data["x"]["big"] == Decimal("1e400")


def test_nan_is_not_accepted(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", body='{"price": NaN}')
    with pytest.raises(ResponseFormatError):
        make_client(sleeps).get_json("/ping")


# ---------------------------------------------------------------- stats and errors module


def test_reset_stats_returns_previous_counters(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", json={})
    client = make_client(sleeps)
    client.get_json("/ping")
    old = client.reset_stats()
    assert old.snapshot() == {"requests": 1, "retries": 0, "wait_seconds": 0.0, "rate_limited": 0}
    assert client.stats == RequestStats()


def test_error_hierarchy() -> None:
    assert issubclass(RateLimitedError, RetriableSourceError)
    assert issubclass(AuthError, FatalSourceError)
    assert issubclass(PlanLimitError, FatalSourceError)
    assert issubclass(ResponseFormatError, SourceError)
    assert not issubclass(ResponseFormatError, (RetriableSourceError, FatalSourceError))
    for cls in (ConfigError, SourceError, RecordValidationError):
        assert issubclass(cls, PipelineError)


def test_errors_pickle_round_trip() -> None:
    error = RateLimitedError(
        "slow down", source="coingecko", endpoint="/ping", status=429, api_code=429, retry_after=7.0
    ).with_attempts(3)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimitedError
    assert (str(copy), copy.retry_after, copy.attempts) == (str(error), 7.0, 3)

    invalid = RecordValidationError("price is negative", record={"price": -1}, field="price")
    restored = pickle.loads(pickle.dumps(invalid))
    assert (restored.reason, restored.record, restored.field) == ("price is negative", {"price": -1}, "price")
    assert str(restored) == "invalid record (field 'price'): price is negative"
    assert restored.kind == "RecordValidationError"


@given(
    secret=st.text(
        alphabet=st.characters(codec="ascii", categories=("L", "N", "P", "S")), min_size=8, max_size=40
    ),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_redact_removes_any_secret_form(secret: str, before: str, after: str) -> None:
    with ApiClient(
        source="t", base_url=BC_URL, auth=Auth.query("key", secret), requests_per_minute=None
    ) as client:
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            assert secret not in client.redact(f"{before}{form}{after}?key={form}")


# ---------------------------------------------------------------- replies that never end: deadline, cap, stop

TRICKLE_BODY = b'{"ok": true, "pad": "' + b"x" * 200 + b'"}'  # 0.05 s a byte: about 11 s in all
BIG_BODY_BYTES = 32 * 1024 * 1024
CAP = 1024 * 1024


class _EndlessHandler(BaseHTTPRequestHandler):
    """Replies that misbehave after their headers: trickling, silent, endless, huge, compressed."""

    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies
    arrived = threading.Event()  # set when any request arrives (the stop test waits for it)
    connections: set[tuple[str, int]] = set()
    written: dict[str, int] = {}  # body bytes the server managed to write, per path

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        type(self).connections.add(self.client_address)
        type(self).arrived.set()
        try:
            self._reply(path)
        except OSError:
            self.close_connection = True  # the client gave up on the reply, as it should

    def _reply(self, path: str) -> None:
        if path == "/ok":
            self._headers(200, length=len(b'{"ok": true}'))
            self.wfile.write(b'{"ok": true}')
        elif path == "/trickle":
            self._headers(200, length=len(TRICKLE_BODY))
            for byte in TRICKLE_BODY:
                self.wfile.write(bytes([byte]))
                time.sleep(0.05)
        elif path == "/silent":
            self._headers(200, length=100)
            self.wfile.write(b'{"ok": ')
            self.rfile.read(1)  # blocks until the client closes the connection
        elif path in ("/endless", "/endless-503", "/big-chunked"):
            self._headers(503 if path == "/endless-503" else 200, length=None)
            limit = BIG_BODY_BYTES if path == "/big-chunked" else None
            self._chunks(b'{"data": [0' if path != "/endless-503" else b"<html><title>Down</title>", limit)
        elif path == "/huge":
            self._headers(200, length=200 * 1024 * 1024)
            self._count(path, b'{"data": [0')
            while True:
                self._count(path, b" " * 65536)
        elif path in ("/gzip", "/gzip-bomb"):
            plain = b'{"ok": true}' if path == "/gzip" else b'{"data": [0' + b" " * (64 * CAP) + b"]}"
            packed = gzip.compress(plain)
            self._headers(200, length=len(packed), extra={"Content-Encoding": "gzip"})
            self.wfile.write(packed)

    def _headers(self, status: int, *, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _chunks(self, head: bytes, limit: int | None) -> None:
        path = urlsplit(self.path).path
        self._count(path, b"%x\r\n%s\r\n" % (len(head), head))
        piece = b" " * 65536
        sent = len(head)
        while limit is None or sent < limit:
            self._count(path, b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        self._count(path, b"2\r\n]}\r\n0\r\n\r\n")

    def _count(self, path: str, data: bytes) -> None:
        self.wfile.write(data)
        self.written[path] = self.written.get(path, 0) + len(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def endless_server() -> Iterator[str]:
    _EndlessHandler.arrived = threading.Event()
    _EndlessHandler.connections = set()
    _EndlessHandler.written = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def stream_client(base_url: str, **overrides: Any) -> ApiClient:
    settings: dict[str, Any] = {
        "source": "blockchair",
        "base_url": base_url,
        "auth": Auth.query("key", KEY),
        "requests_per_minute": None,
        "max_attempts": 2,
        "backoff_base": 0.0,
        "timeout": 5.0,
        "deadline": 0.6,
        "max_response_bytes": CAP,
        "sleep": lambda _seconds: None,
    }
    return ApiClient(**{**settings, **overrides})


def test_trickling_reply_is_cut_at_the_deadline(
    endless_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A byte every 0.05 s never trips the 5 s read timeout: only the deadline ends the attempt.
    client = stream_client(endless_server)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="HTTP_DEADLINE_SECONDS") as info:
        client.get_json("/trickle")
    elapsed = time.monotonic() - started
    assert isinstance(info.value, RetriableSourceError)  # a timeout is transient: it was retried
    assert (info.value.attempts, client.stats.requests, client.stats.retries) == (2, 2, 1)
    assert 1.2 <= elapsed < 3.0  # two attempts of 0.6 s each, far from the 11 s the trickle takes
    assert_no_secret(info.value, caplog)


def test_silent_server_is_cut_at_the_deadline_not_a_whole_read_timeout(endless_server: str) -> None:
    client = stream_client(endless_server, max_attempts=1, timeout=10.0, deadline=0.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.get_json("/silent")
    assert time.monotonic() - started < 2.0  # not the 10 s read timeout


def test_silence_longer_than_the_timeout_is_still_a_read_timeout(endless_server: str) -> None:
    client = stream_client(endless_server, max_attempts=1, timeout=0.3, deadline=30.0)
    with pytest.raises(RetriableSourceError, match="ReadTimeout|timed out") as info:
        client.get_json("/silent")
    assert not isinstance(info.value, DeadlineExceeded)


def test_stop_flag_abandons_a_stuck_request_at_once(endless_server: str) -> None:
    stop = threading.Event()
    client = stream_client(endless_server, deadline=60.0, should_stop=stop.is_set)

    def stop_when_the_request_is_in() -> None:
        _EndlessHandler.arrived.wait(10)
        stop.set()

    threading.Thread(target=stop_when_the_request_is_in, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        client.get_json("/trickle")
    assert time.monotonic() - started < 2.0  # the trickle would take 11 s, the deadline 60 s
    assert client.stats.requests == 1  # never retried


def test_unit_limits_bound_requests_by_the_budget_and_the_units_stop_flag(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=60.0)
    started = time.monotonic()
    with unit_limits(0.5), pytest.raises(UnitTimeout, match="UNIT_TIME_BUDGET_SECONDS"):
        client.get_json("/trickle")
    assert time.monotonic() - started < 2.0
    assert client.stats.requests == 1  # the budget is spent: no retry
    with unit_limits(0.0), pytest.raises(UnitTimeout):
        client.get_json("/ok")  # a spent budget sends nothing
    assert client.stats.requests == 1

    stop = threading.Event()
    _EndlessHandler.arrived.clear()
    threading.Thread(target=lambda: _EndlessHandler.arrived.wait(10) and stop.set(), daemon=True).start()
    with unit_limits(600, stop.is_set), pytest.raises(Interrupted):
        client.get_json("/trickle")
    assert current_unit() is None
    assert client.get_json("/ok") == {"ok": True}  # outside the unit, the flag no longer applies


def test_retry_backoff_does_not_outlast_the_unit(endless_server: str) -> None:
    client = stream_client(endless_server, max_attempts=5, deadline=0.3, backoff_base=30.0, sleep=None)
    started = time.monotonic()
    with unit_limits(5.0), pytest.raises(DeadlineExceeded) as info:
        client.get_json("/trickle")
    assert info.value.attempts == 1  # a 30 s backoff would end past the budget: give up now
    assert time.monotonic() - started < 2.0


def test_stop_flag_cuts_a_retry_backoff_short(endless_server: str) -> None:
    # The flag turns true once the first retry's backoff (30 s or more) has begun.
    client = stream_client(
        endless_server,
        max_attempts=5,
        backoff_base=30.0,
        sleep=None,
        should_stop=lambda: client.stats.retries >= 1,
    )
    started = time.monotonic()
    with pytest.raises(Interrupted):
        client.get_json("/endless-503")  # a 503: retriable
    assert time.monotonic() - started < 2.0
    assert (client.stats.requests, client.stats.retries) == (1, 1)


def test_body_over_the_cap_is_refused_while_streaming(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=30.0)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="HTTP_MAX_RESPONSE_BYTES") as info:
            client.get_json("/big-chunked")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(info.value, FatalSourceError)
    assert client.stats.requests == 1  # fatal: the same request would be as big again
    assert peak < 4 * CAP  # the 32 MiB body was never held whole
    assert KEY not in str(info.value)


def test_endless_body_ends_at_the_cap(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=30.0)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge):
        client.get_json("/endless")
    assert time.monotonic() - started < 5.0


def test_content_length_over_the_cap_is_refused_before_reading(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=30.0)
    with pytest.raises(ResponseTooLarge, match="Content-Length is 209715200"):
        client.get_json("/huge")
    assert client.stats.requests == 1


def test_compressed_body_is_capped_once_inflated(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=30.0)
    assert client.get_json("/gzip") == {"ok": True}
    with pytest.raises(ResponseTooLarge, match="streamed"):
        client.get_json("/gzip-bomb")  # 64 KiB on the wire, 64 MiB inflated


def test_error_reply_with_an_endless_body_is_classified_by_its_status(endless_server: str) -> None:
    client = stream_client(endless_server, deadline=30.0)
    with pytest.raises(RetriableSourceError, match="HTTP 503: Down") as info:
        client.get_json("/endless-503")
    assert not isinstance(info.value, ResponseTooLarge)
    assert info.value.attempts == 2


def test_normal_replies_are_unchanged_and_reuse_one_connection(endless_server: str) -> None:
    client = stream_client(endless_server)
    for _ in range(5):
        assert client.get_json("/ok") == {"ok": True}
    assert len(_EndlessHandler.connections) == 1  # each body read to its end returns the connection
    assert (client.stats.requests, client.stats.retries) == (5, 0)


@pytest.fixture
def tls_endless_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The same server over TLS, with a self-signed certificate the client trusts (REQUESTS_CA_BUNDLE)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    _EndlessHandler.arrived = threading.Event()
    _EndlessHandler.connections = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_over_tls_replies_are_read_and_a_trickle_or_a_silence_is_cut(tls_endless_server: str) -> None:
    stop = threading.Event()
    client = stream_client(tls_endless_server, max_attempts=1, should_stop=stop.is_set)
    assert client.get_json("/ok") == {"ok": True}
    assert client.get_json("/gzip") == {"ok": True}
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.get_json("/trickle")
    assert time.monotonic() - started < 2.0
    # Silent after its first bytes: a blocking TLS read would outlast the stop flag by the 5 s timeout.
    _EndlessHandler.arrived.clear()
    threading.Thread(target=lambda: _EndlessHandler.arrived.wait(10) and stop.set(), daemon=True).start()
    patient = stream_client(tls_endless_server, deadline=60.0, timeout=30.0, should_stop=stop.is_set)
    started = time.monotonic()
    with pytest.raises(Interrupted):
        patient.get_json("/silent")
    assert time.monotonic() - started < 2.0
