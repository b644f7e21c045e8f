"""Blocks & transactions: chain activity per day (the daily rollups), the newest blocks, a block's
transactions, watched addresses."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd
import streamlit as st

from dashboard import charts, data
from dashboard import components as ui


def render_metrics(stats: pd.DataFrame, latest: pd.DataFrame, unit: str, decimals: int) -> None:
    """Newest height and the range's totals from the daily rollups (fees in coin units, USD under them)."""
    cols = st.columns([1.35, 1, 1, 1.15, 1.1])
    newest = f"{int(latest['block_id'].max()):,}" if not latest.empty else "–"
    cols[0].metric("Newest height", newest, border=True, height="stretch")
    cols[1].metric("Blocks in range", f"{int(stats['blocks'].sum()):,}", border=True, height="stretch")
    transactions = int(stats["transactions"].sum())
    cols[2].metric(
        "Transactions",
        # Whole counts read best in full ("2,305", not "2.305k") until they get long.
        f"{transactions:,}" if transactions < 1_000_000 else charts.compact(transactions, 4),
        border=True,
        help=f"{transactions:,} in the range.",
        height="stretch",
    )
    fees = sum(stats["fees"], Decimal(0))
    usd = stats["fees_usd"].sum(min_count=1)
    cols[3].metric(
        f"Fees ({ui.literal(unit)})",
        charts.native_text(fees, 18),  # about 6 significant digits; the help has them all
        f"≈ {charts.compact_money(usd)}" if pd.notna(usd) else None,
        delta_color="off",
        delta_arrow="off",
        border=True,
        help=f"Fees in the range: {charts.native_text(fees, decimals)} {unit}"
        + (f" ({charts.money(usd)})." if pd.notna(usd) else "."),
    )
    cols[4].metric(
        "Block interval",
        interval_text(stats),
        border=True,
        help="Mean time between blocks.",
        height="stretch",
    )


def interval_text(stats: pd.DataFrame) -> str:
    """The mean block interval over the range ('9.8 min', '12.1 s', '2.0 h'), each day weighted by its
    blocks."""
    seconds = pd.to_numeric(stats["mean_block_interval_s"], errors="coerce")
    weights = stats["blocks"].where(seconds.notna(), 0)
    if not weights.sum():
        return "–"
    return duration_text(float((seconds.fillna(0) * weights).sum() / weights.sum()))


def duration_text(seconds: float) -> str:
    """A block interval in the unit that reads best: seconds, minutes or hours."""
    if pd.isna(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:,.1f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def render_activity(
    symbol: str, unit: str, stats: pd.DataFrame, start: date, end: date, color: str | None
) -> None:
    """Blocks, transactions, fees, block interval and block size per day (from the daily rollups, the
    stored transactions and the block sizes); days without blocks and days of blocks named in data-quality
    findings are marked."""
    missing = charts.missing_chain_days(stats)
    marks, levels = data.block_day_marks(symbol, start, end)
    tx_daily = data.transactions_per_day(symbol, start, end)
    sizes = data.blocks_per_day(symbol, start, end)
    figures = [
        ("Blocks per day", charts.blocks_per_day_chart(stats, missing, color), "Blocks stored per UTC day."),
        (
            "Transactions per day",
            charts.transactions_per_day_chart(tx_daily, missing, color),
            "Bars: transactions on chain (block headers); line: transactions stored as rows.",
        ),
        (
            "Fees",
            charts.fees_chart(stats, unit, missing, color),
            f"Total fees per day in {ui.literal(unit)} (bars) and in USD (line).",
        ),
        (
            "Mean block interval",
            charts.block_interval_chart(stats, missing, color),
            "Time between the day's first and last block over the heights between them.",
        ),
        ("Block size", charts.block_size_chart(sizes, missing), "Average and largest block per day (kB)."),
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


def render_daily_table(symbol: str, unit: str, stats: pd.DataFrame, decimals: int) -> None:
    """The daily rollups as a table (heights as integers, fees in coin units next to USD) and a CSV."""
    ui.section("Daily totals", ":material/table_rows:", "One row per UTC day, from the daily rollups.")
    seconds = pd.to_numeric(stats["mean_block_interval_s"], errors="coerce")
    table = pd.DataFrame(
        {
            "day": stats["day"],
            "blocks": stats["blocks"],
            "transactions": stats["transactions"],
            f"fees ({unit})": [charts.native_text(v, decimals) for v in stats["fees"]],
            "fees (USD)": [charts.money(v) for v in stats["fees_usd"]],
            "mean interval": [duration_text(s) for s in seconds],
            "mean size (kB)": pd.to_numeric(stats["mean_block_size"], errors="coerce") / 1000,
            "first height": stats["first_height"],
            "last height": stats["last_height"],
        }
    ).iloc[::-1]
    right = st.column_config.TextColumn(alignment="right")
    st.dataframe(
        table,
        hide_index=True,
        key="blocks_daily",
        height=ui.table_height(len(table)),
        column_config={
            "day": st.column_config.DateColumn("day", format="ddd D MMM YYYY"),
            "blocks": ui.count_column("blocks"),
            "transactions": ui.count_column("transactions"),
            f"fees ({unit})": right,
            "fees (USD)": right,
            "mean interval": right,
            "mean size (kB)": st.column_config.NumberColumn("mean size (kB)", format="%.1f"),
            "first height": st.column_config.NumberColumn("first height", format="%d"),
            "last height": st.column_config.NumberColumn("last height", format="%d"),
        },
    )
    export = stats.assign(fees=[charts.plain_number(v) or "0" for v in stats["fees"]])
    export["day"] = [pd.Timestamp(d).date().isoformat() for d in export["day"]]
    st.download_button(
        "Download CSV",
        export.rename(columns={"fees": f"fees_{unit.lower()}"}).to_csv(index=False).encode(),
        file_name=f"chain_days_{symbol}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="blocks_daily_csv",
    )


def render_latest(symbol: str, unit: str, reorg_depth: int, color: str | None) -> pd.DataFrame:
    """The newest blocks; a selected block shows its transactions below."""
    latest = data.latest_blocks(symbol, 100)
    note = f"The newest {reorg_depth} blocks are provisional (a reorganisation may still replace them)."
    ui.section("Latest blocks", ":material/view_in_ar:", note + " Select a block to see its transactions.")
    tip, low = int(latest["block_id"].max()), int(latest["block_id"].min())
    marks, levels = data.block_height_marks(symbol, low, tip)
    fig = charts.latest_blocks_chart(latest, reorg_depth, color)
    fig = charts.mark_findings(fig, marks, severities=levels)
    st.plotly_chart(fig, key="blocks_latest_chart")
    table = latest.assign(
        status=["provisional" if b > tip - reorg_depth else "final" for b in latest["block_id"]]
    )
    decimals = data.chain_decimals(symbol)
    table["fees"] = [charts.native_text(Decimal(v), decimals) if v else "–" for v in latest["fees"]]
    order = ["block_id", "status", "time", "transaction_count", "size", "fees", "fee_total_usd"]
    table = table[[*order, *[c for c in latest.columns if c not in order]]]
    block_id = ui.selectable_table(
        table,
        id_column="block_id",
        key=f"blocks_{symbol}",
        status_column="status",
        column_config={
            "block_id": st.column_config.NumberColumn("height", format="%d"),
            "time": st.column_config.DatetimeColumn("time (UTC)", format="MMM D, HH:mm"),
            "transaction_count": ui.count_column("transactions"),
            "size": ui.count_column("size (bytes)"),
            "fees": st.column_config.TextColumn(f"fees ({unit})", alignment="right"),
            "fee_total_usd": st.column_config.NumberColumn("fees (USD)", format="$%,.2f"),
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
            for column in ("fee", "output_total", "value"):
                txs[column] = [charts.native_text(Decimal(v), decimals) if v else "" for v in txs[column]]
            st.dataframe(
                txs,
                hide_index=True,
                key="blocks_txs",
                column_config={
                    "fee": st.column_config.TextColumn(f"fee ({unit})", alignment="right"),
                    "output_total": st.column_config.TextColumn(f"output ({unit})", alignment="right"),
                    "value": st.column_config.TextColumn(f"value ({unit})", alignment="right"),
                    "fee_usd": st.column_config.NumberColumn("fee (USD)", format="$%,.2f"),
                    "output_total_usd": st.column_config.NumberColumn("output (USD)", format="$%,.2f"),
                    "time": st.column_config.DatetimeColumn("time (UTC)", format="MMM D, HH:mm"),
                },
            )
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
coin = next((c for c in data.coins() if c.symbol == symbol), None)
color = charts.coin_color(coin.coingecko_id) if coin and coin.coingecko_id else None
start, end, _preset = ui.date_range_picker("blocks", earliest=data.first_block_day(symbol), default="30d")
stats = data.chain_stats(symbol, start, end)
latest_any = data.latest_blocks(symbol, 1)
if latest_any.empty:
    ui.empty_state(
        f"No {ui.literal(symbol)} blocks yet",
        "Blocks appear once the Blockchair ingestion has run.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["blocks"]],
    )
    st.stop()
decimals = data.chain_decimals(symbol)
render_metrics(stats, latest_any, unit, decimals)
if stats.empty:
    st.info("No blocks in this period; pick a longer one.", icon=":material/date_range:")
else:
    render_activity(symbol, unit, stats, start, end, color)
render_latest(symbol, unit, data.settings().REORG_DEPTH, color)
if not stats.empty:
    render_daily_table(symbol, unit, stats, decimals)
render_addresses(symbol, unit)
