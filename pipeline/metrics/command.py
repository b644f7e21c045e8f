"""`crypto-pipeline metrics [--host 127.0.0.1] [--port 9464]`: the Prometheus exporter process.

It only reads: it never creates or migrates a database. It reads DATABASE_URL, the primary, not a
replica: a monitor should not report a lagging replica's past as the present. A database that does not
answer at start (or later) does not stop it: it serves `crypto_pipeline_database_up 0` until the
database answers. SIGTERM and Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseUnavailable
from pipeline.metrics.binding import listen_refusal
from pipeline.store.metrics_reads import exporter_engine

DEFAULT_PORT = 9464  # the port commonly used for an exporter of one's own (OpenTelemetry's Prometheus one)


def add_parser(sub: Any, *, port: Callable[[str], int]) -> None:
    """Add the `metrics` command to the CLI's subcommands (`port`: the CLI's port argument type)."""
    parser = sub.add_parser(
        "metrics",
        help="serve Prometheus metrics read from the database (at /metrics)",
        description=(
            "Serve the pipeline's metrics in the Prometheus text format at /metrics until Ctrl-C or"
            " SIGTERM, read from the database on every scrape. Listens on loopback only unless"
            " METRICS_ALLOW_REMOTE=true (else exit 2)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the metrics until SIGTERM or Ctrl-C; refuse (2) a non-loopback address unless allowed."""
    from pipeline.metrics.server import serve  # prometheus_client: imported by this command only

    refusal = listen_refusal(settings, args.host)
    if refusal is not None:
        sys.stderr.write(f"crypto-pipeline metrics: error: {refusal}\n")
        return 2
    db = exporter_database(settings)
    db.require_persistent()
    try:
        db.check_schema()  # a wrong database (none, another schema) is an error; an outage is not
    except DatabaseUnavailable as exc:
        sys.stderr.write(f"crypto-pipeline metrics: warning: {exc}; serving database_up 0 until it answers\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        serve(settings, db, host=args.host, port=args.port, stop=stop, ready=_announce)
    except OSError as exc:
        sys.stderr.write(
            f"crypto-pipeline metrics: error: cannot listen on {args.host}:{args.port}: {exc.strerror}\n"
        )
        return 2
    return 0


def exporter_database(settings: Settings) -> DatabaseService:
    """The exporter's service over DATABASE_URL, on an engine that gives up on a locked or slow database
    within seconds (`store.metrics_reads.exporter_engine`: a scrape must answer database_up 0 within
    Prometheus's scrape timeout, not hang). On PostgreSQL its connections read in autocommit: every read
    is one statement, so a transaction around each (BEGIN, the read, ROLLBACK: three round trips where one
    does) only adds waiting, which on a busy host is most of a scrape."""
    return DatabaseService(settings=settings, engine=exporter_engine(settings))


def _announce(url: str) -> None:
    sys.stdout.write(f"metrics on {url}\n")
    sys.stdout.flush()
