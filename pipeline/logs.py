"""Logging set-up: one readable line per event on stderr, with every configured secret masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Names the root handler configure_logging adds, so that a second call finds and reuses it.
_HANDLER_NAME = "crypto-pipeline"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in the text with ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    """Mask secret values in the final text of every record (a last line of defence behind the client)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets masked; never drops a record."""
        if not self.secrets:
            return True
        text = record.getMessage()
        if any(secret in text for secret in self.secrets):
            record.msg, record.args = redact(text, self.secrets), None
        return True


def configure_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Send logs to stderr in one-line format; idempotent."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        root.addHandler(handler)
    handler.filters = [RedactSecrets(secrets)]
    # Alembic announces every migration context at INFO; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
