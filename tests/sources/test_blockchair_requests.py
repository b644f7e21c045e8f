"""Tests for the requests pipeline.sources.blockchair shapes: address batching and the ids paging moves on."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.sources.blockchair import ADDRESS_BATCH, address_requests, row_ids


def test_bitcoin_like_addresses_go_a_hundred_per_request() -> None:
    addresses = [f"1addr{i:03}" for i in range(ADDRESS_BATCH * 2 + 5)]
    requests = list(address_requests("bitcoin", "bitcoin", addresses))
    assert [len(batch) for _, batch in requests] == [ADDRESS_BATCH, ADDRESS_BATCH, 5]
    assert [a for _, batch in requests for a in batch] == addresses  # every address once, in order
    path, batch = requests[2]
    assert path == f"/bitcoin/dashboards/addresses/{','.join(batch)}"


def test_ethereum_addresses_go_one_per_request() -> None:
    addresses = ["0xaaa", "0xbbb"]
    assert list(address_requests("ethereum", "ethereum", addresses)) == [
        ("/ethereum/dashboards/address/0xaaa", ["0xaaa"]),
        ("/ethereum/dashboards/address/0xbbb", ["0xbbb"]),
    ]


def test_no_addresses_no_requests() -> None:
    assert list(address_requests("dogecoin", "bitcoin", [])) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"data": [{"id": 3}, {"id": 1}, {"id": 2}]}, [3, 1, 2]),
        # Rows that fail validation still count for paging; ids that are not ints do not.
        ({"data": [{"id": 5, "hash": None}, {"id": "6"}, {"id": True}, "row", {"no": "id"}]}, [5]),
        ({"data": []}, []),
        ({"data": {}}, []),
        ({"data": None, "context": {"code": 200}}, []),
        ([{"id": 1}], []),
    ],
)
def test_row_ids(payload: Any, expected: list[int]) -> None:
    assert row_ids(payload) == expected
