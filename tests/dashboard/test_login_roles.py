"""AppTest: Streamlit's login (a user in `st.user`, as Streamlit copies the ID token's claims there) and the
three roles on the pages and in `data`'s write guard.

A viewer is offered no write action and is told which role it needs; an operator reruns, and the audit row
names them; `data`'s write functions, called in a viewer's session as a forged request would reach them,
refuse with PermissionError, write nothing and leave a "denied" audit row. The sidebar shows who is signed
in and in which role, or a Log in button. (The login itself, against a real OpenID Connect provider in a
real browser, is tests/dashboard/test_login_browser.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.actors import Actor
from pipeline.database import DatabaseService
from tests.dashboard.helpers import PAGES, new_app, open_page, request_count
from tests.dashboard.seed import Incidents, Seeded, populate, seed_incidents
from tests.support.databases import migrated
from tests.support.settings import make_settings

AUTH = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "c" * 32,
        "client_id": "dashboard",
        "client_secret": "s" * 32,
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
}
VIEWER = {"is_logged_in": True, "email": "anna@example.com", "name": "Anna", "groups": ["readers"]}
OPERATOR = {"is_logged_in": True, "email": "olaf@example.com", "name": "Olaf", "groups": ["oncall"]}
ROLES = {"DASHBOARD_OPERATORS": "group:oncall", "DASHBOARD_ADMINS": "root@example.com"}
WRITE_LABELS = ("Rerun", "Run here", "Fill gaps", "Confirm", "Acknowledge", "Silence", "Unsilence")


@pytest.fixture
def world(tmp_path, use_database) -> Iterator[tuple[DatabaseService, Seeded, Incidents]]:  # noqa: ANN001
    """Runs (a failed one), prices with a gap and an open incident; the role lists set."""
    url = f"sqlite:///{tmp_path}/login.db"
    db = migrated(make_settings(url))
    seeded = populate(db)
    incidents = seed_incidents(db, coin="litecoin")
    use_database(url, **ROLES)
    yield db, seeded, incidents
    db.dispose()


def as_shown(text: str) -> str:
    """Text as the browser shows it: `literal()`'s backslashes and word joiners (no autolink) removed."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def shown(at: Any, kind: str) -> str:
    """The text of the elements of one kind as shown, one line each."""
    return "\n".join(as_shown(str(e.value)) for e in getattr(at, kind))


def sidebar_text(at: AppTest) -> str:
    """The sidebar's captions and badges (`str(proto)` escapes non-ASCII text: the captions are read)."""
    return shown(at.sidebar, "caption") + as_shown(" ".join(str(e.proto) for e in at.sidebar))


def writes_offered(at: AppTest) -> list[str]:
    return [b.label for b in at.button if b.label.startswith(WRITE_LABELS)]


def signed_in(user: dict[str, object] | None, page: str, query: dict[str, str] | None = None) -> AppTest:
    """The app with the login configured and `user` in st.user (None: logged out), on `page`."""
    at = new_app()
    at.secrets.update(AUTH)
    at.user = dict(user) if user is not None else {"is_logged_in": False}
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if PAGES[page]:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------------------------- pages


def test_a_viewer_is_offered_no_write_and_told_which_role_it_needs(world):
    db, seeded, incidents = world
    runs = signed_in(VIEWER, "runs", {"run": str(seeded.runs["failed"])})
    assert any(s.value.startswith(f"Run #{seeded.runs['failed']}") for s in runs.subheader) or runs.markdown
    assert not writes_offered(runs), writes_offered(runs)
    assert "Signed in as anna@example.com, viewer: reruns need the operator role." in shown(runs, "caption")
    assert "anna@example.com · viewer" in sidebar_text(runs)
    assert [b.label for b in runs.sidebar.button] == ["Log out"]

    respond = signed_in(VIEWER, "incidents", {"incident": str(incidents.open_id)})
    assert not writes_offered(respond)
    assert not respond.text_input  # no name and note to fill either
    assert (
        "Signed in as anna@example.com, viewer: acknowledging and silencing need the operator role."
        in shown(respond, "caption")
    )
    coverage = signed_in(VIEWER, "coverage")
    assert not writes_offered(coverage)
    assert "Signed in as anna@example.com, viewer: gap fills need the operator role." in shown(
        coverage, "caption"
    )
    assert not any("Write actions are off" in w for w in shown(coverage, "warning"))
    assert request_count(db) == 0


def test_an_operator_by_group_reruns_and_the_audit_names_them(world):
    db, seeded, incidents = world
    failed = seeded.runs["failed"]
    at = signed_in(OPERATOR, "runs", {"run": str(failed)})
    assert "olaf@example.com · operator" in sidebar_text(at)
    assert not [c for c in shown(at, "caption") if "need the operator role" in c]
    next(b for b in at.button if b.label == f"Rerun run #{failed}").click().run()
    assert not at.exception
    assert request_count(db, failed) == 1
    entry = db.audit_entries(action="rerun")[0]
    assert (entry.actor, entry.via, entry.role, entry.outcome, entry.run_id) == (
        "olaf@example.com", "dashboard", "operator", "ok", failed,
    )  # fmt: skip

    respond = signed_in(OPERATOR, "incidents", {"incident": str(incidents.open_id)})
    assert f"Acknowledge incident #{incidents.open_id}" in writes_offered(respond)
    assert respond.text_input(key="incident_who").value == "olaf@example.com"  # prefilled from the login
    coverage = signed_in(OPERATOR, "coverage")
    assert "Fill gaps…" in writes_offered(coverage)


def test_an_admin_by_email_has_every_action(world):
    _, seeded, _ = world
    root = {"is_logged_in": True, "email": "Root@Example.com"}
    at = signed_in(root, "runs", {"run": str(seeded.runs["failed"])})
    assert "Root@Example.com · admin" in sidebar_text(at)
    assert f"Rerun run #{seeded.runs['failed']}" in writes_offered(at)


def test_before_logging_in_even_loopback_offers_no_write_and_a_log_in_button(world):
    """With a login configured the role comes from it: on loopback too, or a viewer could log out to write."""
    db, seeded, _ = world
    at = signed_in(None, "runs", {"run": str(seeded.runs["failed"])})
    assert not writes_offered(at)
    assert "Read-only dashboard: reruns are disabled (not logged in)." in shown(at, "caption")
    assert [b.label for b in at.sidebar.button] == ["Log in"]
    assert "Read-only" in sidebar_text(at)
    assert request_count(db) == 0


def test_without_a_login_loopback_is_as_before_and_names_no_user(world):
    _, seeded, _ = world
    at = new_app()
    at.query_params["run"] = str(seeded.runs["failed"])
    at.run()
    at.switch_page(PAGES["runs"]).run()
    assert not at.exception
    assert f"Rerun run #{seeded.runs['failed']}" in writes_offered(at)
    assert not at.sidebar.button  # no login, no logout
    assert "Read-only" not in sidebar_text(at)


# ---------------------------------------------------------------------------------------------- forged writes


def forged_writes(run_id: int, incident_id: int) -> None:
    """A page that calls `data`'s write functions directly, as a request that got past the pages would
    (AppTest runs this function's body as the script: it must import what it uses)."""
    import streamlit as st

    from dashboard import data

    attempts = {
        "rerun": lambda: data.request_rerun(run_id),
        "rerun_all": lambda: data.request_reruns([run_id]),
        "run_here": lambda: data.run_here(run_id),
        "fill_gaps": lambda: data.queue_fill(data.fill_plan()),
        "acknowledge": lambda: data.acknowledge_incident(incident_id, by="mallory"),
        "silence": lambda: data.silence_incident(incident_id, hours=None, by="mallory"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
        except PermissionError as exc:
            st.text(f"{name}: refused: {exc}")
        else:
            st.text(f"{name}: done")


def run_forged(user: dict[str, object], seeded: Seeded, incidents: Incidents) -> list[str]:
    ids = {"run_id": seeded.runs["failed"], "incident_id": incidents.open_id}
    at = AppTest.from_function(forged_writes, default_timeout=60, kwargs=ids)
    at.secrets.update(AUTH)
    at.user = dict(user)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return [t.value for t in at.text]


def test_writes_forged_in_a_viewer_session_are_refused_by_data_and_audited(world):
    db, seeded, incidents = world
    results = run_forged(VIEWER, seeded, incidents)
    assert results == [
        "rerun: refused: anna@example.com is a viewer: rerun needs the operator role",
        "rerun_all: refused: anna@example.com is a viewer: rerun needs the operator role",
        "run_here: refused: anna@example.com is a viewer: run_here needs the operator role",
        "fill_gaps: refused: anna@example.com is a viewer: fill_gaps needs the operator role",
        "acknowledge: refused: anna@example.com is a viewer: acknowledge needs the operator role",
        "silence: refused: anna@example.com is a viewer: silence needs the operator role",
    ]
    assert request_count(db) == 0  # no rerun, no run here, no backfill
    stored = db.get_incident(incidents.open_id)
    assert (stored.acknowledged_by, stored.silenced_until) == (None, None)
    denied = db.audit_entries(actor="anna@example.com")
    assert [(e.action, e.outcome, e.role, e.via) for e in reversed(denied)] == [
        (action, "denied", "viewer", "dashboard")
        for action in ("rerun", "rerun", "run_here", "fill_gaps", "acknowledge", "silence")
    ]
    assert denied[0].detail == "anna@example.com is a viewer: silence needs the operator role"
    assert not [e for e in db.audit_entries() if e.outcome != "denied"]


def test_the_same_calls_in_an_operator_session_write(world):
    """The control: the forged page itself works for a role that may write (so its refusals are real)."""
    db, seeded, incidents = world
    results = run_forged(OPERATOR, seeded, incidents)
    assert results[0] == "rerun: done"
    assert results[4:] == ["acknowledge: done", "silence: done"]
    assert request_count(db, seeded.runs["failed"]) == 1
    assert db.get_incident(incidents.open_id).acknowledged_by == "mallory"
    assert {e.actor for e in db.audit_entries()} == {"olaf@example.com"}


def test_logged_out_and_unknown_actions_are_refused_too(world):
    db, seeded, incidents = world
    results = run_forged({"is_logged_in": False}, seeded, incidents)
    assert results[0] == "rerun: refused: write actions are disabled on this dashboard (not logged in)"
    assert request_count(db) == 0
    entry = db.audit_entries()[0]
    assert (entry.actor, entry.role, entry.outcome) == ("anonymous", None, "denied")


def test_the_loopback_actor_is_the_os_user_as_admin():
    from dashboard.gate import Access
    from pipeline.actors import os_user

    local = Access(
        writes=True, read_only=False, exposed=False, bound="127.0.0.1", login=False, logged_in=False,
        proxy=False, user=None, role="admin",
    )  # fmt: skip
    assert local.actor() == Actor(os_user(), "dashboard", "admin")
    assert local.allows("coin_add")
    assert local.allows("rerun")
    proxied = Access(
        writes=True, read_only=False, exposed=True, bound="0.0.0.0", login=False, logged_in=False,
        proxy=True, user=None, role="admin",
    )  # fmt: skip
    assert proxied.actor() == Actor("anonymous", "dashboard", "admin")  # not the server's OS user
    operator = Access(
        writes=True, read_only=False, exposed=True, bound="0.0.0.0", login=True, logged_in=True,
        proxy=False, user="olaf@example.com", role="operator",
    )  # fmt: skip
    assert not operator.allows("coin_add")
    assert operator.refusal("coin_add", "coin changes") == (
        "Signed in as olaf@example.com, operator: coin changes need the admin role."
    )
    assert operator.denial("coin_add") == "olaf@example.com is an operator: coin_add needs the admin role"


# ---------------------------------------------------------------------------------------------- proxy


@pytest.fixture
def exposed() -> Iterator[None]:
    """The dashboard bound to every interface, behind a proxy."""
    import streamlit.config

    streamlit.config.set_option("server.address", "0.0.0.0")
    yield
    streamlit.config.set_option("server.address", "127.0.0.1")


def behind_proxy(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]) -> None:
    """The request headers the proxy sends (AppTest has no HTTP request: `gate` reads this instead)."""
    from dashboard import gate

    monkeypatch.setattr(gate, "request_headers", lambda: headers)


def test_behind_the_trusted_proxy_its_user_header_gets_the_role(world, use_database, exposed, monkeypatch):
    db, seeded, _ = world
    use_database(db.database_url, DASHBOARD_TRUSTED_AUTH_PROXY="true", **ROLES)
    failed = {"run": str(seeded.runs["failed"])}
    behind_proxy(
        monkeypatch,
        {"Host": "localhost", "x-forwarded-email": "x@example.com", "X-Forwarded-Groups": "oncall"},
    )
    at = open_page("runs", query=failed)
    assert "x@example.com · operator" in sidebar_text(at)
    assert not at.sidebar.button  # the proxy logs in and out, not the dashboard
    assert f"Rerun run #{seeded.runs['failed']}" in writes_offered(at)

    behind_proxy(monkeypatch, {"Host": "localhost", "X-Forwarded-Email": "anna@example.com"})
    at = open_page("runs", query=failed)
    assert not writes_offered(at)
    assert "Signed in as anna@example.com, viewer: reruns need the operator role." in shown(at, "caption")


def test_behind_the_trusted_proxy_without_lists_everyone_may_write_as_before(
    world, use_database, exposed, monkeypatch
):
    db, seeded, _ = world
    use_database(
        db.database_url, DASHBOARD_TRUSTED_AUTH_PROXY="true", DASHBOARD_OPERATORS="", DASHBOARD_ADMINS=""
    )
    behind_proxy(monkeypatch, {"Host": "localhost"})
    at = open_page("runs", query={"run": str(seeded.runs["failed"])})
    assert f"Rerun run #{seeded.runs['failed']}" in writes_offered(at)
    next(b for b in at.button if b.label.startswith("Rerun run #")).click().run()
    assert db.audit_entries(action="rerun")[0].actor == "anonymous"  # nobody named: not the server's OS user
