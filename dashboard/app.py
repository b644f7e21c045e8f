"""Router of the crypto-pipeline dashboard: `streamlit run dashboard/app.py`.

Only the frame lives here: page config, navigation, the sidebar badges every page shares, and the guards
every page goes through: the Host allow-list (`gate`), the notice when write actions are off, and the
banner that replaces a page while the database is unreachable (`outage`). (Each page's header shows the
simulated-data notice.)
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, gate, outage
from pipeline.config import Settings
from pipeline.errors import ConfigError, DatabaseUnavailable

st.set_page_config(page_title="crypto-pipeline", page_icon=":material/currency_bitcoin:", layout="wide")

PAGES = {
    "Monitor": [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(
            "app_pages/incidents.py",
            title="Incidents",
            icon=":material/e911_emergency:",
            url_path="incidents",  # alerts link to {DASHBOARD_URL}/incidents?incident=ID
        ),
        st.Page("app_pages/runs.py", title="Ingestion runs", icon=":material/history:", url_path="runs"),
        st.Page(
            "app_pages/coverage.py",
            title="Coverage & quality",
            icon=":material/grid_on:",
            url_path="coverage",
        ),
    ],
    "Explore": [
        st.Page("app_pages/prices.py", title="Prices", icon=":material/show_chart:", url_path="prices"),
        st.Page(
            "app_pages/blocks.py",
            title="Blocks & transactions",
            icon=":material/view_in_ar:",
            url_path="blocks",
        ),
    ],
    "Admin": [
        st.Page("app_pages/database.py", title="Database", icon=":material/database:", url_path="database")
    ],
}

settings: Settings | None
try:
    settings = data.settings()
except ConfigError:
    settings = None
if settings is not None and settings.SIMULATED_DATA:  # only for simulated data: hidden entirely otherwise
    PAGES["Admin"].append(
        st.Page("app_pages/simulator.py", title="Simulator", icon=":material/science:", url_path="simulator")
    )
# A Host header off the allow-list gets nothing but the refusal: no navigation, no data, no actions.
host_ok = settings is None or gate.host_allowed(settings)
page = st.navigation(PAGES, position="sidebar" if host_ok else "hidden")

if settings is None:
    # The message can echo configured values (a database URL with a password): name the fix only.
    st.error(
        "The configuration is invalid. Check the environment variables and `.env`, then run "
        "`crypto-pipeline status` in a shell to see which setting is wrong.",
        icon=":material/settings_alert:",
    )
    st.stop()
if not host_ok:
    ui.host_refusal(gate.request_host())
    st.stop()

access = gate.current(settings)
health = data.health()
down = outage.current()
if not health.ok or down is not None:
    down = outage.check()  # probe now: the cached health may be up to LIVE_TTL seconds old
    if down is None:
        data.health.clear()  # it answers now: forget the cached failure
        health = data.health()
ui.sidebar_badges(
    simulated=settings.SIMULATED_DATA,
    read_only=not access.writes,
    dialect=health.dialect,
    ok=down is None,
    revision=health.schema_revision,
    replica_lag=data.replica_lag() if down is None and health.schema_revision else None,
)
if access.login or access.user:  # who is signed in, and in which role (the login's or the proxy's)
    with st.sidebar:
        if access.user:
            st.caption(f":material/person: {ui.literal(access.user)} · {access.role}")
        if access.logged_in:
            st.button("Log out", key="auth_logout", icon=":material/logout:", on_click=st.logout)
        elif access.login:
            st.button("Log in", key="auth_login", icon=":material/login:", on_click=st.login)
if down is not None:
    outage.show(down)
    st.stop()
if health.schema_revision is None:
    ui.empty_state(
        "The database has no schema yet",
        "Create the tables first; the dashboard then shows what the ingestion writes.",
        ["crypto-pipeline init-db"],
    )
    st.stop()

ui.access_notice(access)
top = st.container()  # where the banner goes if the database fails while the page runs
st.session_state[outage.PAGE_RUNNING] = True
try:
    page.run()
except DatabaseUnavailable as exc:
    with top:
        outage.show(outage.note(data.redact(str(exc)) or ""))
finally:
    st.session_state[outage.PAGE_RUNNING] = False
