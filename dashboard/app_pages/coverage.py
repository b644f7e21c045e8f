"""Coverage & quality: which coin-days and block heights are stored, the gaps as ranges, filling them,
and the findings of the data-quality checks."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import charts, coverage_frames, data, gap_actions, gate
from dashboard import components as ui


def render_metrics(prices: pd.DataFrame, blocks: pd.DataFrame, findings: pd.DataFrame) -> None:
    """Missing coin-days (and how many after a failed run), missing heights, error findings."""
    gaps = prices[prices["state"].isin(coverage_frames.GAP_STATES)]
    failed = gaps.loc[gaps["state"] == "failed", "days"]
    holes = blocks.loc[blocks["kind"] == "hole", "size"]
    cols = st.columns(4)
    cols[0].metric("Coin-days missing", f"{int(gaps['days'].sum()):,}", border=True)
    cols[1].metric("… after a failed run", f"{int(failed.sum()):,}", border=True)
    cols[2].metric("Block heights missing", f"{int(holes.sum()):,}", border=True)
    cols[3].metric("Quality errors", int((findings["severity"] == "error").sum()), border=True)


def render_prices(prices: pd.DataFrame, start: date, end: date) -> None:
    """The coin x day heatmap over the coverage window."""
    names = {c.coingecko_id: c.name for c in data.coverage_coins() if c.coingecko_id}
    ui.section(
        "Price coverage",
        ":material/calendar_month:",
        f"Every coin-day from {start} to {end} (COVERAGE_DAYS). Failed: missing, and the last run that "
        "covered the day failed. Unavailable: before the listing, beyond the plan's history, or future.",
    )
    if prices.empty:
        st.caption("No coin has a CoinGecko id.")
        return
    st.plotly_chart(charts.coverage_heatmap(prices, names), key="coverage_heatmap")


def render_blocks(blocks: pd.DataFrame) -> None:
    """One strip per chain over its stored height span, bucketed."""
    ui.section(
        "Block coverage",
        ":material/view_in_ar:",
        "Each chain from its lowest to its highest stored height, in up to "
        f"{charts.MAX_HEIGHT_BUCKETS} buckets; a bucket with any hole is orange or red.",
    )
    held = blocks[blocks["kind"] == "held"]
    if held.empty:
        st.caption("No blocks stored yet.")
        return
    st.plotly_chart(charts.block_coverage_chart(blocks), key="coverage_blocks")
    empty = sorted({c.symbol for c in data.coverage_coins() if c.blockchair_chain} - set(held["coin_symbol"]))
    if empty:
        st.caption("No blocks stored for " + ui.literal(", ".join(empty)) + ".")


def render_gaps(gaps: pd.DataFrame) -> None:
    """The gaps as ranges: price days, block holes, blocks with incomplete transactions."""
    ui.section(
        "Gaps", ":material/format_list_bulleted:", "What `crypto-pipeline gaps` lists, one row per range."
    )
    if gaps.empty:
        st.success(
            "No gaps: every servable day and every height in the stored span is held.",
            icon=":material/done_all:",
        )
        return
    st.dataframe(gaps, hide_index=True, key="coverage_gaps", height=ui.table_height(len(gaps)))


def quality_filters() -> tuple[list[str], tuple[str, ...]]:
    """Severity and coin filters; a coin stands for its CoinGecko id, symbol and chain as subjects."""
    coins = {c.symbol: c for c in data.coverage_coins()}
    left, right = st.columns(2)
    ui.keep("quality_severity", "quality_coins")
    severities = left.multiselect("Severity", ["error", "warn"], key="quality_severity", placeholder="All")
    chosen = right.multiselect(
        "Coin", list(coins), key="quality_coins", placeholder="All", format_func=lambda s: coins[s].name
    )
    ui.save("quality_severity", "quality_coins")
    return severities, tuple(s for c in chosen for s in data.coin_subjects(coins[c]))


def render_quality(all_findings: pd.DataFrame) -> None:
    """Findings newest first, filtered by severity and coin, with their sample rows."""
    severities, subjects = quality_filters()
    frame = data.findings(subjects) if subjects else all_findings
    shown = coverage_frames.filter_findings(frame, severities)
    if shown.empty:
        st.success("No findings: the data-quality checks found nothing here.", icon=":material/verified:")
        return
    st.caption(f"{len(shown)} findings, newest first (at most 200, or 200 per coin when filtered).")
    table, config = ui.status_cells(coverage_frames.findings_table(shown), "severity")
    config["created_at"] = st.column_config.DatetimeColumn("found (UTC)", format="MMM D, HH:mm")
    st.dataframe(table, hide_index=True, key="quality_findings", column_config=config)
    st.markdown("**Sample rows** (the rows each check flagged, at most 5 per finding)")
    st.dataframe(coverage_frames.sample_rows(shown), hide_index=True, key="quality_samples")


ui.page_header(
    "Coverage & quality",
    ":material/grid_on:",
    "What is stored and what is missing, filling the gaps, and what the data-quality checks found.",
)
start, end = data.coverage_window()
prices = data.price_coverage_ranges(start, end)
blocks = data.block_coverage_ranges()
if not coverage_frames.has_data(prices, blocks):
    ui.empty_state(
        "Nothing stored yet",
        "Coverage compares the stored days and heights with the last COVERAGE_DAYS days; ingest some data "
        "first, then come back here to see and fill the gaps.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["prices"], ui.START_COMMANDS["blocks"]],
    )
    st.stop()
findings = data.findings()
gaps = coverage_frames.gap_rows(prices, blocks)
coverage_tab, quality_tab = st.tabs(["Coverage", f"Data quality ({len(findings)})"])
with coverage_tab:
    render_metrics(prices, blocks, findings)
    render_prices(prices, start, end)
    render_blocks(blocks)
    render_gaps(gaps)
    access = gate.current(data.settings())
    gap_actions.render_fill_gaps(
        has_gaps=not gaps.empty,
        read_only=not access.allows("fill_gaps"),
        alive=data.scheduler_alive(),
        refusal=access.refusal("fill_gaps", "gap fills", off="filling gaps is disabled", name=ui.literal),
    )
with quality_tab:
    render_quality(findings)
