"""The "database unreachable" banner: shown instead of a traceback, and gone by itself when it returns.

The service layer raises `DatabaseUnavailable` for a refused or terminated connection and a locked SQLite
file. The router probes the database before a page runs and catches the error while it runs; either way the
page is replaced by the banner, whose fragment probes again every RETRY_SECONDS and reruns the whole app
once the database answers. When the outage began is kept per process and database (not per session), so a
reload or a second browser tab tells the same "since".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec

import streamlit as st

from dashboard import components as ui
from dashboard import data
from pipeline.errors import DatabaseUnavailable

RETRY_SECONDS = 5
# Set by the router while it runs a page: a guarded fragment then lets the error reach the router (one
# banner, at the top); in a fragment's own rerun it reruns the app, which then shows the banner.
PAGE_RUNNING = "_outage_page_running"
# The failure was just seen: the banner's first run shows it without probing again. Probing at once could
# succeed (a lock released, one table still busy) and rerun the page straight into the same failure.
JUST_FAILED = "_outage_just_failed"

P = ParamSpec("P")


@dataclass
class Outage:
    """One stretch of time the database did not answer."""

    since: datetime
    reason: str
    checked: datetime


@st.cache_resource(show_spinner=False)
def _outages() -> dict[str, Outage]:
    """Database URL -> its current outage, shared by every session of this process."""
    return {}


def _key() -> str:
    return data.settings().DATABASE_URL


def current() -> Outage | None:
    """The outage noted for the configured database, if any (nothing is probed)."""
    return _outages().get(_key())


def note(reason: str) -> Outage:
    """Record that the database failed now (keeping the first failure's time) and why."""
    now = datetime.now(UTC)
    outage = _outages().setdefault(_key(), Outage(since=now, reason=reason, checked=now))
    outage.reason, outage.checked = reason, now
    data.health.clear()  # a cached "ok" must not show the page again before the probe says so
    return outage


def check() -> Outage | None:
    """Probe the database now: the outage (noted) while it fails, None (and forgotten) once it answers."""
    problem = data.database_problem()
    if problem is not None:
        return note(problem)
    if _outages().pop(_key(), None) is not None:
        st.cache_data.clear()  # reads cached during the outage (health, empty answers) are stale
    return None


def banner(outage: Outage) -> None:
    """What the user sees instead of the page: since when, why, and that it retries by itself."""
    st.error(
        f"**Database unreachable** since {outage.since:%Y-%m-%d %H:%M:%S} UTC "
        f"({ui.age(outage.since)}: {ui.literal(outage.reason)}) — retrying every {RETRY_SECONDS} s. "
        "The page comes back by itself when the database answers again; meanwhile check that it is "
        "running and that DATABASE_URL points at it.",
        icon=":material/database_off:",
    )
    st.caption(f"Last try {outage.checked:%H:%M:%S} UTC.")


def show(outage: Outage) -> None:
    """The banner for an outage just noted, then probing every RETRY_SECONDS (see `watch`)."""
    st.session_state[JUST_FAILED] = outage
    watch()


@st.fragment(run_every=RETRY_SECONDS)
def watch() -> None:
    """The banner, probing every RETRY_SECONDS; the whole app reruns as soon as the database answers."""
    outage = st.session_state.pop(JUST_FAILED, None) or check()
    if outage is None:
        st.rerun(scope="app")
    banner(outage)


def guarded(render: Callable[P, None]) -> Callable[P, None]:
    """For the body of a `run_every` fragment: its own reruns happen outside the router, so an outage
    there is noted and the whole app reruns, which then shows the banner instead of the stale page
    (never a traceback)."""

    @functools.wraps(render)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            render(*args, **kwargs)
        except DatabaseUnavailable as exc:
            if st.session_state.get(PAGE_RUNNING):
                raise  # the router shows one banner for the whole page
            note(data.redact(str(exc)) or "")
            st.rerun(scope="app")

    return wrapper
