"""Tests for pipeline.http.redact: no API key in an error, a log line or a stored URL."""

from __future__ import annotations

import logging
import socket
from urllib.parse import quote, quote_plus

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import AuthError, FatalSourceError, RetriableSourceError
from pipeline.http.auth import Auth
from pipeline.http.client import ApiClient
from pipeline.http.redact import safe_url
from tests.http.http_helpers import BC_URL, CG_URL, KEY, assert_no_secret, blockchair_client, make_client


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
