"""Tests for pipeline.http.auth: where the key travels, and settings that cannot work."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pipeline.errors import ConfigError
from pipeline.http.auth import Auth
from tests.http.http_helpers import BC_URL, CG_URL, KEY, blockchair_client, make_client


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


def test_auth_repr_and_validation() -> None:
    assert KEY not in repr(Auth.header("x-cg-demo-api-key", KEY))
    with pytest.raises(ConfigError):
        Auth("header", "x-cg-demo-api-key")
    with pytest.raises(ConfigError):
        Auth.query("", KEY)
    with pytest.raises(ConfigError) as info:
        Auth("nonsense", "key")  # type: ignore[arg-type]
    assert KEY not in str(info.value)
