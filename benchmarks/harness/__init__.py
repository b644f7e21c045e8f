"""Driving the product from outside, shared by the benchmarks and the tests.

- `processes`: start the scheduler or the CLI as a child process with chosen settings, stop it, poll.
- `backfill`: the multi-chain backfill the crash and outage scenarios run, and the row-for-row comparison
  with an uninterrupted run.
- `matrix`: the fault matrix (every simulator fault x every ingestion unit) and what each cell must show.
- `outages`: the database-outage scenario (PostgreSQL cut by a proxy, SQLite locked by another process).

These modules import `pipeline` (the simulator and its fault tools included) and never `tests`, so the
benchmarks run without the test suite; `tests/reliability` asserts on the same scenarios.
"""
