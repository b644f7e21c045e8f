"""Fault matrix: every simulator fault x every ingestion unit, on SQLite (all) and PostgreSQL (a subset).

The cell logic lives in `benchmarks/harness/matrix.py`, shared with `benchmarks/reliability_report.py`.
A cell whose only violations are explained by a known bug is xfail(strict=True); any other violation
fails it normally.
"""

from __future__ import annotations

import pytest

from benchmarks.harness.matrix import (
    FAULTS,
    FAULTS_BY_NAME,
    KNOWN_BUGS,
    PG_SUBSET,
    RECORDED,
    UNITS,
    UNITS_BY_NAME,
    Cell,
    run_cell,
    simulator,
    verdict,
)
from tests.support.reliability import KnownBugError


@pytest.fixture(scope="module")
def sim():
    with simulator() as simulator_:
        yield simulator_


def _cells(pairs: list[tuple[str, str]]) -> list:
    params = []
    for fault, unit in pairs:
        bug = KNOWN_BUGS.get((fault, unit))
        marks = [pytest.mark.xfail(reason=bug.reason, strict=True, raises=KnownBugError)] if bug else []
        params.append(pytest.param(fault, unit, marks=marks, id=f"{fault.replace(' ', '_')}-{unit}"))
    return params


ALL = [(f.name, u.name) for f in FAULTS for u in UNITS]


def _judge(cell: Cell) -> None:
    RECORDED.append(cell)
    known, unknown = verdict(cell)
    assert not unknown, "\n".join(unknown)
    if known:
        raise KnownBugError("\n".join(known))


@pytest.mark.slow  # 90 cells, 1-4 s each (retries, timeouts, Retry-After)
@pytest.mark.parametrize(("fault", "unit"), _cells(ALL))
def test_cell_sqlite(sim, tmp_path, fault, unit):
    url = f"sqlite:///{tmp_path}/cell.db"
    _judge(run_cell(sim, url, FAULTS_BY_NAME[fault], UNITS_BY_NAME[unit], "sqlite"))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(("fault", "unit"), _cells(PG_SUBSET))
def test_cell_postgres(sim, postgres_url, fault, unit):
    _judge(run_cell(sim, postgres_url, FAULTS_BY_NAME[fault], UNITS_BY_NAME[unit], "postgresql"))


def test_matrix_covers_every_fault_the_simulator_can_inject():
    from pipeline.simulator.faults import FAULT_KINDS

    injected = {f.kind for f in FAULTS}
    # "slow" is a delay, not a fault (used by the crash tests); replies that never end or are too big
    # ("trickle", "endless", "huge") are the subject of test_slow_replies.py.
    assert set(FAULT_KINDS) - injected == {"slow", "trickle", "endless", "huge"}
    assert {u.name for u in UNITS} == {"prices_range", "price_by_date", "blocks", "transactions", "addresses"}
    assert set(KNOWN_BUGS) <= set(ALL)
