"""An Airflow 3 DAG for teams that already run Airflow: one task per source and data type.

Put this module in the DAGs folder (or point `AIRFLOW__CORE__DAGS_FOLDER` at `pipeline/`). The tasks call
the same ingestors as the scheduler; retries are Airflow's (a task raises when a unit failed), and the
schedule comes from BLOCKS_INTERVAL_MINUTES. Install with `pip install 'crypto-pipeline[airflow]'`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

import pendulum
from airflow.sdk import dag, task

from pipeline.config import get_settings

if TYPE_CHECKING:
    from airflow.sdk import DAG

# Task id -> the scheduler job it runs (one per source and data type).
TASKS = {
    "blockchair_blocks": "blocks",
    "blockchair_transactions": "transactions",
    "blockchair_addresses": "addresses",
    "coingecko_latest_prices": "latest_prices",
    "coingecko_daily_prices": "daily_prices",
}


class RunSummary(TypedDict):
    """One unit's outcome as the task returns it (Airflow keeps it as the task's XCom value)."""

    run_id: int
    coin: str | None
    status: str


def run_job(job_name: str) -> list[RunSummary]:
    """Run one scheduler job for every active coin; raise if any unit failed, so Airflow retries."""
    # Imported here so that parsing the DAG file stays cheap (no database, no HTTP client).
    from pipeline.database import DatabaseService
    from pipeline.runtime.scheduler import Scheduler

    settings = get_settings()
    scheduler = Scheduler(settings, DatabaseService(settings=settings), worker_id="airflow")
    job = {job.name: job for job in scheduler.jobs}[job_name]
    results = [r for r in job.run_all_coins() if r is not None]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        msg = "; ".join(f"run {r.id} {r.coin}: {r.error_class}: {r.error_message}" for r in failed)
        raise RuntimeError(msg)
    return [{"run_id": r.id, "coin": r.coin, "status": r.status.value} for r in results]


def _build_dag() -> DAG:
    settings = get_settings()

    @dag(
        dag_id="crypto_pipeline",
        schedule=timedelta(minutes=settings.BLOCKS_INTERVAL_MINUTES),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
        tags=["crypto-pipeline"],
    )
    def crypto_pipeline() -> None:
        for task_id, job_name in TASKS.items():
            task(task_id=task_id)(run_job)(job_name)

    return crypto_pipeline()


crypto_pipeline_dag = _build_dag()
