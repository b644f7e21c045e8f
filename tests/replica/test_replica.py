"""Reads on a real PostgreSQL streaming replica, writes on its primary (DATABASE_READ_URL)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pipeline.database import DatabaseService
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow


def test_the_replica_serves_what_the_primary_stored_and_refuses_writes(replica_pair):
    primary = DatabaseService(settings=make_settings(replica_pair.primary_url))
    reader = DatabaseService(settings=make_settings(replica_pair.replica_url))
    try:
        primary.insert_market_prices(
            [
                {
                    "coin_id": "replica-probe",
                    "price_date": date(2026, 11, 30),
                    "price_usd": Decimal("91234.5678"),
                }
            ]
        )
        replica_pair.wait_for_replay()
        assert [p.price_usd for p in reader.get_market_prices(coin_id="replica-probe")] == [
            Decimal("91234.5678")
        ]
        assert reader.replica_lag_seconds() == 0.0
        assert primary.replica_lag_seconds() is None
        with pytest.raises(Exception, match="read-only transaction"):
            reader.insert_market_prices(
                [{"coin_id": "replica-probe", "price_date": date(2026, 11, 29), "price_usd": Decimal("1")}]
            )
    finally:
        primary.dispose()
        reader.dispose()


def test_the_api_reads_the_replica_when_one_is_configured(replica_pair, monkeypatch, capsys, tmp_path):
    from fastapi.testclient import TestClient

    import pipeline.api.server as server
    from pipeline.api.app import create_app
    from pipeline.config import get_settings
    from tests.support.cli import in_process_cli

    served: list[DatabaseService] = []
    monkeypatch.setattr(server, "serve", lambda settings, db, **_kw: served.append(db))
    cli = in_process_cli(monkeypatch, capsys, tmp_path)
    try:
        done = cli("api", DATABASE_URL=replica_pair.primary_url, DATABASE_READ_URL=replica_pair.replica_url)
    finally:
        get_settings.cache_clear()
    assert done.code == 0, done
    assert [db.database_url for db in served] == [replica_pair.replica_url]
    settings = make_settings(replica_pair.primary_url, DATABASE_READ_URL=replica_pair.replica_url)
    with TestClient(create_app(settings, served[0])) as client:
        coins = client.get("/v1/coins")
    assert coins.status_code == 200
    assert {"BTC", "ETH", "DOGE"} <= {c["symbol"] for c in coins.json()["data"]}
    served[0].dispose()
