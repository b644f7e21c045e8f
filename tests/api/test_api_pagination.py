"""Keyset pages and their cursors: every row that existed when paging began comes exactly once while the
scheduler writes new ones, on SQLite and PostgreSQL; cursors that were altered, belong elsewhere or carry
values out of range are refused with a 400."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from pipeline.api import pagination
from pipeline.database import DatabaseService
from pipeline.schemas import BlockchainTransactionData
from tests.api.conftest import walk
from tests.api.seed import Seeded
from tests.support.factories import fake_hash

BASE = 700_000
BLOCKS = 2_000
PER_BLOCK = 10  # 20,000 transactions


def _transactions(
    heights: range, per_block: int, salt: str, when: datetime
) -> list[BlockchainTransactionData]:
    return [
        BlockchainTransactionData.model_construct(
            coin_symbol="BTC",
            tx_hash=fake_hash("BTC", h, f"{salt}{n}"),
            block_id=h,
            source_id=None,
            time=when,
            fee=1000 + n,
            input_total=None,
            output_total=2**66 + n,
            fee_usd=None,
            input_total_usd=None,
            output_total_usd=None,
            input_count=1,
            output_count=1,
            size=200,
            is_coinbase=False,
            sender=None,
            recipient=None,
            value=None,
            gas_used=None,
            failed=None,
        )  # fmt: skip
        for h in heights
        for n in range(per_block)
    ]


class Inserter(threading.Thread):
    """The scheduler's part: new transactions in new blocks above the top, and late ones in old blocks,
    a small batch at a time, until stopped."""

    def __init__(self, db: DatabaseService, when: datetime) -> None:
        super().__init__(daemon=True)
        self.db, self.when = db, when
        self.stop = threading.Event()
        self.inserted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        round_ = 0
        try:
            while not self.stop.is_set():
                top = BASE + BLOCKS + round_
                old = BASE + (round_ * 37) % BLOCKS
                batch = _transactions(range(top, top + 1), 5, "new", self.when)
                batch += _transactions(range(old, old + 1), 2, f"late{round_}-", self.when)
                self.db.insert_transactions(batch)
                self.inserted += len(batch)
                round_ += 1
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_paging_while_new_transactions_arrive_returns_every_existing_row_once(db: DatabaseService):
    when = datetime.now(UTC) - timedelta(hours=1)
    existing = _transactions(range(BASE, BASE + BLOCKS), PER_BLOCK, "tx", when)
    db.insert_transactions(existing)
    expected = {t.tx_hash for t in existing}
    inserter = Inserter(db, when)
    from pipeline.api.app import create_app

    with TestClient(create_app(db.settings, db)) as client:
        first = client.get("/v1/coins/BTC/transactions", params={"limit": 500})
        assert first.status_code == 200
        inserter.start()
        try:
            seen = list(first.json()["data"])
            cursor = first.json()["next_cursor"]
            pages = 1
            while cursor:
                before = inserter.inserted
                while inserter.inserted == before and inserter.is_alive():  # interleave: a write per page
                    time.sleep(0.001)
                body = client.get(
                    "/v1/coins/BTC/transactions", params={"limit": 500, "cursor": cursor}
                ).json()
                seen += body["data"]
                cursor = body["next_cursor"]
                pages += 1
        finally:
            inserter.stop.set()
            inserter.join(timeout=30)
    assert inserter.error is None, inserter.error
    assert inserter.inserted >= pages  # rows were written between every two pages
    counts = Counter(t["tx_hash"] for t in seen)
    assert [h for h, n in counts.items() if n > 1] == []  # 0 duplicates
    assert expected - counts.keys() == set()  # 0 skips
    assert all(t["block_id"] < BASE + BLOCKS for t in seen)  # blocks newer than the first page: not listed
    keys = [(-t["block_id"], t["tx_hash"]) for t in seen]
    assert keys == sorted(keys)
    assert {t["output_total"] for t in seen if t["tx_hash"] in expected} <= {
        str(2**66 + n) for n in range(10)
    }


def test_a_page_of_one(shared_client: TestClient, shared_db: tuple[DatabaseService, Seeded]):
    one = walk(shared_client, "/v1/runs", limit=1)
    assert [r["id"] for r in one] == [r.id for r in shared_db[0].get_ingestion_logs(limit=None)]


def test_series_pages_end_at_the_pin(client: TestClient, db: DatabaseService, seeded: Seeded):
    start = (seeded.now - timedelta(hours=3)).isoformat()
    query = {"granularity": "5m", "limit": 3, "start": start}
    first = client.get("/v1/coins/bitcoin/prices/points", params=query).json()
    assert first["next_cursor"]
    newest = db.get_latest_price("bitcoin")
    assert newest is not None
    time.sleep(0.01)
    late = datetime.now(UTC)  # after the first page's "now", the series' pinned end
    db.insert_price_points([{**newest.model_dump(), "ts": late}])
    rest = walk(client, "/v1/coins/bitcoin/prices/points", **query, cursor=first["next_cursor"])
    listed = [p["ts"] for p in first["data"] + rest]
    assert len(listed) == len(set(listed))
    assert newest.ts.isoformat().replace("+00:00", "Z") in listed
    assert all(datetime.fromisoformat(ts) < late for ts in listed)  # the later point is past the pin


# ---------------------------------------------------------------------------------------------- cursors


def _cursor(client: TestClient, path: str, **params: object) -> str:
    body = client.get(path, params={"limit": 1, **params}).json()
    assert body["next_cursor"], body
    return str(body["next_cursor"])


def _problem(client: TestClient, path: str, **params: object) -> dict[str, object]:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["errors"][0]["name"] == "cursor", body
    return dict(body)


def _forge(document: dict[str, object]) -> str:
    payload = json.dumps(document).encode()
    return base64.urlsafe_b64encode(pagination._tag(payload) + payload).rstrip(b"=").decode()


def test_altered_cursors_are_refused(shared_client: TestClient):
    client = shared_client
    path = "/v1/coins/BTC/transactions"
    cursor = _cursor(client, path)
    assert client.get(path, params={"cursor": cursor}).status_code == 200
    for position in (0, len(cursor) // 2, len(cursor) - 2):
        flipped = cursor[:position] + ("A" if cursor[position] != "A" else "B") + cursor[position + 1 :]
        assert _problem(client, path, cursor=flipped)["type"] == "/problems/invalid-cursor"
    for garbage in ("x", "AAAA", "not-a-cursor", "_" * 40, cursor[:-5]):
        _problem(client, path, cursor=garbage)
    bad_shape = _problem(client, path, cursor="!!!")  # not base64url at all: the parameter's pattern
    assert bad_shape["type"] == "/problems/invalid-parameter"


def test_cursors_belong_to_one_listing_and_its_filters(shared_client: TestClient):
    client = shared_client
    cursor = _cursor(client, "/v1/coins/BTC/transactions")
    _problem(client, "/v1/coins/ETH/transactions", cursor=cursor)
    _problem(client, "/v1/coins/BTC/blocks", cursor=cursor)
    runs = _cursor(client, "/v1/runs", status="success")
    _problem(client, "/v1/runs", cursor=runs, status="failed")
    assert client.get("/v1/runs", params={"cursor": runs, "status": "success", "limit": 3}).status_code == 200
    start = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    points = _cursor(client, "/v1/coins/bitcoin/prices/points", granularity="5m", start=start)
    _problem(
        client, "/v1/coins/bitcoin/prices/points", cursor=points, granularity="5m", start=start, quote="eur"
    )
    _problem(client, "/v1/coins/bitcoin/prices/points", cursor=points, granularity="5m")


def test_forged_cursors_with_values_out_of_range_are_refused(shared_client: TestClient):
    client = shared_client
    """The tag is not a secret: a client can forge a well-tagged cursor, so its values are checked too."""
    path = "/v1/coins/BTC/transactions"
    real = json.loads(base64.urlsafe_b64decode(_cursor(client, path) + "==")[12:])
    assert client.get(path, params={"cursor": _forge(real)}).status_code == 200
    for change in (
        {"v": 2},
        {"k": [2**64, "ab"]},
        {"k": [-1, "ab"]},
        {"k": ["800000", "ab"]},
        {"k": [800000]},
        {"k": [800000, "a" * 500]},
        {"k": [True, "ab"]},
        {"p": 2**63},
        {"p": None},
        {"r": "blocks"},
    ):
        _problem(client, path, cursor=_forge({**real, **change}))
    _problem(client, path, cursor=_forge([1, 2]))  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", ""])
def test_limits_out_of_range(shared_client: TestClient, limit: str):
    response = shared_client.get("/v1/runs", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["errors"][0]["name"] == "limit"


def test_limit_bounds_are_accepted(shared_client: TestClient):
    client = shared_client
    for limit in (1, 1000):
        body = client.get("/v1/coins/BTC/transactions", params={"limit": limit}).json()
        assert body["limit"] == limit
        assert len(body["data"]) <= limit
    assert client.get("/v1/coins/BTC/transactions").json()["limit"] == pagination.DEFAULT_LIMIT
