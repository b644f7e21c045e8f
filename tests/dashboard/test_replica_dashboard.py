"""The dashboard on a read replica (DATABASE_READ_URL): pages read the replica, a rerun clicked there is
written to the primary and completes."""

from __future__ import annotations

import psycopg
import pytest

from dashboard import data
from pipeline.database import DatabaseService
from pipeline.services import incidents
from pipeline.simulator import Simulator, SimulatorConfig
from tests.dashboard.helpers import open_page
from tests.dashboard.seed import populate
from tests.dashboard.test_app import button, texts
from tests.support.factories import finished_run
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow


def _replay(pair, paused: bool) -> None:
    with psycopg.connect(pair.replica_url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


def test_pages_read_the_replica_and_a_rerun_clicked_there_completes_on_the_primary(
    replica_pair, use_database
):
    primary = DatabaseService(settings=make_settings(replica_pair.primary_url))
    seeded = populate(primary, with_worker=False)
    failed = seeded.runs["failed"]
    replica_pair.wait_for_replay()
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        use_database(
            replica_pair.primary_url,
            DATABASE_READ_URL=replica_pair.replica_url,
            COINGECKO_BASE_URL=sim.coingecko_url,
            BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        )
        # Replay paused: a run written to the primary now is not on the replica, so the pages, which
        # read the replica, cannot see it; once replay resumes, they do.
        _replay(replica_pair, paused=True)
        try:
            hidden = finished_run(primary, "failed")
            assert data.run(hidden) is None
            at = open_page("runs")
            assert not at.exception
            sidebar = " ".join(str(getattr(e, "proto", e)) for e in at.sidebar)
            assert "Replica · lag" in sidebar
            assert replica_pair.replica_url.split("@")[-1] not in sidebar  # no address shown
        finally:
            _replay(replica_pair, paused=False)
        replica_pair.wait_for_replay()
        data.run.clear()
        assert data.run(hidden) is not None

        at = open_page("runs", query={"run": str(failed)})
        button(at, "Rerun run #").click().run()
        assert not at.exception
        request = primary.latest_request_for(failed)
        assert request is not None  # the write went to the primary (the replica refuses writes)
        button(at, "Run here: run #").click().run()
        assert not at.exception
    request = primary.latest_request_for(failed)
    assert request.status == "done", request
    child = primary.get_run(request.result_run_id)
    assert (child.parent_run_id, child.status.value) == (failed, "success")
    replica_pair.wait_for_replay()
    at = open_page("runs", query={"run": str(failed)})
    assert any(f"Rerun request #{request.id}: done" in m for m in texts(at, "markdown"))
    primary.dispose()


def test_the_page_after_a_write_reads_it_back_even_before_the_replica_has_it(replica_pair, use_database):
    primary = DatabaseService(settings=make_settings(replica_pair.primary_url))
    finished_run(primary, "failed", data_type="addresses")
    incidents.evaluate(primary, primary.settings, kinds=["unit"])
    incident = primary.get_incidents(open_only=True)[0]
    replica_pair.wait_for_replay()
    use_database(replica_pair.primary_url, DATABASE_READ_URL=replica_pair.replica_url)
    _replay(replica_pair, paused=True)
    try:
        assert data.incident(incident.id).acknowledged_by is None  # from the replica
        data.acknowledge_incident(incident.id, by="alice")
        # The replica has not replayed the acknowledgement, yet the page drawn next shows it.
        assert data.incident(incident.id).acknowledged_by == "alice"
        assert data.reader() is data.service()
    finally:
        _replay(replica_pair, paused=False)
    primary.dispose()
