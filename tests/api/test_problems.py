"""Bad input gets a 4xx RFC 9457 problem naming the parameter, never a 500; a database outage is a 503
with Retry-After; no response carries a traceback, a driver's message or a secret."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_app
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseUnavailable, SchemaTooOld
from tests.api.seed import Seeded
from tests.support.settings import make_settings

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "errors"}

# path, query, status, the parameter named in `errors`
BAD_INPUT: list[tuple[str, dict[str, Any], int, str]] = [
    ("/v1/coins/nosuchcoin", {}, 404, "coin"),
    ("/v1/coins/nosuchcoin/transactions", {}, 404, "coin"),
    ("/v1/coins/bad coin!", {}, 400, "coin"),
    ("/v1/coins/BTC/blocks/123", {}, 404, "height"),
    ("/v1/coins/BTC/blocks/-1", {}, 400, "height"),
    ("/v1/coins/BTC/blocks/99999999999999999999", {}, 400, "height"),
    ("/v1/coins/BTC/blocks/123/transactions", {}, 404, "height"),
    ("/v1/coins/BTC/transactions/" + "ab" * 32, {}, 404, "tx_hash"),
    ("/v1/coins/BTC/transactions/xyz", {}, 400, "tx_hash"),
    ("/v1/runs/0", {}, 400, "run_id"),
    ("/v1/runs/" + str(2**40), {}, 400, "run_id"),
    ("/v1/runs/999999", {}, 404, "run_id"),
    ("/v1/runs", {"coin": "nosuchcoin"}, 400, "coin"),
    ("/v1/runs", {"status": "exploded"}, 400, "status.0"),
    ("/v1/runs", {"source": "binance"}, 400, "source.0"),
    ("/v1/runs", {"since": "2026-02-01", "until": "2026-01-01"}, 400, "until"),
    ("/v1/runs", {"since": "yesterday"}, 400, "since"),
    ("/v1/runs", {"limit": "5000"}, 400, "limit"),
    ("/v1/runs", {"cursor": "garbage"}, 400, "cursor"),
    ("/v1/quality/findings", {"severity": "fatal"}, 400, "severity"),
    ("/v1/quality/findings", {"coin": "nosuchcoin"}, 400, "coin"),
    ("/v1/coins/bitcoin/prices/daily", {"start": "2026-02-01", "end": "2026-01-01"}, 400, "end"),
    ("/v1/coins/bitcoin/prices/daily", {"start": "2026-02-30"}, 400, "start"),
    ("/v1/coins/bitcoin/prices/daily", {"start": "1900-01-01"}, 400, "start"),
    ("/v1/coins/bitcoin/prices/points", {"quote": "xyz"}, 400, "quote"),
    ("/v1/coins/bitcoin/prices/points", {"quote": "u$d"}, 400, "quote"),
    ("/v1/coins/bitcoin/prices/points", {"granularity": "1s"}, 400, "granularity"),
    (
        "/v1/coins/bitcoin/prices/points",
        {"start": "2026-02-01T00:00Z", "end": "2026-01-01T00:00Z"},
        400,
        "end",
    ),
    ("/v1/coins/bitcoin/prices/points", {"start": "0001-01-01T00:00:00+01:00"}, 400, "start"),
    ("/v1/coins/bitcoin/prices/points", {"end": "9999-12-31T23:59:59-05:00"}, 400, "end"),
    ("/v1/coins/bitcoin/prices/latest", {"quote": "zzz"}, 400, "quote"),
    ("/v1/coins/bitcoin/candles", {"interval": "2h"}, 400, "interval"),
    ("/v1/coins/bitcoin/candles", {"quote": "jpy"}, 400, "quote"),
    ("/v1/coins/bitcoin/analytics/daily", {"start": "2026-03-01", "end": "2026-01-01"}, 400, "end"),
    ("/v1/coins/BTC/blocks", {"start": "2026-03-01T00:00Z", "end": "2026-01-01T00:00Z"}, 400, "end"),
    ("/v1/coverage", {"start": "1980-01-01", "end": "2199-01-01"}, 400, "start"),
    ("/v1/analytics/correlation", {"coin": "nosuchcoin"}, 400, "coin"),
]


def _check_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"].startswith("/problems/") or body["type"] == "about:blank"
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(("path", "query", "status", "parameter"), BAD_INPUT)
def test_bad_input_is_a_problem_naming_the_parameter(
    shared_client: TestClient, path: str, query: dict[str, Any], status: int, parameter: str
):
    body = _check_problem(shared_client.get(path, params=query), status)
    assert body["instance"] == path
    assert parameter in [e["name"] for e in body["errors"]], body


def test_problem_types_are_described(shared_client: TestClient):
    body = _check_problem(shared_client.get("/v1/runs", params={"limit": 0}), 400)
    described = shared_client.get(body["type"])
    assert described.status_code == 200
    assert described.json()["status"] == 400
    _check_problem(shared_client.get("/problems/nothing-like-this"), 404)


def test_unknown_paths_and_methods(shared_client: TestClient):
    _check_problem(shared_client.get("/v1/nothing"), 404)
    _check_problem(shared_client.get("/v2/coins"), 404)
    response = shared_client.post("/v1/coins")
    body = _check_problem(response, 405)
    assert response.headers["allow"] == "GET"
    assert body["type"] == "/problems/method-not-allowed"
    _check_problem(shared_client.delete("/v1/runs/1"), 405)


def test_a_database_outage_is_a_503_with_retry_after(
    shared_db: tuple[DatabaseService, Seeded], monkeypatch: pytest.MonkeyPatch
):
    db = shared_db[0]

    def down(*_args: object, **_kwargs: object) -> None:
        raise DatabaseUnavailable("database unavailable: connection refused (/secret/place/crypto.db)")

    monkeypatch.setattr(db, "runs_page", down)
    monkeypatch.setattr(db, "get_coins", down)
    with TestClient(create_app(db.settings, db)) as client:
        for path in ("/v1/runs", "/v1/coins", "/v1/coins/BTC/transactions"):
            response = client.get(path)
            body = _check_problem(response, 503)
            assert response.headers["retry-after"] == "5"
            assert body["type"] == "/problems/database-unavailable"
            assert "/secret/place" not in response.text
    monkeypatch.setattr(db, "get_coins", lambda *_a, **_k: (_ for _ in ()).throw(SchemaTooOld("old")))
    with TestClient(create_app(db.settings, db)) as client:
        body = _check_problem(client.get("/v1/coins"), 503)
        assert body["type"] == "/problems/database-error"
        assert "retry-after" not in body


def test_an_unexpected_error_is_a_500_without_traceback_or_secret(
    shared_db: tuple[DatabaseService, Seeded], monkeypatch: pytest.MonkeyPatch
):
    db = shared_db[0]
    secret = "sk-live-very-secret-value"
    settings = make_settings(db.settings.DATABASE_URL, BLOCKCHAIR_API_KEY=secret, API_KEYS=f"{secret}x:read")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"boom with {secret} inside")

    monkeypatch.setattr(db, "get_coins", broken)
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        response = client.get("/v1/coins", headers={"X-API-Key": f"{secret}x"})
    body = _check_problem(response, 500)
    assert body["type"] == "/problems/internal-error"
    assert secret not in response.text
    assert "boom" not in response.text
    assert "RuntimeError" not in response.text


def test_the_openapi_documents_problems_and_no_422(shared_client: TestClient):
    schema = shared_client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            assert "422" not in responses, path
            assert "400" in responses or path in ("/v1/gaps", "/v1/gaps/plan", "/v1/freshness", "/v1/health",
                                                  "/v1/stats"), path  # fmt: skip
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/v1/health":
                    assert list(response["content"]) == ["application/problem+json"], (path, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
