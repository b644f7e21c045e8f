"""Tests for pipeline.http.client (ApiClient): retries, rate limiting, settings, transport failures,
and replies that never end (deadline, body cap, stop flag, unit limits)."""

from __future__ import annotations

import gzip
import logging
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses

from pipeline.errors import (
    ConfigError,
    DeadlineExceeded,
    FatalSourceError,
    Interrupted,
    RateLimitedError,
    ResponseTooLarge,
    RetriableSourceError,
    UnitTimeout,
)
from pipeline.http.auth import Auth
from pipeline.http.client import ApiClient, RequestStats
from pipeline.http.limits import current_unit, unit_limits
from tests.http.http_helpers import BLOCKCHAIR_RULES, CG_429, CG_URL, KEY, assert_no_secret, make_client

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
    # 600/min lets one request through every 0.1 s. A thread may be scheduled late after the limiter
    # released it, which shortens the gap to the next one, so measure the span: unshared limiters would
    # send all four at once, a shared one needs three intervals (less a little scheduling jitter).
    assert sent[-1] - sent[0] >= 0.25
    assert client.stats.requests == 4


# ---------------------------------------------------------------- settings and stats


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


def test_reset_stats_returns_previous_counters(mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.get(f"{CG_URL}/ping", json={})
    client = make_client(sleeps)
    client.get_json("/ping")
    old = client.reset_stats().snapshot()
    assert old.pop("http_seconds") > 0
    assert old == {"requests": 1, "retries": 0, "wait_seconds": 0.0, "rate_limited": 0}
    assert client.stats == RequestStats()


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
        "rules": BLOCKCHAIR_RULES,
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
