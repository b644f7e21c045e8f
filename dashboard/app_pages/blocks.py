"""Blocks & transactions: chain activity per day, the newest blocks, a block's transactions, addresses."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import charts, data
from dashboard import components as ui


def render_metrics(daily: pd.DataFrame, latest: pd.DataFrame, unit: str) -> None:
    """Newest height and totals over the range."""
    cols = st.columns(4)
    cols[0].metric(
        "Newest height", f"{int(latest['block_id'].max()):,}" if not latest.empty else "–", border=True
    )
    cols[1].metric("Blocks in range", f"{int(daily['blocks'].sum()):,}", border=True)
    cols[2].metric("Transactions in range", f"{int(daily['transactions'].sum()):,}", border=True)
    cols[3].metric(f"Fees in range ({ui.literal(unit)})", f"{daily['fees'].sum():,.4f}", border=True)


def render_activity(symbol: str, unit: str, daily: pd.DataFrame, start: date, end: date) -> None:
    """Blocks, transactions, fees and block size per day; days without blocks and days of blocks named
    in data-quality findings are marked."""
    missing = charts.missing_chain_days(daily)
    marks, levels = data.block_day_marks(symbol, start, end)
    tx_daily = data.transactions_per_day(symbol, start, end)
    figures = [
        ("Blocks per day", charts.blocks_per_day_chart(daily, missing), "Blocks stored per UTC day."),
        (
            "Transactions per day",
            charts.transactions_per_day_chart(tx_daily, missing),
            "Bars: transactions on chain (block headers); line: transactions stored as rows.",
        ),
        (
            "Fees",
            charts.fees_chart(daily, unit, missing),
            f"Total fees per day in {ui.literal(unit)} and in USD.",
        ),
        ("Block size", charts.block_size_chart(daily, missing), "Average and largest block per day (kB)."),
    ]
    note = " Red bands and × mark days without stored blocks." if missing else ""
    note += " ▼ marks days of blocks named in data-quality findings." if marks else ""
    for i, (title, fig, caption) in enumerate(figures):
        if i % 2 == 0:
            cols = st.columns(2)
        with cols[i % 2]:
            st.markdown(f"**{title}**")
            st.plotly_chart(charts.mark_findings(fig, marks, severities=levels), key=f"blocks_chart_{i}")
            st.caption(caption + note)


def render_latest(symbol: str, reorg_depth: int) -> pd.DataFrame:
    """The newest blocks; a selected block shows its transactions below."""
    latest = data.latest_blocks(symbol, 100)
    note = f"The newest {reorg_depth} blocks are provisional (a reorganisation may still replace them)."
    ui.section("Latest blocks", ":material/view_in_ar:", note + " Select a block to see its transactions.")
    tip, low = int(latest["block_id"].max()), int(latest["block_id"].min())
    marks, levels = data.block_height_marks(symbol, low, tip)
    fig = charts.mark_findings(charts.latest_blocks_chart(latest, reorg_depth), marks, severities=levels)
    st.plotly_chart(fig, key="blocks_latest_chart")
    table = latest.assign(
        status=["provisional" if b > tip - reorg_depth else "final" for b in latest["block_id"]]
    )
    table = table[["block_id", "status", *[c for c in latest.columns if c != "block_id"]]]
    block_id = ui.selectable_table(
        table,
        id_column="block_id",
        key=f"blocks_{symbol}",
        status_column="status",
        column_config={
            "time": st.column_config.DatetimeColumn("time (UTC)", format="MMM D, HH:mm"),
            "fees": st.column_config.TextColumn("fees (coin)"),
        },
    )
    if block_id is not None:
        txs = data.block_transactions(symbol, int(block_id))
        st.markdown(f"**Transactions of block {int(block_id):,}** ({len(txs)} stored)")
        if txs.empty:
            st.caption(
                "No transactions stored for this block (only the newest blocks' transactions are kept)."
            )
        else:
            st.dataframe(txs, hide_index=True, key="blocks_txs")
    return latest


def render_addresses(symbol: str, unit: str) -> None:
    """Watched addresses with balances in coin units (exact) and USD."""
    ui.section(
        "Watched addresses", ":material/account_balance_wallet:", f"Balances in {ui.literal(unit)} and USD."
    )
    frame = data.addresses(symbol)
    if frame.empty:
        st.caption("No watched addresses for this chain (set WATCH_ADDRESSES).")
        return
    st.dataframe(
        frame, hide_index=True, column_config={"balance": st.column_config.TextColumn(f"balance ({unit})")}
    )


ui.page_header("Blocks & transactions", ":material/view_in_ar:", "Chain activity from Blockchair.")
symbol = ui.chain_picker("blocks_chain")
if symbol is None:
    ui.empty_state("No chains configured", "Add a coin with a blockchair_chain to coin_metadata.")
    st.stop()
unit = symbol
start, end, _preset = ui.date_range_picker("blocks", earliest=data.first_block_day(symbol), default="30d")
daily = data.blocks_per_day(symbol, start, end)
latest_any = data.latest_blocks(symbol, 1)
if latest_any.empty:
    ui.empty_state(
        f"No {ui.literal(symbol)} blocks yet",
        "Blocks appear once the Blockchair ingestion has run.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["blocks"]],
    )
    st.stop()
render_metrics(daily, latest_any, unit)
if daily.empty:
    st.info("No blocks in this period; pick a longer one.", icon=":material/date_range:")
else:
    render_activity(symbol, unit, daily, start, end)
render_latest(symbol, data.settings().REORG_DEPTH)
render_addresses(symbol, unit)
