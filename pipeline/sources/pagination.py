"""Keyset paging: ask for the rows after the last one seen, page after page, until a page is the last.

A keyset cursor only works if it moves forward. A source that ignores the filter, or repeats or reorders
rows, hands back a cursor that is the same as, or behind, the one just sent; asking again would loop
(and spend quota) until the hard stop. :func:`keyset_pages` refuses such a cursor with a
ResponseFormatError instead, and stops after `max_pages` pages whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from pipeline.errors import ResponseFormatError

__all__ = ["keyset_pages"]

logger = logging.getLogger(__name__)


class _Ordered(Protocol):
    """A cursor: anything with an order (ids, heights, timestamps, strings)."""

    def __lt__(self, other: Any, /) -> bool: ...


C = TypeVar("C", bound=_Ordered)
P = TypeVar("P")


def keyset_pages(
    fetch: Callable[[C | None], P],
    next_cursor: Callable[[P], C | None],
    *,
    first: C | None = None,
    max_pages: int,
    source: str,
    endpoint: str,
) -> Iterator[P]:
    """Yield `fetch(first)`, then `fetch(next_cursor(page))` for each page, until `next_cursor` says None.

    `fetch(cursor)` requests one page (`None`: the first page of a listing that starts without a
    cursor). `next_cursor(page)` is the cursor of the page after it, or None when this page was the last
    (short, empty, or past the end). It is called only once the caller has handled the page, so it may
    read what handling the page learnt (such as a range end pinned on the first page).

    Raises ResponseFormatError (for `source` and `endpoint`) when a cursor does not advance: equal to
    or behind the cursor that fetched the page. At most `max_pages` pages are fetched; the caller sees
    the listing end there and can tell from its own counts that rows are missing.
    """
    cursor = first
    for _ in range(max_pages):
        page = fetch(cursor)
        yield page
        following = next_cursor(page)
        if following is None:
            return
        if cursor is not None and not cursor < following:
            detail = (
                f"keyset paging does not advance: the page fetched with cursor {cursor!r} leads to "
                f"{following!r} (same or going backwards); stopped instead of fetching it again"
            )
            raise ResponseFormatError(detail, source=source, endpoint=endpoint, status=200)
        cursor = following
    logger.warning("%s %s: stopped paging after %d pages (the hard stop)", source, endpoint, max_pages)
