"""The Airflow DAG parses, has one task per source and data type, and its tasks run the ingestors.

Runs in its own job (`.ci/run` installs apache-airflow into a separate virtualenv); skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("airflow")

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

import pipeline  # noqa: E402

DAG_FILE = Path(pipeline.__file__).parent / "runtime" / "airflow_dag.py"


@pytest.fixture
def dagbag(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/pipeline.db")
    return DagBag(dag_folder=str(DAG_FILE))


def test_dag_file_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_task_per_source_and_data_type(dagbag):
    dag = dagbag.dags["crypto_pipeline"]
    assert {t.task_id for t in dag.tasks} == {
        "blockchair_blocks",
        "blockchair_transactions",
        "blockchair_addresses",
        "coingecko_latest_prices",
        "coingecko_daily_prices",
    }
    assert all(t.retries == 2 for t in dag.tasks)
    assert dag.catchup is False


def test_a_task_runs_the_ingestor_and_raises_when_a_unit_fails(dagbag, monkeypatch, tmp_path):
    from pipeline.config import get_settings
    from pipeline.database import DatabaseService
    from pipeline.simulator import FaultRule, Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        monkeypatch.setenv("BLOCKCHAIR_BASE_URL", sim.blockchair_url)
        monkeypatch.setenv("BLOCKS_INITIAL_DEPTH", "20")
        monkeypatch.setenv("COINS", "bitcoin")
        monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "1")
        get_settings.cache_clear()
        DatabaseService(settings=get_settings()).create_tables()
        run_job = dagbag.dags["crypto_pipeline"].get_task("blockchair_blocks").python_callable
        assert [r["status"] for r in run_job("blocks")] == ["success"]
        sim.add_fault(FaultRule("500", endpoint="blocks", times=None))
        with pytest.raises(RuntimeError, match="RetriableSourceError"):
            run_job("blocks")
    get_settings.cache_clear()
