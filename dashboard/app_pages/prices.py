"""Prices: candlesticks over volume, coins compared, returns, volatility, drawdown and correlation, the rows
shown as CSV, and the whole view in a shareable URL.

Candles exist for the hourly window only (HOURLY_DAYS); older history is the daily 00:00 UTC snapshots,
drawn as a dotted line of daily closes, never as candles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, data, urlstate
from dashboard import components as ui
from pipeline.schemas import PricePointData

TABS = {"chart": "Chart", "analytics": "Analytics", "data": "Data"}
MODE_LABELS = {"auto": "Auto", "index": "Index = 100", "price": "Price", "multiples": "Small multiples"}
INTERVAL_LABELS = {"1h": "1h", "4h": "4h", "1d": "1D", "1w": "1W"}
DEFAULT_PRESET = "90d"
CACHE_STEP = timedelta(minutes=5)  # "now" moves in steps, so that a range's reads stay cached a while
CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


# ---------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class View:
    """What the page shows: the widgets' values and the UTC moments the range stands for."""

    coins: list[str]
    quote: str
    interval: str
    preset: str
    log: bool
    mode: str
    start: datetime
    end: datetime


def read_link(names: Mapping[str, str], quotes: list[str]) -> None:
    """Seed the widgets from the query string once per session; warn about values that were ignored."""
    if st.session_state.get("_prices_link_read"):
        return
    st.session_state["_prices_link_read"] = True
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    link = urlstate.parse_price_link(params, coins=names, quotes=quotes, today=ui.utc_today())
    values = {
        "prices_coins": link.coins,
        "prices_quote": link.quote,
        "prices_interval": link.interval,
        "prices_preset": link.preset,
        "prices_range": link.dates,
        "prices_tab": TABS[link.tab] if link.tab else None,
        "prices_log": link.log,
        "prices_mode": link.mode,
    }
    for key, value in values.items():
        if value is not None:
            st.session_state[key] = value
    if link.warnings:  # they quote the link's values, which anyone can write
        ignored = ui.literal("; ".join(link.warnings))
        st.warning(f"Some link parameters were ignored: {ignored}", icon=":material/link_off:")


def write_link(view: dict[str, str]) -> None:
    """Keep the current view in the URL so that it can be shared."""
    if st.query_params.to_dict() != view:
        st.query_params.from_dict(view)


def _preset_chosen(preset: str | None) -> None:
    """A new quick range starts with its own interval (1D hourly ... All weekly)."""
    if preset and preset != urlstate.CUSTOM:
        st.session_state["prices_interval"] = urlstate.default_interval(preset)


def _dates_chosen(start: date, end: date) -> None:
    st.session_state["prices_interval"] = urlstate.default_interval(urlstate.CUSTOM, (end - start).days + 1)


def window(preset: str, start: date, end: date, earliest: date | None) -> tuple[datetime, datetime]:
    """The UTC moments a view covers: the last N x 24 h up to now for a quick range, from the earliest
    stored day for 'all', whole days for a custom range."""
    now = datetime.now(UTC)
    upper = datetime.fromtimestamp(
        (now.timestamp() // CACHE_STEP.total_seconds() + 1) * CACHE_STEP.total_seconds(), UTC
    )
    days = urlstate.PRICE_PRESETS.get(preset)
    if preset in urlstate.PRICE_PRESETS and days is not None:
        return upper - timedelta(days=days), upper
    if preset == "all":
        first = earliest or ui.utc_today() - timedelta(days=365)
        return datetime.combine(first, time(0), UTC), upper
    return datetime.combine(start, time(0), UTC), min(
        datetime.combine(end, time(0), UTC) + timedelta(days=1), upper
    )


def range_words(preset: str, start: datetime) -> str:
    """How the change of a metric is described: 'over 3M', 'since 2 Sep'."""
    if preset in urlstate.PRICE_PRESET_LABELS and preset != urlstate.CUSTOM:
        return f"over {urlstate.PRICE_PRESET_LABELS[preset]}"
    return f"since {start.day} {start:%b}"


# ---------------------------------------------------------------------------------------------- parts


def render_metrics(
    slot: st.delta_generator.DeltaGenerator,
    view: View,
    names: Mapping[str, str],
    candles: pd.DataFrame,
    history: pd.DataFrame,
    latest: Mapping[str, PricePointData],
) -> None:
    """The latest price per coin ("as of HH:MM UTC") with its change over the range; for one coin also
    the range's high and low and the 24 h volume."""
    series = charts.close_series(candles, history)
    opening = charts.opening_prices(candles, history)
    shown = [c for c in view.coins if c in latest or (series["coin_id"] == c).any()]
    if not shown:
        return
    cols = slot.columns(4 if len(shown) == 1 else min(len(shown), 5))
    today = ui.utc_today()
    words = range_words(view.preset, view.start)
    for i, coin in enumerate(shown):
        closes = series.loc[series["coin_id"] == coin, "close"].to_numpy(dtype=float)
        closes = closes[np.isfinite(closes)]
        point = latest.get(coin)
        if point is not None:
            value = float(point.price)
            stamp = point.ts.astimezone(UTC)
            as_of = (
                f"as of {stamp:%H:%M} UTC"
                if stamp.date() == today
                else f"as of {stamp.day} {stamp:%b %H:%M} UTC"
            )
            source = f"Newest 5-minute price point, {charts.when(stamp)}."
        elif len(closes):
            value = float(closes[-1])
            stamp = series.loc[series["coin_id"] == coin, "ts"].max()
            as_of = f"last close {stamp.day} {stamp:%b}"
            source = "No intraday price stored: the newest close in the range."
        else:
            continue
        first = opening.get(coin)
        change = f"{charts.percent(value / first - 1)} {words}" if first else None
        label = f"{ui.literal(names.get(coin, coin))} · {as_of}"  # metric labels render markdown
        cols[i % len(cols)].metric(
            label, charts.money(value, view.quote), change, border=True, help=source, height="stretch"
        )
    if len(shown) == 1:
        render_extremes(cols[1:], shown[0], view.quote, candles, history, latest.get(shown[0]))


def render_extremes(
    cols: list[st.delta_generator.DeltaGenerator],
    coin: str,
    quote: str,
    candles: pd.DataFrame,
    history: pd.DataFrame,
    point: PricePointData | None,
) -> None:
    """The highest high and lowest low in the range (with when), and the latest 24 h volume."""
    older = charts.split_history(candles, history)
    moments = [*charts.naive_times(candles["start"]), *charts.naive_times(older["ts"])]
    highs = [*charts.floats(candles["high"]), *charts.floats(older["price"])]
    lows = [*charts.floats(candles["low"]), *charts.floats(older["price"])]
    if highs:
        top, bottom = int(np.nanargmax(highs)), int(np.nanargmin(lows))
        cols[0].metric(
            "High in range",
            charts.money(highs[top], quote),
            border=True,
            help=charts.when(moments[top]),
            height="stretch",
        )
        cols[1].metric(
            "Low in range",
            charts.money(lows[bottom], quote),
            border=True,
            help=charts.when(moments[bottom]),
            height="stretch",
        )
    volume = point.volume_24h if point is not None else None
    if volume is None and not candles.empty:
        volume = candles["volume"].iloc[-1]
    cols[2].metric(
        "24 h volume",
        charts.compact_money(volume, quote),
        border=True,
        help="CoinGecko's rolling 24 h volume.",
        height="stretch",
    )


def render_chart(
    view: View,
    candles: pd.DataFrame,
    history: pd.DataFrame,
    names: Mapping[str, str],
    levels: dict[str, float],
) -> None:
    """The price chart of the view (candles for one coin, a comparison for several), the findings and
    missing marks, and a caption that says what is drawn."""
    coins, quote, interval, log, mode = view.coins, view.quote, view.interval, view.log, view.mode
    notes: list[str] = []
    if len(coins) == 1:
        fig = charts.candles_figure(
            candles,
            quote=quote,
            interval=interval,
            history=history,
            log=log,
            name=names.get(coins[0], coins[0]),
            window=(view.start, view.end),
        )
    else:
        drawn = charts.resolve_mode(mode, levels)
        if mode == "auto":
            spread = charts.spread(levels)
            notes.append(
                f"Auto: rebased to 100 because the prices are {spread:,.0f}× apart (more than 10×)."
                if drawn == "index"
                else f"Auto: prices on one axis ({spread:,.1f}× apart; above 10× they are rebased to 100)."
            )
        if drawn == "multiples":
            fig = charts.multiples_figure(
                candles,
                quote=quote,
                interval=interval,
                history=history,
                log=log,
                coins=coins,
                names=names,
                window=(view.start, view.end),
            )
        else:
            fig = charts.compare_figure(
                candles,
                quote=quote,
                interval=interval,
                history=history,
                mode=drawn,
                log=log,
                names=names,
                coins=coins,
                window=(view.start, view.end),
            )
            if drawn == "index":
                notes.append("Each coin is rebased to 100 at its price when the range starts.")
    marks, severities = data.price_finding_marks(tuple(coins), view.start.date(), view.end.date())
    st.plotly_chart(
        charts.mark_findings(fig, marks, severities=severities), key="prices_main_chart", config=CHART_CONFIG
    )
    if not candles.empty:
        built = " and ".join(charts.SAMPLING_NAMES.get(s, s) for s in sorted(set(candles["sampling"])))
        kind = charts.INTERVAL_NAMES[interval]
        lines = len(coins) > 1 and charts.resolve_mode(mode, levels) != "multiples"
        what = f"{kind} closes" if lines else f"{kind} candles"
        notes.insert(0, f"{what} in {quote.upper()}, from candles built from {built}." if lines
                     else f"{what} in {quote.upper()}, built from {built}.")  # fmt: skip
    older = charts.split_history(candles, history)
    if not older.empty:
        first_candle = candles["start"].min() if not candles.empty else None
        hourly = data.settings().HOURLY_DAYS
        notes.append(
            "Dotted: daily closes (00:00 UTC snapshots) where no candles exist"
            + (f", before {charts.when(first_candle, time=False)}" if first_candle is not None else "")
            + f"; candles are kept for the last {hourly} days."
        )
        if len(coins) == 1 and interval != "1d":
            notes.append("Their 24 h volume is shown on the daily interval only.")
    if (
        charts.missing_buckets(candles, interval)
        or not older.empty
        and charts.missing_price_days(
            older.assign(price_date=pd.to_datetime(older["ts"]).dt.tz_localize(None))
        )
    ):
        notes.append("Red bands and × mark gaps without data.")
    if marks:
        notes.append("▼ and dotted lines mark days named in data-quality findings.")
    notes.append("Times are UTC.")
    st.caption(" ".join(notes))


def render_analytics(coins: list[str], names: Mapping[str, str], start: date, end: date) -> None:
    """Returns, 30-day volatility, drawdown and the correlation of daily returns (daily USD closes)."""
    stats = data.price_stats(tuple(coins), start, end)
    st.caption(
        f"From daily USD closes (00:00 UTC snapshots) {start:%-d %b %Y} – {end:%-d %b %Y}, whatever the "
        "quote above. Volatility: standard deviation of the last 30 daily returns (hover: annualised × √365)."
    )
    if stats.empty:
        st.info("No daily closes in this range.", icon=":material/query_stats:")
        return
    st.dataframe(
        summary(stats, coins, names),
        hide_index=True,
        key="prices_summary",
        height=ui.table_height(len(coins)),
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Daily returns**")
        st.plotly_chart(charts.returns_chart(stats, names, coins), key="prices_returns", config=CHART_CONFIG)
        st.markdown("**Drawdown from the running peak**")
        st.plotly_chart(
            charts.drawdown_chart(stats, names, coins), key="prices_drawdown", config=CHART_CONFIG
        )
    with right:
        st.markdown("**30-day volatility**")
        st.plotly_chart(
            charts.volatility_chart(stats, names, coins), key="prices_volatility", config=CHART_CONFIG
        )
        st.markdown("**Correlation of daily returns**")
        matrix = data.return_correlation(tuple(coins), start, end)
        counts = charts.shared_return_days(stats, coins)
        st.plotly_chart(
            charts.correlation_heatmap(matrix, names, counts), key="prices_correlation", config=CHART_CONFIG
        )
        if len(coins) < 2:
            st.caption("Pick two or more coins to compare their returns.")
        elif matrix.isna().to_numpy().any():
            st.caption("n/a: fewer than 10 days on which both coins have a return; pick a longer range.")


def summary(stats: pd.DataFrame, coins: list[str], names: Mapping[str, str]) -> pd.DataFrame:
    """One row per coin: return over the range, best and worst day, volatility now, deepest drawdown."""
    rows = []
    for coin in coins:
        part = stats[stats["coin_id"] == coin]
        if part.empty:
            continue
        closes, returns = part["close"].to_numpy(dtype=float), part["daily_return"].to_numpy(dtype=float)
        vol = part["volatility_30d"].dropna()
        rows.append(
            {
                "coin": names.get(coin, coin),
                "first close": charts.money(closes[0]),
                "last close": charts.money(closes[-1]),
                "return": charts.percent(closes[-1] / closes[0] - 1),
                "best day": charts.percent(np.nanmax(returns)) if np.isfinite(returns).any() else "–",
                "worst day": charts.percent(np.nanmin(returns)) if np.isfinite(returns).any() else "–",
                "30-day σ (daily)": charts.percent(vol.iloc[-1], signed=False) if len(vol) else "–",
                "annualised σ": charts.percent(vol.iloc[-1] * charts.YEAR_ROOT, 0, signed=False)
                if len(vol)
                else "–",
                "max drawdown": charts.percent(part["drawdown"].min()),
                "days": f"{len(part):,}",
            }
        )
    return pd.DataFrame(rows)


def render_data(rows: pd.DataFrame, names: Mapping[str, str], view: View) -> None:
    """The rows the chart shows, formatted, with their CSV (raw values) and the daily coverage."""
    start, end = view.start, view.end
    candles = int((rows["kind"] == "candle").sum())
    st.caption(
        f"{candles:,} candles and {len(rows) - candles:,} daily snapshots, as drawn. The CSV holds the raw "
        "values (all their digits) with the quote and interval of each row."
    )
    right = st.column_config.TextColumn(alignment="right")
    numbers = ("open", "high", "low", "close", "index (=100)", "volume")
    st.dataframe(
        charts.display_rows(rows, names),
        hide_index=True,
        key="prices_rows",
        column_config=dict.fromkeys(numbers, right),
    )
    stamp = f"{view.quote}_{view.interval}_{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M}"
    st.download_button(
        "Download CSV",
        charts.csv_text(rows).encode(),
        file_name=f"prices_{stamp}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="prices_csv",
    )
    ui.section("Daily coverage", ":material/calendar_month:", "Daily snapshots held and missing per coin.")
    coverage = data.price_coverage(tuple(view.coins), start.date(), end.date())
    coverage["coin_id"] = [names.get(str(c), str(c)) for c in coverage["coin_id"]]
    st.dataframe(
        coverage,
        hide_index=True,
        key="prices_coverage",
        column_config={
            "coin_id": st.column_config.TextColumn("coin"),
            "first_date": st.column_config.DateColumn("first day", format="ddd D MMM YYYY"),
            "last_date": st.column_config.DateColumn("last day", format="ddd D MMM YYYY"),
            "days": ui.count_column("days held"),
            "missing_days": ui.count_column("days missing"),
        },
    )


# ---------------------------------------------------------------------------------------------- page


ui.page_header(
    "Prices",
    ":material/show_chart:",
    "Candles, comparisons and analytics from CoinGecko prices (times in UTC).",
)
names = {c.coingecko_id: c.name for c in data.coins() if c.coingecko_id}
quotes = data.quote_currencies()
read_link(names, quotes)
metrics_slot = st.container()
with st.sidebar:  # the view's controls: the main area is the price's, the chart above the fold
    st.markdown("**Prices view**")
    # COINS, or every coin when it is unset (the scheduler's own default: every enabled coin).
    selected = ui.coin_picker("Coins", names, "prices_coins", data.settings().COINS or list(names))
    earliest = data.price_bounds(tuple(selected))[0] if selected else None
    period, dates = st.container(), st.container()
    ui.keep("prices_quote", "prices_interval", "prices_mode", "prices_log")
    ui.seed("prices_interval", urlstate.default_interval(DEFAULT_PRESET))
    interval = st.segmented_control(
        "Interval",
        urlstate.INTERVALS,
        key="prices_interval",
        required=True,
        format_func=INTERVAL_LABELS.__getitem__,
        help="The length of one candle. A new period picks the interval that suits it.",
    )
    ui.seed("prices_quote", quotes[0])
    if st.session_state["prices_quote"] not in quotes:
        st.session_state["prices_quote"] = quotes[0]
    quote = st.segmented_control("Quote", quotes, key="prices_quote", required=True, format_func=str.upper)
    ui.seed("prices_mode", "auto")
    mode = st.segmented_control(
        "Compare",
        urlstate.COMPARE_MODES,
        key="prices_mode",
        required=True,
        format_func=MODE_LABELS.__getitem__,
        disabled=len(selected) < 2,
        wrap=True,
        help="How several coins are drawn. Auto rebases them to 100 when their prices are over 10× apart.",
    )
    ui.seed("prices_log", False)
    log_scale = st.toggle("Log scale", key="prices_log")
    ui.save("prices_quote", "prices_interval", "prices_mode", "prices_log")
    day_start, day_end, preset = ui.period_picker(
        "prices",
        presets=urlstate.PRICE_PRESETS,
        labels=urlstate.PRICE_PRESET_LABELS,
        earliest=earliest,
        default=DEFAULT_PRESET,
        where=(period, dates),
        on_preset=_preset_chosen,
        on_dates=_dates_chosen,
    )
quote = quote or quotes[0]
interval = interval or urlstate.default_interval(preset)
start, end = window(preset, day_start, day_end, earliest)
ui.keep("prices_tab")
ui.seed("prices_tab", TABS["chart"])
tab_key = next((k for k, label in TABS.items() if label == st.session_state.get("prices_tab")), "chart")
view = View(selected, quote, interval, preset, log_scale, mode or "auto", start, end)
link = {
    "coins": ",".join(selected), "quote": quote, "interval": interval, "preset": preset,
    "tab": tab_key, "log": "1" if log_scale else "0", "mode": mode or "auto",
}  # fmt: skip
if preset == urlstate.CUSTOM:
    link |= {"start": day_start.isoformat(), "end": day_end.isoformat()}
write_link(link)

if not selected:
    st.info("Pick at least one coin.", icon=":material/touch_app:")
    st.stop()
candle_start = data.bucket_start(start, interval)
candles = data.candles(tuple(selected), quote, interval, candle_start, end)
history = data.daily_points(tuple(selected), quote, candle_start.date(), end.date())
history = history[history["ts"] >= pd.Timestamp(candle_start)].reset_index(drop=True)
if candles.empty and history.empty:
    held = sorted({q for c, q in data.candle_quotes() if c in selected})
    if data.price_bounds(tuple(selected))[0] is None and not held:
        ui.empty_state(
            "No prices yet",
            "Prices appear once the CoinGecko ingestion has run.",
            [ui.START_COMMANDS["demo"], ui.START_COMMANDS["prices"]],
        )
    else:
        other = (
            f" Candles exist in {', '.join(q.upper() for q in held)}." if held and quote not in held else ""
        )
        st.info(
            f"No {quote.upper()} prices for these coins in this range. Pick a longer period or another quote."
            + other,
            icon=":material/date_range:",
        )
    st.stop()

series = charts.close_series(candles, history)
levels = {str(c): float(rows["close"].iloc[-1]) for c, rows in series.groupby("coin_id") if len(rows)}
render_metrics(metrics_slot, view, names, candles, history, data.latest_prices(tuple(selected), quote))
chart_tab, analytics_tab, data_tab = st.tabs(list(TABS.values()), key="prices_tab", on_change="rerun")
ui.save("prices_tab")
with chart_tab:
    render_chart(view, candles, history, names, levels)
with analytics_tab:
    render_analytics(selected, names, start.date(), end.date())
with data_tab:
    index = len(selected) > 1 and charts.resolve_mode(view.mode, levels) == "index"
    render_data(charts.price_rows(candles, history, quote=quote, interval=interval, index=index), names, view)
