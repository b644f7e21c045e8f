"""API keys: 401 without or with an unknown key, 403 without the scope, constant-time comparison, keys
never logged or echoed; the docs stay open; responses are private to their client."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pipeline.api import security
from pipeline.api.app import create_app
from pipeline.config import parse_api_keys
from pipeline.database import DatabaseService
from pipeline.errors import ConfigError
from tests.api.seed import Seeded
from tests.support.settings import make_settings

READER = "rEAd3r-k3y_0123456789abcdef"
MONITOR = "m0n1tor.k3y~fedcba9876543210"
KEYS = f"{READER}:read, {MONITOR}:health"


@pytest.fixture
def keyed(shared_db: tuple[DatabaseService, Seeded]) -> Iterator[TestClient]:
    db = shared_db[0]
    settings = make_settings(db.settings.DATABASE_URL, API_KEYS=KEYS)
    with TestClient(create_app(settings, db)) as client:
        yield client


def test_every_v1_request_needs_a_key(keyed: TestClient):
    for path in ("/v1/coins", "/v1/runs", "/v1/health", "/v1/coins/BTC/transactions"):
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": READER + "x"}):
            response = keyed.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == 'APIKey header="X-API-Key"'
            assert response.json()["type"] == "/problems/unauthorized"
        assert keyed.get(path, headers={"X-API-Key": READER}).status_code == 200


def test_a_key_without_the_scope_is_forbidden(keyed: TestClient):
    monitor = {"X-API-Key": MONITOR}
    assert keyed.get("/v1/health", headers=monitor).status_code == 200
    for path in ("/v1/coins", "/v1/runs", "/v1/stats"):
        response = keyed.get(path, headers=monitor)
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/forbidden"


def test_keys_are_checked_before_the_parameters(keyed: TestClient):
    assert keyed.get("/v1/runs", params={"limit": 0}).status_code == 401
    assert keyed.get("/v1/runs", params={"limit": 0}, headers={"X-API-Key": READER}).status_code == 400


def test_docs_and_the_schema_stay_open(keyed: TestClient):
    assert keyed.get("/openapi.json").status_code == 200
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/problems/unauthorized").status_code == 200
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    assert {"401", "403"} <= set(schema["paths"]["/v1/coins"]["get"]["responses"])


def test_without_keys_no_security_is_documented_and_responses_are_shared(shared_client: TestClient):
    schema = shared_client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert shared_client.get("/v1/coins").headers["cache-control"] == "no-cache"


def test_with_keys_responses_are_private(keyed: TestClient):
    response = keyed.get("/v1/coins", headers={"X-API-Key": READER})
    assert response.headers["cache-control"] == "private, no-cache"


def test_every_key_is_compared_in_constant_time(keyed: TestClient, monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert keyed.get("/v1/coins", headers={"X-API-Key": READER}).status_code == 200
    assert len(calls) == 2  # both keys, though the first matched
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: the length of a key tells nothing


def test_keys_are_never_logged_or_echoed(
    shared_db: tuple[DatabaseService, Seeded], caplog: pytest.LogCaptureFixture
):
    db = shared_db[0]
    settings = make_settings(db.settings.DATABASE_URL, API_KEYS=KEYS)
    assert READER not in repr(settings)
    assert READER not in str(settings.API_KEYS)
    assert {READER, MONITOR} <= set(settings.secrets())  # for the log filter of pipeline.logs
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings, db)) as client:
        responses = [
            client.get("/v1/coins", headers={"X-API-Key": READER}),
            client.get("/v1/coins", headers={"X-API-Key": MONITOR}),
            client.get("/v1/coins", headers={"X-API-Key": READER[:-1]}),
            client.get("/v1/runs", params={"limit": "x"}, headers={"X-API-Key": READER}),
        ]
    for response in responses:
        assert READER not in response.text
        assert MONITOR not in response.text
        assert READER[:-1] not in response.text
    assert READER[:10] not in caplog.text
    assert MONITOR[:10] not in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "entry 1 is not KEY:SCOPE"),
        ("abc:read,def", "entry 2 is not KEY:SCOPE"),
        ("abc:write", "entry 1: unknown scope 'write'"),
        ("abc:", "entry 1 has an empty scope"),
        ("a b:read", "entry 1 is not KEY:SCOPE"),
        ("abc:read,abc:health", "entry 2 repeats an earlier key"),
    ],
)
def test_bad_api_keys_stop_the_program_naming_the_entry_not_the_key(value: str, message: str):
    with pytest.raises(ConfigError) as caught:
        make_settings("sqlite://", API_KEYS=value)
    assert message in str(caught.value)
    assert "abc" not in str(caught.value)


def test_the_key_format():
    settings = make_settings("sqlite://", API_KEYS="k1:read, k2:read+health,k3:health")
    assert {key: grant.scopes for key, grant in parse_api_keys(settings.API_KEYS).items()} == {
        "k1": frozenset({"read"}),
        "k2": frozenset({"read", "health"}),
        "k3": frozenset({"health"}),
    }
    assert parse_api_keys(make_settings("sqlite://").API_KEYS) == {}
