"""Tests for pipeline.http.classify: from a reply to data or the SourceError it stands for, with the
error rules of each source (pipeline.sources.blockchair / coingecko) plugged in as the client factories do."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
import responses

from pipeline.errors import (
    AuthError,
    FatalSourceError,
    PlanLimitError,
    RateLimitedError,
    ResponseFormatError,
    RetriableSourceError,
    SourceError,
)
from pipeline.http.classify import HTTP_RULES, SourceRules, classify_response, parse_retry_after
from tests.http.http_helpers import (
    BC_430,
    BLOCKCHAIR_RULES,
    CG_422,
    CG_429,
    CG_500,
    CG_10012,
    CG_URL,
    CLOUDFLARE_429,
    COINGECKO_RULES,
    ERROR_10002,
    KEY,
    make_client,
)

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
    assert classify_response("blockchair", "/bitcoin/stats", response, rules=BLOCKCHAIR_RULES) is None
    assert classify_response("blockchair", "/bitcoin/stats", response, rules=HTTP_RULES) is None


# ---------------------------------------------------------------- retry or not, Retry-After


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


# ---------------------------------------------------------------- per-source rules


def _reply(status: int, body: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    return response


BC_435 = '{"data":null,"context":{"code":435,"error":"Too many requests"}}'


@pytest.mark.parametrize(
    ("rules", "status", "body", "expected", "api_code"),
    [
        # Blockchair's codes mean nothing special elsewhere: a 435 is just another 4xx...
        (HTTP_RULES, 435, BC_435, FatalSourceError, None),
        (COINGECKO_RULES, 402, '{"error":"Payment Required"}', FatalSourceError, None),
        # ...and its envelope in a 200 is data, not an error, for a source without that envelope.
        (COINGECKO_RULES, 200, BC_435, None, None),
        # CoinGecko's error_code 10012 is a plan limit only for CoinGecko.
        (BLOCKCHAIR_RULES, 400, CG_10012, FatalSourceError, None),
        (HTTP_RULES, 401, CG_10012, AuthError, None),
        (COINGECKO_RULES, 400, CG_10012, PlanLimitError, 10012),
        (BLOCKCHAIR_RULES, 200, BC_435, RetriableSourceError, 435),
    ],
    ids=["http-435", "cg-402", "cg-200-envelope", "bc-10012", "http-10012", "cg-10012", "bc-200-435"],
)
def test_source_codes_apply_only_with_their_sources_rules(
    rules: SourceRules, status: int, body: str, expected: type[SourceError] | None, api_code: int | None
) -> None:
    error = classify_response("src", "/x", _reply(status, body), rules=rules)
    if expected is None:
        assert error is None
        return
    assert type(error) is expected
    assert error is not None
    assert error.api_code == api_code


def test_custom_rules_read_the_code_and_choose_the_class() -> None:
    def api_error(body: object) -> tuple[int | None, str | None]:
        if isinstance(body, dict) and isinstance(body.get("err"), int):
            return body["err"], "custom message"
        return None, None

    def error_class(status: int, api_code: int | None, message: str | None) -> type[SourceError] | None:
        return PlanLimitError if api_code == 7777 else None

    rules = SourceRules(api_error=api_error, error_class=error_class)
    plan = classify_response("src", "/x", _reply(403, '{"err": 7777}'), rules=rules)
    assert isinstance(plan, PlanLimitError)
    assert (plan.api_code, plan.detail) == (7777, "custom message")
    # A code the rules leave alone falls back to the plain meaning of the status.
    assert type(classify_response("src", "/x", _reply(403, '{"err": 1}'), rules=rules)) is AuthError
    # A 2xx carrying a code of 400 or more is an error, classified as if the code were the status.
    busy = classify_response("src", "/x", _reply(200, '{"err": 503}'), rules=rules)
    assert type(busy) is RetriableSourceError
    assert classify_response("src", "/x", _reply(200, '{"err": 200}'), rules=rules) is None


def test_a_message_about_an_invalid_key_is_an_auth_error_under_any_rules() -> None:
    body = '{"error": "Invalid API key"}'
    for rules in (HTTP_RULES, BLOCKCHAIR_RULES, COINGECKO_RULES):
        assert type(classify_response("src", "/x", _reply(400, body), rules=rules)) is AuthError
