"""Reliability report: the fault matrix, printed as the tables of the README.

    python benchmarks/reliability_report.py [--postgres subset|all|none] [--postgres-url URL]
                                            [--outages N] [--no-matrix]

Runs every fault the simulator can inject against every ingestion unit (prices by range, prices by date,
blocks, transactions, addresses), each cell in a fresh database: on SQLite all cells, on PostgreSQL the
subset the test suite runs (or all, or none). For each cell it prints the run's status and error class,
retries, rejected records, the rows the slice holds at the source (expected), the rows stored after the
faulted run, the rows still missing after a rerun (lost, must be 0) and duplicated rows (must be 0); then
the run statuses and error classes over all cells, and every violated expectation (a known bug is named).

With `--outages N` it also runs the database-outage scenario of `benchmarks/harness/outages.py` on both
dialects: N outages during a multi-batch backfill with reruns queued (PostgreSQL: connections refused and
sessions terminated for 1-30 s; SQLite: another process holding the write lock for 1-60 s), and prints
whether the scheduler ever exited, rows lost or duplicated against an uninterrupted run, runs left
`running`, and the log lines written.

The cells are the ones `tests/reliability/test_fault_matrix.py` asserts on: both import
`benchmarks/harness/matrix.py`, so the report and the tests cannot drift. The crash-recovery and
concurrency results are reported by `pytest tests/reliability -m slow` (a summary at the end of the run).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks.harness` and `pipeline` from a checkout

from benchmarks.harness.matrix import (  # noqa: E402
    FAULTS,
    HTTP_MAX_ATTEMPTS,
    HTTP_TIMEOUT_SECONDS,
    PG_SUBSET,
    RETRY_AFTER,
    TIMEOUT_DELAY,
    UNITS,
    Cell,
    format_matrix,
    run_matrix,
    simulator,
    summary,
    verdict,
)
from benchmarks.harness.outages import outage_simulator, run_scenario  # noqa: E402
from benchmarks.harness.postgres import PG_URL, postgres_schema, postgres_unavailable  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", choices=["subset", "all", "none"], default="subset")
    parser.add_argument(
        "--postgres-url", default=PG_URL, help="default: TEST_POSTGRES_URL or the local server"
    )
    parser.add_argument("--outages", type=int, default=0, help="database outages per dialect (0: skip)")
    parser.add_argument("--no-matrix", action="store_true", help="skip the fault matrix")
    parser.add_argument("--seed", type=int, default=20261201, help="outage timing seed")
    args = parser.parse_args()
    logging.getLogger().addHandler(logging.NullHandler())  # the runs' own error lines would drown the table

    failed = 0 if args.no_matrix else _matrix(args)
    if args.outages:
        failed |= _outages(args)
    return failed


def _outages(args: argparse.Namespace) -> int:
    """The outage scenario on SQLite and PostgreSQL; 1 if any claim does not hold."""
    rng = random.Random(args.seed)
    failed = 0
    for dialect, longest in (("sqlite", 60.0), ("postgresql", 30.0)):
        durations = [round(rng.uniform(1.0, longest), 1) for _ in range(args.outages)]
        with tempfile.TemporaryDirectory() as tmp, outage_simulator() as sim:
            if dialect == "sqlite":
                url_context: contextlib.AbstractContextManager[str] = contextlib.nullcontext(
                    f"sqlite:///{tmp}/outages.db"
                )
            else:
                if postgres_unavailable():
                    print(f"PostgreSQL skipped: {postgres_unavailable()}", file=sys.stderr)
                    continue
                url_context = postgres_schema(args.postgres_url, prefix="r")
            with url_context as url:
                report = run_scenario(
                    database_url=url,
                    sim=sim,
                    tmp_path=Path(tmp),
                    durations=durations,
                    seed=args.seed,
                    depth=6000,  # 180 pages, so that the backfill spans the outages
                    days=365,
                    sim_delay=2.0,
                    finish_timeout=900,
                )
        print(f"database outages, {report.line()}", flush=True)
        holds = (
            report.scheduler_exits == 0
            and report.equal_to_reference
            and report.runs_left_running == 0
            and report.open_requests == 0
            and report.tracebacks == 0
        )
        failed |= not holds
    return failed


def _matrix(args: argparse.Namespace) -> int:
    """The fault matrix; 1 if a cell violates an expectation no known bug explains."""
    started = time.monotonic()
    print(
        f"fault matrix: {len(FAULTS)} faults x {len(UNITS)} units; client timeout {HTTP_TIMEOUT_SECONDS} s "
        f"(server delay {TIMEOUT_DELAY} s), {HTTP_MAX_ATTEMPTS} attempts, Retry-After {RETRY_AFTER} s; "
        "'once' = the fault fires once (the client retries), 'always' = on every request from the mid-run "
        "request on; a non-success run is rerun with the faults cleared",
        flush=True,
    )
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as tmp, simulator() as sim:

        @contextlib.contextmanager
        def sqlite_url() -> Iterator[str]:
            yield f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"

        cells += run_matrix(sim, sqlite_url, "sqlite", progress=_dot)
        if args.postgres != "none":
            reason = postgres_unavailable() if args.postgres_url == PG_URL else None
            if reason:
                print(f"\nPostgreSQL skipped: {reason}", file=sys.stderr)
            else:
                wanted = PG_SUBSET if args.postgres == "subset" else None
                cells += run_matrix(
                    sim,
                    lambda: postgres_schema(args.postgres_url, prefix="r"),
                    "postgresql",
                    cells=wanted,
                    progress=_dot,
                )
    print(file=sys.stderr)
    print()
    print(format_matrix(cells))
    print()
    print("run statuses and error classes over all cells:")
    print(summary(cells))
    print(f"\n{len(cells)} cells in {time.monotonic() - started:.0f} s")
    unexplained = [c for c in cells if verdict(c)[1]]
    return 1 if unexplained else 0


def _dot(cell: Cell) -> None:
    known, unknown = verdict(cell)
    print("F" if unknown else "b" if known else ".", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
