"""Router of the crypto-pipeline dashboard: `streamlit run dashboard/app.py`.

Only the frame lives here: page config, navigation, the sidebar badges every page shares, and the guard
that explains a missing or unreachable database. (Each page's header shows the simulated-data notice.)
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data
from pipeline.errors import ConfigError

st.set_page_config(page_title="crypto-pipeline", page_icon=":material/currency_bitcoin:", layout="wide")

PAGES = {
    "Monitor": [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
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

page = st.navigation(PAGES, position="sidebar")

try:
    settings = data.settings()
except ConfigError:
    # The message can echo configured values (a database URL with a password): name the fix only.
    st.error(
        "The configuration is invalid. Check the environment variables and `.env`, then run "
        "`crypto-pipeline status` in a shell to see which setting is wrong.",
        icon=":material/settings_alert:",
    )
    st.stop()

health = data.health()
ui.sidebar_badges(
    simulated=settings.SIMULATED_DATA,
    read_only=settings.DASHBOARD_READ_ONLY,
    dialect=health.dialect,
    ok=health.ok,
    revision=health.schema_revision,
)

if not health.ok:
    st.error(
        f"The database does not answer ({health.error}). Check that it is running and that DATABASE_URL "
        "points at it.",
        icon=":material/database_off:",
    )
    st.stop()
if health.schema_revision is None:
    ui.empty_state(
        "The database has no schema yet",
        "Create the tables first; the dashboard then shows what the ingestion writes.",
        ["crypto-pipeline init-db"],
    )
    st.stop()

page.run()
