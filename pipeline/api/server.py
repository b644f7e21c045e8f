"""Serve the API with uvicorn (`crypto-pipeline api`, and the `api` child of `crypto-pipeline up`).

Logging stays the process's own (`pipeline.logs`, with its secret filter): uvicorn is given no logging
configuration of its own, and its access log names method, path and status, never a header (so never an
API key).
"""

from __future__ import annotations

import uvicorn

from pipeline.api.app import create_app
from pipeline.config import Settings
from pipeline.database import DatabaseService


def serve(settings: Settings, db: DatabaseService, *, host: str, port: int) -> None:
    """Serve the API on host:port until SIGINT or SIGTERM."""
    uvicorn.run(
        create_app(settings, db),
        host=host,
        port=port,
        log_config=None,
        log_level=settings.LOG_LEVEL.lower(),
        server_header=False,
    )
