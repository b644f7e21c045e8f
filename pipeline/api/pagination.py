"""Opaque keyset cursors and the `limit` and `cursor` parameters every list takes.

A cursor is base64url (no padding) of a 12-byte tag followed by a small JSON document::

    {"v": 1, "r": "transactions", "q": "<digest of the listing's filters>", "k": [812345, "ab12..."],
     "p": 812400}

- `v`: the cursor format's version; another version is refused.
- `r`: the listing it belongs to, and `q` a digest of its filters (coin, quote, range, status ...): a
  cursor used on another listing, or with other filters, is refused. `limit` may change between pages.
- `k`: the key of the last row returned; the next page starts after it in the listing's stable, unique
  order (for example (block_id desc, tx_hash asc) for transactions), so rows written meanwhile never
  shift a page: every row that existed when paging began comes exactly once.
- `p`: the pin taken at the first page, an upper bound of what the listing shows, for example the
  newest block holding transactions, or the end of a time series (`now` then). Rows beyond it, written
  after paging began, are left out of the remaining pages.

The tag is an HMAC-SHA256 of the JSON under a key fixed in this module: it detects a cursor that was
altered or damaged (answered 400, `invalid-cursor`). It is not a secret and not a permission: a cursor
only says where a listing resumes, and grants nothing a client could not ask for with filters.
Datetimes travel as integer microseconds since the Unix epoch. Every value is bounds-checked after
decoding, as the database columns require.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query

from pipeline.api.problems import bad_parameter

VERSION = 1
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 1024
_TAG_KEY = b"crypto-pipeline api cursor v1"
_TAG_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT64 = (-(2**63), 2**63 - 1)

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The previous page's `next_cursor`, with the same filters (omit for the first page).",
    ),
]


def micros(value: datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch (the cursor's form)."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """The inverse of `micros`."""
    return _EPOCH + timedelta(microseconds=value)


def scope_digest(resource: str, scope: Mapping[str, object]) -> str:
    """A short digest of a listing's filters: cursors of other filters are refused."""
    text = json.dumps([resource, {k: str(v) for k, v in scope.items() if v is not None}], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tag(payload: bytes) -> bytes:
    return hmac.new(_TAG_KEY, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def encode_cursor(
    resource: str, scope: Mapping[str, object], key: Sequence[int | str], pin: int | None = None
) -> str:
    """The cursor that resumes a listing after `key` (the last row's key), pinned at `pin`."""
    document = {"v": VERSION, "r": resource, "q": scope_digest(resource, scope), "k": list(key), "p": pin}
    payload = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_tag(payload) + payload).rstrip(b"=").decode()


@dataclass(frozen=True)
class Cursor:
    """A decoded cursor: the last row's key and the pin of the first page."""

    key: list[int | str]
    pin: int | None


def _invalid(detail: str) -> Exception:
    return bad_parameter("cursor", detail, slug="invalid-cursor")


def _check_value(value: object, kind: type | tuple[int, int], position: int) -> None:
    if isinstance(kind, tuple):  # an integer range
        if type(value) is not int or not kind[0] <= value <= kind[1]:
            raise _invalid(f"key part {position} is not an integer in range")
    elif type(value) is not kind or (isinstance(value, str) and len(value) > 128):
        raise _invalid(f"key part {position} is not a {kind.__name__}")


def decode_cursor(
    token: str,
    resource: str,
    scope: Mapping[str, object],
    shape: Sequence[type | tuple[int, int]],
    pin: tuple[int, int] | None = None,
) -> Cursor:
    """The cursor of a listing, checked: its tag, version, listing, filters, and that its key has the
    listing's shape (`int` ranges as (low, high), or `str`) and its pin the range `pin` (or is null when
    `pin` is None). Anything else raises a 400 `invalid-cursor` problem naming the `cursor` parameter."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("not a cursor this API issued (not base64url)") from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, _tag(payload)):
        raise _invalid("not a cursor this API issued (damaged or altered)")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise _invalid("not a cursor this API issued (no document)") from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise _invalid("a cursor of another version; start again without a cursor")
    if document.get("r") != resource or document.get("q") != scope_digest(resource, scope):
        raise _invalid("this cursor belongs to another listing or other filters")
    key, found_pin = document.get("k"), document.get("p")
    if not isinstance(key, list) or len(key) != len(shape):
        raise _invalid("the cursor's key does not fit this listing")
    for position, (value, kind) in enumerate(zip(key, shape, strict=True)):
        _check_value(value, kind, position)
    if pin is None:
        if found_pin is not None:
            raise _invalid("this listing takes no pin")
    else:
        _check_value(found_pin, pin, len(shape))
    return Cursor(key=key, pin=found_pin)


def page_slice(rows: Sequence[Any], limit: int) -> tuple[list[Any], bool]:
    """The first `limit` of `rows` (read as limit + 1), and whether there were more."""
    return list(rows[:limit]), len(rows) > limit
