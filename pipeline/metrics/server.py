"""Serving the metrics: `/metrics` in the Prometheus text format over HTTP, one thread per request (where
it may listen: `binding`)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.metrics.binding import url_of
from pipeline.metrics.collector import PipelineCollector

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
INDEX = b"""<!doctype html><title>crypto-pipeline metrics</title>
<p>crypto-pipeline exporter: <a href="/metrics">/metrics</a> (Prometheus text format)</p>
"""


def build_registry(db: DatabaseService, settings: Settings) -> tuple[CollectorRegistry, PipelineCollector]:
    """A registry of the pipeline's metrics (read from `db` on every scrape) and the exporter process's
    own (`process_*`: its memory, CPU, open files)."""
    registry = CollectorRegistry()
    collector = PipelineCollector(db, settings)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry, collector


def make_app(registry: CollectorRegistry) -> WSGIApplication:
    """The WSGI app: the metrics at /metrics, a pointer to them at /, 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == METRICS_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: the metrics are at /metrics\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per request: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Log nothing."""


def make_http_server(app: WSGIApplication, host: str, port: int) -> WSGIServer:
    """A threaded HTTP server of `app` bound to host:port (IPv4 or IPv6, as the address is); port 0 picks
    a free one (`server.server_port`)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return make_server(host, port, app, Server, handler_class=_QuietHandler)


def serve(
    settings: Settings,
    db: DatabaseService,
    *,
    host: str,
    port: int,
    stop: threading.Event,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the metrics until `stop` is set: sum the run log first (so that the first scrape is quick),
    then answer every scrape in a thread of its own; `ready` is told the metrics URL once it answers.
    Raises OSError when the address cannot be bound."""
    registry, collector = build_registry(db, settings)
    collector.prime()
    try:
        server = make_http_server(make_app(registry), host, port)
    except OSError:
        db.dispose()
        raise
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    if ready is not None:
        ready(f"{url_of(host, server.server_port)}{METRICS_PATH}")
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        db.dispose()
