"""Tests for pipeline.http.limits: one unit's time budget and stop flag, per thread.

How a request is cut by them is tested with real sockets in test_client.py.
"""

from __future__ import annotations

import threading

from pipeline.errors import UnitTimeout
from pipeline.http.limits import current_unit, never, unit_limits


def test_a_unit_knows_its_budget_and_its_stop_flag() -> None:
    assert current_unit() is None
    stop = threading.Event()
    with unit_limits(30.0, stop.is_set) as unit:
        assert current_unit() is unit
        assert 29.0 < unit.remaining() <= 30.0
        assert not unit.spent()
        assert not unit.should_stop()
        stop.set()
        assert unit.should_stop()
    assert current_unit() is None


def test_a_spent_budget_ends_the_unit_with_unit_timeout() -> None:
    with unit_limits(0.0) as unit:
        assert unit.spent()
        error = unit.timeout_error()
    assert isinstance(error, UnitTimeout)
    assert "UNIT_TIME_BUDGET_SECONDS" in str(error)
    assert unit.should_stop is never


def test_units_nest_and_stay_in_their_thread() -> None:
    seen_elsewhere: list[object] = []
    with unit_limits(10.0) as outer:
        with unit_limits(1.0) as inner:
            assert current_unit() is inner
            worker = threading.Thread(target=lambda: seen_elsewhere.append(current_unit()))
            worker.start()
            worker.join()
        assert current_unit() is outer
    assert seen_elsewhere == [None]
