"""Tests for pipeline.http (the shared API client) and pipeline.errors."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import struct
import threading
import time
import traceback
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
    FatalSourceError,
    PipelineError,
    PlanLimitError,
    RateLimitedError,
    RecordValidationError,
    ResponseFormatError,
    RetriableSourceError,
    SourceError,
)
from pipeline.http import ApiClient, Auth, RequestStats, classify_response, parse_retry_after, safe_url

FIXTURES = Path(__file__).parent / "fixtures"
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
    caplog.set_level(logging.DEBUG, logger="pipeline.http")
    make_client(sleeps).get_json("/ping")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "coingecko /ping: HTTP 503" in warnings[0].getMessage()
    assert "attempt 1 of 3" in warnings[0].getMessage()
    debug = [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name == "pipeline.http"
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
