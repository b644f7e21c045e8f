"""Where the API may listen, and what it says about it: without API keys on loopback only, unless it is
asked for another address and API_ALLOW_REMOTE_WITHOUT_KEYS is true (`listen_refusal`); serving without
keys it warns that whoever reaches it can read (`open_warning`).

No FastAPI here: `crypto-pipeline up` decides where its API child listens with these, and the dashboard
imports the launcher.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.services.access import is_loopback


def url_of(host: str, port: int) -> str:
    """The base URL of an API listening on host:port (an IPv6 address in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def listen_refusal(settings: Settings, host: str) -> str | None:
    """Why the API must not listen on `host` as configured (None when it may): without API_KEYS only on
    loopback, unless API_ALLOW_REMOTE_WITHOUT_KEYS is set."""
    if settings.API_KEYS is not None or is_loopback(host) or settings.API_ALLOW_REMOTE_WITHOUT_KEYS:
        return None
    return (
        f"refusing to serve the API on {host} without API keys: set API_KEYS (KEY:read,...), or"
        " API_ALLOW_REMOTE_WITHOUT_KEYS=true to serve it open, or use --host 127.0.0.1"
    )


def open_warning(settings: Settings, host: str, port: int) -> str | None:
    """The warning printed when the API serves without keys (None with keys)."""
    if settings.API_KEYS is not None:
        return None
    who = "any local process" if is_loopback(host) else "anyone who can reach it"
    return f"serving without API keys (API_KEYS is not set): {who} can read {url_of(host, port)}/v1"
