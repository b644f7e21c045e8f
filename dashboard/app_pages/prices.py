"""Prices: daily USD prices, normalised comparison, volume and market cap, with a shareable URL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import charts, data, urlstate
from dashboard import components as ui

KEYS = ("prices_coins", "prices_preset", "prices_range", "prices_log")


def read_link(options: dict[str, str]) -> None:
    """Seed the widgets from the query string once per session; warn about values that were ignored."""
    if st.session_state.get("_prices_link_read"):
        return
    st.session_state["_prices_link_read"] = True
    warnings: list[str] = []
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    coins = urlstate.parse_choices(params, "coins", options, warnings)
    preset, dates = urlstate.parse_period(params, warnings, ui.utc_today())
    log = urlstate.parse_bool(params, "log", warnings)
    for key, value in zip(KEYS, (coins, preset, dates, log), strict=True):
        if value is not None:
            st.session_state[key] = value
    if warnings:  # they quote the link's values, which anyone can write
        ignored = ui.literal("; ".join(warnings))
        st.warning(f"Some link parameters were ignored: {ignored}", icon=":material/link_off:")


def write_link(coins: list[str], preset: str, start: date, end: date, log: bool) -> None:
    """Keep the current view in the URL so that it can be shared."""
    params = {"coins": ",".join(coins), "preset": preset, "log": "1" if log else "0"}
    if preset == urlstate.CUSTOM:
        params |= {"start": start.isoformat(), "end": end.isoformat()}
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def render_metrics(frame: pd.DataFrame, names: dict[str, str]) -> None:
    """Latest price per coin with its change over the range."""
    cols = st.columns(min(frame["coin_id"].nunique(), 5))
    for i, (coin, rows) in enumerate(frame.groupby("coin_id", sort=True)):
        first, last = rows["price_usd"].iloc[0], rows["price_usd"].iloc[-1]
        change = f"{(last / first - 1) * 100:+.1f}% in range" if first else None
        label = ui.literal(names.get(str(coin), str(coin)))  # metric labels render markdown
        cols[i % len(cols)].metric(label, ui.usd(last), change, border=True)


def render_charts(
    frame: pd.DataFrame, log: bool, findings: tuple[dict[date, list[str]], dict[date, str]]
) -> None:
    """Price, normalised, volume and market-cap charts; missing days shaded and marked with x, days named
    in data-quality findings marked with a dotted line and a triangle."""
    missing = charts.missing_price_days(frame)
    marks, levels = findings
    tabs = st.tabs(["Price", "Normalised (start = 100)", "Volume", "Market cap"])
    figures = [
        charts.price_lines(frame, log=log, missing=missing),
        charts.normalised_prices(frame, log=log, missing=missing),
        charts.volume_chart(frame, missing=missing),
        charts.market_cap_chart(frame, missing=missing),
    ]
    captions = [
        "Daily USD price (00:00 UTC snapshot).",
        "Each coin rebased to 100 on its first day in the range: compares performance, not price.",
        "Trading volume over the 24 hours before each snapshot.",
        "Market capitalisation at each snapshot.",
    ]
    note = " ▼ and dotted lines mark days named in data-quality findings." if marks else ""
    for tab, fig, caption, name in zip(tabs, figures, captions, ("price", "norm", "vol", "cap"), strict=True):
        with tab:
            st.plotly_chart(charts.mark_findings(fig, marks, severities=levels), key=f"prices_{name}_chart")
            st.caption(caption + (" Red bands and × mark days without a price." if missing else "") + note)


def render_table(frame: pd.DataFrame, coverage: pd.DataFrame, start: date, end: date) -> None:
    """Coverage per coin, the rows themselves and a CSV download."""
    ui.section(
        "Coverage",
        ":material/calendar_month:",
        "Days held and missing between each coin's first and last day.",
    )
    st.dataframe(coverage, hide_index=True)
    ui.section("Data", ":material/table:")
    st.dataframe(frame, hide_index=True, column_config={"price_date": st.column_config.DateColumn("day")})
    st.download_button(
        "Download CSV",
        frame.to_csv(index=False).encode(),
        file_name=f"prices_{start}_{end}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="prices_csv",
    )


ui.page_header("Prices", ":material/show_chart:", "Daily prices, volume and market cap from CoinGecko.")
names = {c.coingecko_id: c.name for c in data.coins() if c.coingecko_id}
read_link(names)
with st.container(border=True):
    selected = ui.coin_picker("Coins", names, "prices_coins", data.settings().COINS)
    earliest = data.price_bounds(tuple(selected))[0] if selected else None
    start, end, preset = ui.date_range_picker("prices", earliest=earliest, default="90d")
    ui.keep("prices_log")
    log_scale = st.toggle("Log scale", key="prices_log")
    ui.save("prices_log")
write_link(selected, preset, start, end, log_scale)

prices = data.prices(tuple(selected), start, end) if selected else pd.DataFrame()
if not selected:
    st.info("Pick at least one coin.", icon=":material/touch_app:")
elif prices.empty:
    ui.empty_state(
        "No prices in this range",
        "Pick a longer period, or ingest prices first.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["prices"]],
    )
else:
    render_metrics(prices, names)
    render_charts(prices, log_scale, data.price_finding_marks(tuple(selected), start, end))
    render_table(prices, data.price_coverage(tuple(selected), start, end), start, end)
