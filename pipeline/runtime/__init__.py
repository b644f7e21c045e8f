"""Long-lived processes and entry points: the CLI, the scheduler, the launcher, the Airflow DAG."""
