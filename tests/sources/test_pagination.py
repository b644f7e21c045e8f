"""Tests for pipeline.sources.pagination: keyset paging, its hard stop and its guard against a cursor that
does not advance."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pipeline.errors import ResponseFormatError, SourceError
from pipeline.sources.pagination import keyset_pages

PAGE = 3


def listing(ids: list[int]) -> Callable[[int | None], list[int]]:
    """A well-behaved source over `ids`: up to PAGE ids after the cursor (None: from the start)."""

    def fetch(after: int | None) -> list[int]:
        rows = [i for i in ids if after is None or i > after]
        return rows[:PAGE]

    return fetch


def last_of_full_page(page: list[int]) -> int | None:
    """The cursor after a page: its last id, or None when the page is short (the listing's last)."""
    return page[-1] if len(page) == PAGE else None


def pages_of(
    fetch: Callable[[int | None], list[int]],
    next_cursor: Callable[[list[int]], int | None] = last_of_full_page,
    *,
    first: int | None = None,
    max_pages: int = 100,
) -> list[list[int]]:
    return list(
        keyset_pages(fetch, next_cursor, first=first, max_pages=max_pages, source="src", endpoint="/rows")
    )


def test_a_normal_run_reads_every_page_once() -> None:
    asked: list[int | None] = []
    fetch = listing(list(range(1, 9)))

    def recording(after: int | None) -> list[int]:
        asked.append(after)
        return fetch(after)

    assert pages_of(recording) == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert asked == [None, 3, 6]


def test_a_run_can_start_from_a_cursor() -> None:
    assert pages_of(listing(list(range(1, 9))), first=4) == [[5, 6, 7], [8]]


def test_an_exactly_full_last_page_ends_on_the_empty_page_after_it() -> None:
    assert pages_of(listing([1, 2, 3, 4, 5, 6])) == [[1, 2, 3], [4, 5, 6], []]


def test_an_empty_first_page_is_the_only_page() -> None:
    calls: list[int | None] = []

    def empty(after: int | None) -> list[int]:
        calls.append(after)
        return []

    assert pages_of(empty, lambda page: page[-1] if page else None) == [[]]
    assert calls == [None]


def test_a_cursor_that_does_not_move_is_refused_instead_of_looping() -> None:
    calls = 0

    def same_page(after: int | None) -> list[int]:
        nonlocal calls
        calls += 1
        return [1, 2, 3]  # a source that ignores the cursor

    pages = keyset_pages(same_page, last_of_full_page, max_pages=100, source="src", endpoint="/rows")
    assert next(pages) == [1, 2, 3]  # the first page leads to cursor 3: fine
    assert next(pages) == [1, 2, 3]  # fetched with cursor 3, it leads to 3 again
    with pytest.raises(ResponseFormatError, match="does not advance") as info:
        next(pages)
    assert calls == 2  # the same page was not asked for a third time
    error = info.value
    assert isinstance(error, SourceError)
    assert (error.source, error.endpoint, error.status) == ("src", "/rows", 200)
    assert "cursor 3 leads to 3" in str(error)


def test_a_cursor_going_backwards_is_refused() -> None:
    replies = iter([[10, 11, 12], [4, 5, 6]])  # the second page is behind the first

    with pytest.raises(ResponseFormatError, match="same or going backwards"):
        pages_of(lambda _after: next(replies))


def test_a_backwards_cursor_is_refused_from_the_first_cursor_given() -> None:
    # Started at 100, the first page leads to 50: behind where paging began.
    with pytest.raises(ResponseFormatError, match="cursor 100 leads to 50"):
        pages_of(lambda _after: [48, 49, 50], first=100)


def test_the_hard_stop_ends_a_listing_that_never_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.sources.pagination")
    fetched: list[int | None] = []

    def endless(after: int | None) -> list[int]:
        fetched.append(after)
        start = 0 if after is None else after
        return [start + 1, start + 2, start + 3]

    pages = pages_of(endless, max_pages=4)
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    assert fetched == [None, 3, 6, 9]
    assert "stopped paging after 4 pages" in caplog.text


def test_the_next_cursor_is_read_after_the_caller_handled_the_page() -> None:
    # The Blockchair block pager pins the range end on the first page; next_cursor must see it.
    handled: list[list[int]] = []

    def next_cursor(page: list[int]) -> int | None:
        assert handled[-1] is page
        return last_of_full_page(page)

    for page in keyset_pages(
        listing(list(range(1, 8))), next_cursor, max_pages=10, source="src", endpoint="/rows"
    ):
        handled.append(page)
    assert handled == [[1, 2, 3], [4, 5, 6], [7]]
