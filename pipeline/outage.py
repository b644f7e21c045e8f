"""Riding out a database outage in a long-lived process: one log line when it starts, one when it ends.

The scheduler's main loop and its heartbeat thread share one `Outage`, so a 30-second outage logs two
lines in all rather than one per attempt, per thread and per job. Waits grow exponentially (with jitter,
so several workers do not reconnect in lockstep) up to a ceiling, and restart from the floor once the
database answers again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from pipeline.errors import DatabaseUnavailable
from pipeline.ranges import utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Outage:
    """The state of the database as this process sees it: up, or down since a moment, with a backoff."""

    def __init__(self, *, floor: float = 0.5, ceiling: float = 30.0) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self._lock = threading.Lock()
        self.since: datetime | None = None
        self._started = 0.0
        self._attempts = 0
        self.outages = 0  # how many outages this process has ridden out (for tests and the report)

    @property
    def down(self) -> bool:
        """Whether the last database touch failed."""
        return self.since is not None

    def failed(self, error: DatabaseUnavailable) -> float:
        """Note a failed touch; returns how long to wait before the next one."""
        with self._lock:
            if self.since is None:
                self.since, self._started, self._attempts = utcnow(), time.monotonic(), 0
                self.outages += 1
                logger.warning("%s; waiting for it to return (logged once per outage)", error)
            self._attempts += 1
            wait = min(self.ceiling, self.floor * 2.0 ** (self._attempts - 1))
        return wait * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not cryptography

    def recovered(self) -> None:
        """Note a successful touch; logs the end of an outage once."""
        if self.since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self.since is not None:
                logger.warning(
                    "database is back after %.1f s (down since %s)",
                    time.monotonic() - self._started,
                    self.since.isoformat(timespec="seconds"),
                )
                self.since = None

    def call(self, action: Callable[[], T], *, should_stop: Callable[[], bool]) -> T:
        """Run `action` until it gets through the database, waiting out an outage with backoff.

        Gives up, re-raising the last DatabaseUnavailable, only when `should_stop()` says the process is
        stopping (then the next worker's abandoned-run recovery takes over).
        """
        while True:
            try:
                result = action()
            except DatabaseUnavailable as exc:
                if wait_unless(should_stop, self.failed(exc)):
                    raise
            else:
                self.recovered()
                return result


def wait_unless(should_stop: Callable[[], bool], seconds: float) -> bool:
    """Sleep up to `seconds`, waking early (True) when the process is stopping."""
    deadline = time.monotonic() + seconds
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.2))
    return True


# The process's view of the database, shared by the scheduler's loops and the run log's closing of units.
PROCESS_OUTAGE = Outage()
