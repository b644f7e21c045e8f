"""Database: rows per table, size, the coins and their state, coverage per coin and chain, growth and run-log
volume over time."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import charts, data, gate
from dashboard import components as ui
from pipeline import actors

HISTORY_DAYS = 90


ESTIMATE_SOURCES = {
    "sqlite": "the span of its row ids (too high by any rows deleted from the middle of the table)",
    "postgresql": "PostgreSQL's planner statistics",
}


def estimate_note() -> str:
    """What ≈ means next to a count, and where the estimate comes from on this database."""
    source = ESTIMATE_SOURCES.get(data.health().dialect, "the database's statistics")
    return (
        "≈ marks an estimate: a large table is not counted row by row on every visit; its count comes "
        f"from {source}."
    )


def estimated(counts: dict[str, int]) -> frozenset[str]:
    """The tables whose count is an estimate (`data.table_counts` names them in `approximate`)."""
    return frozenset(getattr(counts, "approximate", ()))


def count_text(counts: dict[str, int], table: str) -> str:
    """A table's rows as shown: '1,234', or '≈ 1,234' when the count is an estimate."""
    text = f"{counts.get(table, 0):,}"
    return f"≈ {text}" if table in estimated(counts) else text


def render_totals() -> dict[str, int]:
    """Headline numbers; returns the rows per table."""
    counts = data.table_counts()
    failed = data.runs_by_status(24).get("failed", 0)
    cols = st.columns(5)
    cols[0].metric("Database size", ui.size_text(data.database_size()), border=True)
    cols[1].metric("Prices", count_text(counts, "market_prices"), border=True)
    cols[2].metric("Blocks", count_text(counts, "blockchain_blocks"), border=True)
    cols[3].metric("Transactions", count_text(counts, "blockchain_transactions"), border=True)
    cols[4].metric(
        "Runs",
        count_text(counts, "data_ingestion_logs"),
        f"{failed} failed in 24 h",
        delta_color="inverse" if failed else "off",
        border=True,
    )
    if estimated(counts):
        st.caption(estimate_note())
    return counts


def render_coins() -> None:
    """Every coin with its state, chain, family and how far its data reaches; below it, an admin's
    switches (coins are added with `crypto-pipeline coins add`, which checks both sources)."""
    ui.section(
        "Coins",
        ":material/toll:",
        "Enabled coins are ingested by the scheduler; a disabled one keeps its data. Manage them with "
        "`crypto-pipeline coins add SYMBOL --coingecko-id ID --chain CHAIN` and "
        "`crypto-pipeline coins enable|disable SYMBOL`.",
    )
    st.dataframe(
        data.coin_states(),
        hide_index=True,
        column_config={
            "Newest block": st.column_config.NumberColumn(format="localized"),
            "Chain tip": st.column_config.NumberColumn(format="localized"),
            "Newest price day": st.column_config.DateColumn(format="YYYY-MM-DD"),
            "Listed since": st.column_config.DateColumn(format="YYYY-MM-DD"),
        },
        key="db_coins",
    )
    render_coin_switches()


def _switch_coin(symbol: str, enabled: bool) -> None:
    """Button callback: enable or disable one coin, and say what happened."""
    try:
        changed = data.set_coin_enabled(symbol, enabled)
    except (PermissionError, LookupError) as exc:
        st.session_state["db_coin_notice"] = ("error", str(exc))
        return
    done = "enabled" if enabled else "disabled"
    note = f"{symbol} {done}" if changed else f"{symbol} was already {done}"
    st.session_state["db_coin_notice"] = ("success", note + ": the scheduler sees it at its next job.")


def render_settings() -> None:
    """For admins: the settings this dashboard runs with (secrets only as set or not)."""
    access = gate.current(data.settings())
    if not actors.may_view(access.role, "settings"):
        return
    rows = data.settings_rows()
    changed = int(rows["changed"].sum())
    with st.expander(f"Settings (admin): {changed} changed from the default", icon=":material/settings:"):
        st.caption(
            "What this dashboard process runs with (environment and `.env`); the scheduler and other "
            "processes read their own. Secrets show only whether they are set."
        )
        st.dataframe(
            rows,
            hide_index=True,
            column_config={"changed": st.column_config.CheckboxColumn("changed", width="small")},
            key="db_settings",
        )


def render_coin_switches() -> None:
    """For admins: enable or disable a coin's ingestion (adding one checks the sources: the CLI does that)."""
    access = gate.current(data.settings())
    if not access.allows("coin_disable"):
        st.caption(f":material/lock: {access.refusal('coin_disable', 'coin changes', name=ui.literal)}")
        return
    if notice := st.session_state.pop("db_coin_notice", None):
        kind, text = notice
        (st.success if kind == "success" else st.error)(ui.literal(text))
    frame = data.coin_states()
    with st.expander("Enable or disable a coin (admin)", icon=":material/toggle_on:"):
        for symbol, state in zip(frame["Symbol"], frame["State"], strict=True):
            left, right = st.columns([3, 1])
            left.markdown(f"**{ui.literal(symbol)}** · {ui.literal(state)}")
            enabled = state == "enabled"
            right.button(
                f"{'Disable' if enabled else 'Enable'} {symbol}",
                key=f"coin_switch_{symbol}",
                on_click=_switch_coin,
                args=(symbol, not enabled),
                width="stretch",
            )


def render_tables(counts: dict[str, int]) -> None:
    """Rows per table, scheduler tables included; an estimated count is marked ≈ after the table name."""
    approximate = estimated(counts)
    caption = "Every table of the schema, scheduler tables included."
    ui.section(
        "Rows per table",
        ":material/table_rows:",
        caption + (" ≈ marks an estimated count." if approximate else ""),
    )
    shown = {f"{name} ≈" if name in approximate else name: n for name, n in counts.items()}
    st.plotly_chart(charts.row_counts_chart(shown), key="db_rows_chart")


def render_coverage() -> None:
    """First/last/days/missing per coin, and heights per chain."""
    left, right = st.columns(2)
    with left:
        ui.section(
            "Price coverage",
            ":material/calendar_month:",
            "Missing = days between first and last with no row.",
        )
        coverage = data.date_coverage()
        if coverage.empty:
            st.caption("No prices stored yet.")
        else:
            st.dataframe(coverage, hide_index=True)
    with right:
        ui.section(
            "Block coverage",
            ":material/view_in_ar:",
            "Missing = heights between lowest and highest not held.",
        )
        heights = data.height_coverage()
        if heights.empty:
            st.caption("No blocks stored yet.")
        else:
            st.dataframe(heights, hide_index=True)


def render_history() -> None:
    """Growth (rows inserted by runs) and run-log volume per day over the last 90 days."""
    since = ui.utc_today() - timedelta(days=HISTORY_DAYS - 1)
    left, right = st.columns(2)
    with left:
        ui.section(
            "Growth",
            ":material/trending_up:",
            f"Rows inserted per day by ingestion runs, last {HISTORY_DAYS} days.",
        )
        growth = data.growth(since)
        if growth.empty or not growth["rows"].sum():
            st.caption("No rows inserted in this period.")
        else:
            st.plotly_chart(charts.growth_chart(growth), key="db_growth_chart")
    with right:
        ui.section(
            "Run-log volume",
            ":material/receipt_long:",
            f"Ingestion-log rows per day by status, last {HISTORY_DAYS} days.",
        )
        volume = data.log_volume(since)
        if volume.empty:
            st.caption("No runs in this period.")
        else:
            st.plotly_chart(charts.runs_by_status_chart(volume, x="day"), key="db_volume_chart")
    with st.expander("Rows per day by `created_at` (scans the tables)", icon=":material/manage_search:"):
        st.caption("Counts rows by creation day. `created_at` is not indexed, so this reads whole tables.")
        if st.button("Count rows by creation day", key="db_created_growth"):
            created = data.created_growth(since)
            if created.empty:
                st.caption("No rows created in this period.")
            else:
                st.plotly_chart(charts.growth_chart(created, group="table"), key="db_created_chart")


ui.page_header("Database", ":material/database:", "What is stored, how much of it, and how it grows.")
counts = render_totals()
render_coins()
render_settings()
if not any(counts.get(t, 0) for t in ("market_prices", "blockchain_blocks", "data_ingestion_logs")):
    ui.empty_state(
        "The database is empty",
        "Only the seed coins are stored. Ingest data to see coverage and growth here.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["prices"], ui.START_COMMANDS["blocks"]],
    )
else:
    render_tables(counts)
    render_coverage()
    render_history()
