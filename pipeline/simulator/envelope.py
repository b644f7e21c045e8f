"""Reply container and the response/error body shapes of both APIs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.simulator.detrand import fmt_time

JSON_TYPE = "application/json; charset=utf-8"
API_INFO = {
    "version": "2.0.95-ie",
    "last_major_update": "2022-11-07 02:00:00",
    "next_major_update": None,
    "documentation": "https://blockchair.com/api/docs",
    "notice": "Please note that on November 7th, 2022 public support for the following blockchains "
    "was dropped: EOS, Bitcoin SV",
}
CG_429_MESSAGE = (
    "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing "
    "to subscribe to our API plans for higher rate limits."
)
CG_10012_MESSAGE = (
    "Your request exceeds the allowed time range. Public API users are limited to querying historical "
    "data within the past {days} days. Upgrade to a paid plan to enjoy full historical data access: "
    "https://www.coingecko.com/en/api/pricing. "
)
BC_ERRORS = {
    400: "Invalid request",
    401: "Invalid API key",
    402: "Invalid API key",
    404: "An unknown endpoint was requested",
    429: "Too many requests. Please apply for an API key by contacting us at info@blockchair.com",
    500: "Internal server error",
    503: "Service temporarily unavailable, please retry later",
}
CLOUDFLARE_HTML = """<!DOCTYPE html>
<html lang="en-US"><head><title>{host} | {status}: Bad gateway</title>
<meta charset="UTF-8" /><meta name="robots" content="noindex, nofollow" /></head>
<body><div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">Error</span> <span class="code-label">Error code {status}</span></h1>
<p>The web server reported a bad gateway error.</p>
<div class="cf-error-footer">Cloudflare Ray ID: <strong>8a1b2c3d4e5f6a7b</strong> &bull;
Performance &amp; security by Cloudflare</div></div></div></body></html>
"""


@dataclass
class Reply:
    """An HTTP answer: a JSON payload or raw bytes, with status and extra headers."""

    status: int
    payload: Any = None
    raw: bytes | None = None
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    # A body sent piece by piece as it is produced (the trickle/endless/huge faults): `length` is its
    # Content-Length, or None for a chunked body, which may never end.
    chunks: Iterator[bytes] | None = None
    length: int | None = None

    def body(self) -> bytes:
        """Return the bytes to send."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.payload, separators=(",", ":")).encode()


def bc_context(started: float, **fields: Any) -> dict[str, Any]:
    """Return a Blockchair ``context`` with the diagnostic keys real replies carry."""
    context: dict[str, Any] = {"code": 200, "source": "D", **fields}
    context.update(_diagnostics(started))
    context.setdefault("request_cost", 1)
    return context


def _diagnostics(started: float) -> dict[str, Any]:
    now = int(time.time())
    elapsed = time.perf_counter() - started
    return {
        "cache": {
            "live": True,
            "duration": 60,
            "since": fmt_time(now),
            "until": fmt_time(now + 60),
            "time": None,
        },
        "api": dict(API_INFO),
        "servers": "API4",
        "time": round(elapsed, 6),
        "render_time": round(elapsed / 4, 6),
        "full_time": round(elapsed, 6),
    }


def bc_error(status: int, message: str | None = None) -> Reply:
    """Return a Blockchair error envelope: data null, context.code = HTTP status, no `state`."""
    context: dict[str, Any] = {"code": status, "error": message or BC_ERRORS.get(status, "Error")}
    context.update(_diagnostics(time.perf_counter()))
    context["request_cost"] = 1
    return Reply(status, {"data": None, "context": context})


def cg_plan_error(status: int, code: int, message: str) -> Reply:
    """Return CoinGecko's nested plan-error body (10012 and friends)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    status_body = {"timestamp": stamp, "error_code": code, "error_message": message}
    return Reply(status, {"error": {"status": status_body}})


def cg_key_error(status: int = 401) -> Reply:
    """Return CoinGecko's 10002 body (missing or wrong key)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    message = (
        "API Key Missing. Please make sure you're using the right authentication method. "
        "For Pro API, please visit: https://docs.coingecko.com/reference/authentication."
    )
    return Reply(status, {"status": {"timestamp": stamp, "error_code": 10002, "error_message": message}})


def cg_error(status: int, message: str | None = None) -> Reply:
    """Return a CoinGecko error body in the shape that status uses in real replies."""
    if status == 429:
        return Reply(429, {"status": {"error_code": 429, "error_message": CG_429_MESSAGE}})
    if status in (500, 503):
        text = "Internal Server Error" if status == 500 else "Service Unavailable"
        return Reply(status, {"status": status, "error": text})
    if status in (401, 402):
        return cg_key_error(status)
    return Reply(status, {"error": message or "Not Found"})


def html_error(status: int = 502, host: str = "api.example.com") -> Reply:
    """Return a Cloudflare-like HTML error page."""
    body = CLOUDFLARE_HTML.format(host=host, status=status).encode()
    return Reply(status, raw=body, content_type="text/html; charset=UTF-8")
