"""Where the exporter may listen: loopback only, unless METRICS_ALLOW_REMOTE is set.

The metrics carry no secret but say a lot about the pipeline, and the endpoint has no authentication, so
like the REST API without keys it stays on this machine unless told otherwise (behind a firewall that
lets only Prometheus in, or a proxy). No prometheus-client here: `crypto-pipeline up` decides where its
exporter child listens with these, and the dashboard imports the launcher.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.services.access import is_loopback


def url_of(host: str, port: int) -> str:
    """The base URL of a server on host:port (an IPv6 address in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def listen_refusal(settings: Settings, host: str) -> str | None:
    """Why the exporter must not listen on `host` (None when it may): loopback only, unless
    METRICS_ALLOW_REMOTE is set."""
    if is_loopback(host) or settings.METRICS_ALLOW_REMOTE:
        return None
    return (
        f"refusing to serve metrics on {host}: the endpoint has no authentication; set"
        " METRICS_ALLOW_REMOTE=true to serve it there (behind a firewall or a proxy), or use --host 127.0.0.1"
    )
