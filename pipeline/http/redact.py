"""Keep API keys out of every text the pipeline writes: errors, log lines, stored URLs.

A key can show up raw, URL-encoded, or as the value of a key-carrying query parameter (`?key=...`) in a
URL that requests or urllib3 put into an exception or a DEBUG line. :func:`scrub_query_secrets` masks
the query form for any parameter name registered here; :func:`secret_forms` lists the spellings of one
key so that a client can mask it wherever it appears; :func:`install_log_redaction` masks urllib3's own
URL log lines before any handler sees them.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import cache
from typing import Final
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "install_log_redaction",
    "mask_secrets",
    "register_secret_param",
    "safe_url",
    "scrub_query_secrets",
    "secret_forms",
]

MASK: Final = "***"

# urllib3 logs full request URLs (query string included) at DEBUG.
_URL_LOGGING_LOGGERS: Final = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection")

# Query parameters that carry API keys: Blockchair `key`, CoinGecko's query-string alternatives.
# Clients add the name they are configured with, so the log filter also masks custom names.
_secret_params: set[str] = {"key", "api_key", "apikey", "x_cg_demo_api_key", "x_cg_pro_api_key"}
_secret_params_lock = threading.Lock()


@cache
def _query_secret_pattern(names: frozenset[str]) -> re.Pattern[str]:
    """Regex matching `?name=value` / `&name=value` for any of `names`."""
    alternatives = "|".join(sorted(re.escape(name) for name in names))
    return re.compile(rf"([?&;](?:{alternatives})=)[^&#\s'\"]*", re.IGNORECASE)


def register_secret_param(name: str) -> None:
    """Remember one more query parameter name whose value must be masked."""
    with _secret_params_lock:
        _secret_params.add(name.lower())


def scrub_query_secrets(text: str) -> str:
    """Mask the values of key-carrying query parameters anywhere in `text`."""
    with _secret_params_lock:
        names = frozenset(_secret_params)
    return _query_secret_pattern(names).sub(rf"\g<1>{MASK}", text)


def safe_url(url: str) -> str:
    """Return `url` with key-carrying query values (and any password) masked, for storing."""
    parts = urlsplit(url)
    # Scrub the raw query rather than re-encode it, so the rest of the URL stays byte-identical.
    query = scrub_query_secrets(f"?{parts.query}")[1:]
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secret_forms(secret: str) -> tuple[str, ...]:
    """A key as it may appear in text: raw and URL-encoded, longest first (so a longer form is masked
    whole before a shorter one inside it); empty for no key."""
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)} - {""}
    return tuple(sorted(forms, key=len, reverse=True))


def mask_secrets(text: str, forms: tuple[str, ...]) -> str:
    """Replace each of `forms` (see :func:`secret_forms`) and key-like query values in `text` with ***."""
    for form in forms:
        text = text.replace(form, MASK)
    return scrub_query_secrets(text)


class _RedactQueryFilter(logging.Filter):
    """Mask key-carrying query values in third-party log records before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it contains a secret; never drop the record."""
        message = record.getMessage()
        cleaned = scrub_query_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@cache
def install_log_redaction() -> None:
    """Attach the redacting filter to the urllib3 loggers (once per process)."""
    for name in _URL_LOGGING_LOGGERS:
        logging.getLogger(name).addFilter(_RedactQueryFilter())
