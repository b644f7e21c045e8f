"""Reads on a real PostgreSQL streaming replica, writes on its primary (DATABASE_READ_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from pipeline.database import DatabaseService
from tests.support import replica
from tests.support.settings import make_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(replica.available() is not None, reason=str(replica.available())),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[replica.ReplicaPair]:
    with replica.replica_pair() as made:
        primary = DatabaseService(settings=make_settings(made.primary_url))
        primary.create_tables()
        primary.dispose()
        made.wait_for_replay()
        yield made


def test_the_replica_serves_what_the_primary_stored_and_refuses_writes(pair):
    primary = DatabaseService(settings=make_settings(pair.primary_url))
    reader = DatabaseService(settings=make_settings(pair.replica_url))
    try:
        primary.insert_market_prices(
            [{"coin_id": "bitcoin", "price_date": date(2026, 11, 30), "price_usd": Decimal("91234.5678")}]
        )
        pair.wait_for_replay()
        assert [p.price_usd for p in reader.get_market_prices(coin_id="bitcoin")] == [Decimal("91234.5678")]
        assert reader.replica_lag_seconds() == 0.0
        assert primary.replica_lag_seconds() is None
        with pytest.raises(Exception, match="read-only transaction"):
            reader.insert_market_prices(
                [{"coin_id": "bitcoin", "price_date": date(2026, 11, 29), "price_usd": Decimal("1")}]
            )
    finally:
        primary.dispose()
        reader.dispose()
