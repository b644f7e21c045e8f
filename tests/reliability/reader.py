"""A dashboard-like reader process: `python -m tests.reliability.reader DATABASE_URL SECONDS [BUSY_MS]`.

Loops over the service-layer reads the dashboard makes, for SECONDS, and prints one JSON line: the number of
reads, their latencies (max, p99, mean, in ms) per call, and every error (message and count).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import timedelta

from pipeline.database import DatabaseService
from tests.support.settings import make_settings


def _calls(db: DatabaseService) -> dict[str, object]:
    return {
        "get_blocks": lambda: db.get_blocks(limit=100),
        "get_transactions": lambda: db.get_transactions(limit=100),
        "get_market_prices": lambda: db.get_market_prices(limit=1000),
        "get_addresses": db.get_addresses,
        "get_ingestion_logs": lambda: db.get_ingestion_logs(limit=100),
        "get_workers": lambda: db.get_workers(since=timedelta(days=1)),
        "get_database_stats": db.get_database_stats,
        "get_coins": db.get_coins,
        "health_check": db.health_check,
    }


def read_for(url: str, seconds: float, busy_ms: int) -> dict[str, object]:
    """Read in a loop for `seconds`; return latencies and errors."""
    db = DatabaseService(settings=make_settings(url, SQLITE_BUSY_TIMEOUT_MS=busy_ms))
    calls = _calls(db)
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, call in calls.items():
            started = time.perf_counter()
            try:
                call()  # type: ignore[operator]
            except Exception as exc:  # noqa: BLE001 - every error is what we are counting
                errors[f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"] += 1
            latencies[name].append((time.perf_counter() - started) * 1000)
    db.dispose()
    every = sorted(ms for values in latencies.values() for ms in values)
    return {
        "reads": len(every),
        "max_ms": round(every[-1], 1) if every else None,
        "p99_ms": round(every[int(len(every) * 0.99) - 1], 1) if every else None,
        "mean_ms": round(sum(every) / len(every), 2) if every else None,
        "slowest_call": max(latencies, key=lambda n: max(latencies[n], default=0)),
        "errors": dict(errors),
    }


if __name__ == "__main__":
    busy = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    print(json.dumps(read_for(sys.argv[1], float(sys.argv[2]), busy)), flush=True)
