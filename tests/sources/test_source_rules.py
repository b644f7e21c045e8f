"""Tests for what each source module adds to the shared HTTP client: the meaning of its own error codes
(pipeline.sources.blockchair / coingecko ERROR_RULES) and its client built from settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pipeline.config import Settings
from pipeline.errors import AuthError, PlanLimitError, RetriableSourceError, SourceError
from pipeline.sources import blockchair, coingecko
from tests.support.fixtures import fixture_text, load_fixture
from tests.support.settings import make_settings

KEY = "SECRETKEY123"

# ---------------------------------------------------------------- Blockchair


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": None, "context": {"code": 430, "error": "Blacklisted"}}, (430, "Blacklisted")),
        ({"data": None, "context": {"code": "435"}}, (435, None)),
        ({"data": [], "context": {"code": 200, "state": 5}}, (200, None)),
        # No usable context.code: the common shapes.
        ({"context": {"code": True}, "error": "text"}, (None, "text")),
        ({"error": "text"}, (None, "text")),
        ({"status": {"error_code": 10012, "error_message": "CoinGecko's shape"}}, (None, None)),
        ("not an object", (None, None)),
    ],
)
def test_blockchair_api_error_reads_the_context_envelope(body: Any, expected: tuple[Any, Any]) -> None:
    assert blockchair.api_error(body) == expected


def test_blockchair_api_error_reads_the_saved_430() -> None:
    code, message = blockchair.api_error(load_fixture("blockchair/error_430.json"))
    assert code == 430
    assert message


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (402, "Limit exceeded", RetriableSourceError),
        (402, "Invalid API token. Please contact us at info@b", AuthError),
        (435, None, RetriableSourceError),
        (436, None, RetriableSourceError),
        (437, "Too many requests", RetriableSourceError),
        (435, "invalid api key", AuthError),
        (430, None, None),  # blacklisted: the shared rule makes it permanent
        (434, None, None),
        (429, None, None),
        (500, None, None),
    ],
)
def test_blockchair_error_class(status: int, message: str | None, expected: type[SourceError] | None) -> None:
    assert blockchair.error_class(status, status, message) is expected


# ---------------------------------------------------------------- CoinGecko


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": {"error_code": 429, "error_message": "slow down"}}, (429, "slow down")),
        ({"error": {"status": {"error_code": 10012, "error_message": "range"}}}, (10012, "range")),
        ({"error": "invalid date"}, (None, "invalid date")),
        ({"status": 500, "error": "text"}, (None, "text")),
        ({"data": None, "context": {"code": 435}}, (None, None)),  # Blockchair's envelope means nothing here
        ([1, 2], (None, None)),
    ],
)
def test_coingecko_api_error_reads_both_error_shapes(body: Any, expected: tuple[Any, Any]) -> None:
    assert coingecko.api_error(body) == expected


def test_coingecko_api_error_reads_the_saved_10012() -> None:
    assert coingecko.api_error(load_fixture("coingecko/error_10012_time_range.json"))[0] == 10012


@pytest.mark.parametrize(
    ("api_code", "expected"),
    [
        (10002, AuthError),
        (10010, AuthError),
        (10011, AuthError),
        (10005, PlanLimitError),
        (10012, PlanLimitError),
        (429, None),
        (None, None),
    ],
)
def test_coingecko_error_class(api_code: int | None, expected: type[SourceError] | None) -> None:
    for status in (400, 401, 403):
        assert coingecko.error_class(status, api_code, "message") is expected
    # Blockchair's "back off" statuses are not CoinGecko's.
    assert coingecko.error_class(435, None, None) is None


# ---------------------------------------------------------------- clients from settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        f"sqlite:///{tmp_path / 'unused.db'}",
        BLOCKCHAIR_API_KEY=KEY,
        COINGECKO_API_KEY=KEY,
        COINGECKO_API_PLAN="demo",
        HTTP_MAX_ATTEMPTS=1,
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def test_blockchair_client_sends_the_key_as_a_query_parameter_and_knows_its_codes(
    settings: Settings, mocked: responses.RequestsMock
) -> None:
    url = f"{settings.BLOCKCHAIR_BASE_URL}/bitcoin/stats"
    mocked.get(url, json={"data": None, "context": {"code": 402, "error": "Invalid API token."}}, status=402)
    with blockchair.blockchair_client(settings) as client:
        assert client.source == "blockchair"
        with pytest.raises(AuthError) as info:
            client.get_json("/bitcoin/stats")
    assert parse_qs(urlsplit(mocked.calls[0].request.url).query) == {"key": [KEY]}
    assert info.value.api_code == 402
    assert KEY not in str(info.value)


def test_coingecko_client_sends_the_key_in_the_plan_header_and_knows_its_codes(
    settings: Settings, mocked: responses.RequestsMock
) -> None:
    url = f"{settings.coingecko_url}/coins/bitcoin/market_chart/range"
    mocked.get(url, body=fixture_text("coingecko/error_10012_time_range.json"), status=401)
    with coingecko.coingecko_client(settings) as client:
        assert client.source == "coingecko"
        with pytest.raises(PlanLimitError):
            client.get_json("/coins/bitcoin/market_chart/range")
    request = mocked.calls[0].request
    assert request.headers["x-cg-demo-api-key"] == KEY
    assert KEY not in request.url


def test_clients_without_a_key_send_none(tmp_path: Path, mocked: responses.RequestsMock) -> None:
    bare = make_settings(f"sqlite:///{tmp_path / 'unused.db'}")
    mocked.get(f"{bare.BLOCKCHAIR_BASE_URL}/bitcoin/stats", json={"data": {}, "context": {"code": 200}})
    with blockchair.blockchair_client(bare) as client:
        assert client.get_json("/bitcoin/stats") == {"data": {}, "context": {"code": 200}}
    assert urlsplit(mocked.calls[0].request.url).query == ""
