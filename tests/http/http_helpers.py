"""What the tests of pipeline/http share: the fake key, base URLs, saved error replies and test clients."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from pipeline.http.auth import Auth
from pipeline.http.classify import HTTP_RULES, SourceRules
from pipeline.http.client import ApiClient
from pipeline.sources.blockchair import ERROR_RULES as BLOCKCHAIR_RULES
from pipeline.sources.coingecko import ERROR_RULES as COINGECKO_RULES
from tests.support.fixtures import fixture_text

KEY = "SECRETKEY123"
CG_URL = "https://api.coingecko.com/api/v3"
BC_URL = "https://api.blockchair.com"
CLOUDFLARE_429 = (
    "<!DOCTYPE html><html><head><title>Access denied | api.coingecko.com used Cloudflare to restrict access"
    "</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>"
)
ERROR_10002 = {"status": {"error_code": 10002, "error_message": "API Key Missing"}}

CG_429 = fixture_text("coingecko/error_429.json")
CG_500 = fixture_text("coingecko/error_500.json")
CG_422 = fixture_text("coingecko/error_422_missing_date.json")
CG_10012 = fixture_text("coingecko/error_10012_time_range.json")
BC_430 = fixture_text("blockchair/error_430.json")

# The error rules each source's client factory passes; any other source name gets plain HTTP.
RULES: dict[str, SourceRules] = {"blockchair": BLOCKCHAIR_RULES, "coingecko": COINGECKO_RULES}


def make_client(sleeps: list[float], **overrides: Any) -> ApiClient:
    """A CoinGecko client without pacing or backoff that records its retry sleeps in `sleeps`; the
    error rules follow `source` unless `rules` is given."""
    settings: dict[str, Any] = {
        "source": "coingecko",
        "base_url": CG_URL,
        "requests_per_minute": None,
        "max_attempts": 3,
        "backoff_base": 0.0,
        "sleep": sleeps.append,
    }
    merged = {**settings, **overrides}
    merged.setdefault("rules", RULES.get(merged["source"], HTTP_RULES))
    return ApiClient(**merged)


def blockchair_client(sleeps: list[float], **overrides: Any) -> ApiClient:
    """make_client for Blockchair, with the key as the `key` query parameter."""
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
