"""HTTP caching: ETag and Last-Modified from the document (`data_as_of`), 304 for a current copy."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from fastapi.testclient import TestClient

from pipeline.database import DatabaseService
from tests.api.seed import Seeded
from tests.support.factories import finished_run

PATHS = ("/v1/coins", "/v1/runs", "/v1/coins/BTC/transactions", "/v1/coins/ETH/blocks/20000003", "/v1/stats")


def test_validators_come_with_every_document(shared_client: TestClient):
    for path in PATHS:
        response = shared_client.get(path)
        assert response.status_code == 200
        etag, modified = response.headers["etag"], response.headers["last-modified"]
        assert etag.startswith('"')
        assert etag.endswith('"')
        as_of = datetime.fromisoformat(response.json()["data_as_of"])
        assert parsedate_to_datetime(modified) == as_of.replace(microsecond=0)


def test_if_none_match_gives_304(shared_client: TestClient):
    for path in PATHS:
        first = shared_client.get(path)
        etag = first.headers["etag"]
        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = shared_client.get(path, headers={"If-None-Match": header})
            assert again.status_code == 304, (path, header)
            assert again.content == b""
            assert again.headers["etag"] == etag
            assert again.headers["last-modified"] == first.headers["last-modified"]
        assert shared_client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_if_modified_since_alone_never_gives_304(shared_client: TestClient):
    # A date cannot say that a heartbeat went stale or an incident was silenced: only the ETag (a digest
    # of the body) answers 304.
    for path in PATHS:
        modified = shared_client.get(path).headers["last-modified"]
        later = format_datetime(parsedate_to_datetime(modified) + timedelta(days=1), usegmt=True)
        for since in (modified, later, "yesterday", ""):
            assert shared_client.get(path, headers={"If-Modified-Since": since}).status_code == 200
        both = {"If-None-Match": '"other"', "If-Modified-Since": later}
        assert shared_client.get(path, headers=both).status_code == 200


def test_an_empty_page_has_no_last_modified(shared_client: TestClient):
    response = shared_client.get("/v1/runs", params={"since": "2199-01-01T00:00:00Z"})
    assert response.json()["data_as_of"] is None
    assert "last-modified" not in response.headers
    assert response.headers["etag"]


def test_a_change_changes_the_validators(client: TestClient, db: DatabaseService, seeded: Seeded):
    before = client.get("/v1/runs")
    etag, modified = before.headers["etag"], before.headers["last-modified"]
    time.sleep(1.05)  # Last-Modified has whole seconds
    finished_run(db, "failed")
    after = client.get("/v1/runs", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert client.get("/v1/runs", headers={"If-Modified-Since": modified}).status_code == 200
    assert parsedate_to_datetime(after.headers["last-modified"]) > parsedate_to_datetime(modified)
