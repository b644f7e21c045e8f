"""What bounds every request of one ingestion unit: the unit's time budget and the process's stop flag.

A unit of ingestion opens :func:`unit_limits`; every request made inside it (in that thread) is cut at
the end of the budget with UnitTimeout, or abandoned with Interrupted once the stop flag turns true.
The limits live in a context variable, not on a client, because one client may serve units of several
threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from pipeline.errors import UnitTimeout

__all__ = ["UnitLimits", "current_unit", "never", "unit_limits"]


def never() -> bool:
    """The default stop flag: never asked to stop."""
    return False


@dataclass(frozen=True)
class UnitLimits:
    """What bounds every request of one ingestion unit: when its time budget ends, and the stop flag."""

    ends_at: float  # time.monotonic() at which the unit's budget is spent
    budget_seconds: float
    should_stop: Callable[[], bool] = never

    def remaining(self) -> float:
        """Seconds left of the budget (negative once spent)."""
        return self.ends_at - time.monotonic()

    def spent(self) -> bool:
        """True once the budget is used up."""
        return self.remaining() <= 0

    def timeout_error(self) -> UnitTimeout:
        """The error a unit ends with when its budget is spent."""
        return UnitTimeout(
            f"unit time budget of {self.budget_seconds:g} s spent (UNIT_TIME_BUDGET_SECONDS); "
            "rerun the slice to finish it"
        )


# A context variable, not an attribute of the client: one client may serve units of several threads.
_UNIT: ContextVar[UnitLimits | None] = ContextVar("pipeline_http_unit", default=None)


@contextmanager
def unit_limits(budget_seconds: float, should_stop: Callable[[], bool] = never) -> Iterator[UnitLimits]:
    """Bound every request made inside the block (in this thread) by a time budget and a stop flag.

    A request that would run past the end of the budget is cut there with UnitTimeout; one under way
    when `should_stop()` turns true is abandoned with Interrupted.
    """
    limits = UnitLimits(time.monotonic() + budget_seconds, budget_seconds, should_stop)
    token = _UNIT.set(limits)
    try:
        yield limits
    finally:
        _UNIT.reset(token)


def current_unit() -> UnitLimits | None:
    """The limits of the unit running in this thread, if any."""
    return _UNIT.get()
