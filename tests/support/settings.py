"""Settings for tests that run the pipeline in-process (a scheduler subprocess takes
`benchmarks.harness.processes.scheduler_settings` as its environment instead)."""

from __future__ import annotations

from pipeline.config import Settings, load_settings


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Test settings: no .env file, the given database, no client-side rate limit unless asked."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 100_000,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 100_000,
        "HTTP_TIMEOUT_SECONDS": 5,
        "HTTP_MAX_TOTAL_WAIT_SECONDS": 10,
        "HTTP_BACKOFF_BASE_SECONDS": 0.05,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def simulator_settings(database_url: str, sim: object, **overrides: object) -> Settings:
    """Test settings with both APIs pointed at a simulator."""
    return make_settings(
        database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,  # type: ignore[attr-defined]
        COINGECKO_BASE_URL=sim.coingecko_url,  # type: ignore[attr-defined]
        **overrides,
    )
