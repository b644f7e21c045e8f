"""A database holds data of one world: the first ingestion stamps it "simulated" or "real", and a process
set for the other world is refused before it sends a request or records a run."""

from __future__ import annotations

import pytest

from pipeline.errors import WorldMismatch
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.runtime.cli import main
from pipeline.simulator import Simulator, SimulatorConfig
from tests.support.settings import simulator_settings


@pytest.fixture
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


def test_the_first_ingestion_stamps_the_world_and_the_other_world_is_refused(db, database_url, sim):
    assert db.data_world() is None
    simulated = simulator_settings(database_url, sim, SIMULATED_DATA=True, BLOCKS_INITIAL_DEPTH=10)
    demo = BlockchairIngestor(settings=simulated, db=db)
    assert demo.ingest_blocks(demo.coin("bitcoin")).status == "success"
    assert db.data_world() == "simulated"

    real = BlockchairIngestor(settings=simulator_settings(database_url, sim, BLOCKS_INITIAL_DEPTH=10), db=db)
    runs_before = len(db.get_ingestion_logs(limit=None))
    requests_before = sim.request_counts()
    with pytest.raises(WorldMismatch, match="local simulator.*real APIs"):
        real.ingest_blocks(real.coin("bitcoin"))
    assert len(db.get_ingestion_logs(limit=None)) == runs_before
    assert sim.request_counts() == requests_before


def test_the_command_line_says_why_and_exits_11(tmp_path, sim, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/world.db"
    for key, value in {
        "DATABASE_URL": url,
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "BLOCKS_INITIAL_DEPTH": "5",
        "SIMULATED_DATA": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    command = ["ingest", "blockchair", "--coins", "bitcoin", "--data-types", "blocks"]
    assert main(command) == 0
    monkeypatch.setenv("SIMULATED_DATA", "false")
    assert main(command) == 11
    assert "holds data from the local simulator" in capsys.readouterr().err
