"""Build the one HTTP client per API from settings: base URL, key placement and request budget."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Settings
from pipeline.http.client import NO_AUTH, ApiClient, Auth


def _never() -> bool:
    return False


def blockchair_client(settings: Settings, *, should_stop: Callable[[], bool] = _never) -> ApiClient:
    """Blockchair: the key travels as the `key` query parameter (the only form the API accepts)."""
    key = settings.BLOCKCHAIR_API_KEY
    auth = Auth.query("key", key) if key is not None and key.get_secret_value() else NO_AUTH
    return _client(
        "blockchair",
        settings.BLOCKCHAIR_BASE_URL,
        auth,
        settings.BLOCKCHAIR_RATE_LIMIT_PER_MINUTE,
        settings,
        should_stop,
    )


def coingecko_client(settings: Settings, *, should_stop: Callable[[], bool] = _never) -> ApiClient:
    """CoinGecko: demo keys go in `x-cg-demo-api-key`, pro keys in `x-cg-pro-api-key` on the pro host."""
    key = settings.COINGECKO_API_KEY
    auth = NO_AUTH
    if key is not None and key.get_secret_value():
        header = "x-cg-pro-api-key" if settings.COINGECKO_API_PLAN == "pro" else "x-cg-demo-api-key"
        auth = Auth.header(header, key)
    return _client(
        "coingecko",
        settings.coingecko_url,
        auth,
        settings.COINGECKO_RATE_LIMIT_PER_MINUTE,
        settings,
        should_stop,
    )


def _client(
    source: str,
    base_url: str,
    auth: Auth,
    per_minute: float,
    settings: Settings,
    should_stop: Callable[[], bool],
) -> ApiClient:
    return ApiClient(
        source=source,
        base_url=base_url,
        auth=auth,
        requests_per_minute=per_minute,
        timeout=settings.HTTP_TIMEOUT_SECONDS,
        deadline=settings.HTTP_DEADLINE_SECONDS,
        max_response_bytes=settings.HTTP_MAX_RESPONSE_BYTES,
        should_stop=should_stop,
        max_attempts=settings.HTTP_MAX_ATTEMPTS,
        max_total_wait=settings.HTTP_MAX_TOTAL_WAIT_SECONDS,
        backoff_base=settings.HTTP_BACKOFF_BASE_SECONDS,
    )
