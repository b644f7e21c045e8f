"""Reusable widgets and presentation helpers shared by the pages."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pandas as pd
import streamlit as st

from dashboard import data, gate, urlstate
from dashboard.urlstate import CUSTOM, EARLIEST_DAY, PRESETS

# The colours used here, of those st.badge and the :color[...] markdown accept.
BadgeColor = Literal["green", "orange", "red", "blue", "gray"]

LEVEL_COLORS: dict[str, BadgeColor] = {"ok": "green", "warn": "orange", "fail": "red", "unknown": "gray"}
LEVEL_ICONS = {
    "ok": ":material/check_circle:",
    "warn": ":material/warning:",
    "fail": ":material/error:",
    "unknown": ":material/help:",
}
STATUS_STYLE: dict[str, tuple[BadgeColor, str]] = {
    "success": ("green", ":material/check_circle:"),
    "done": ("green", ":material/check_circle:"),
    "partial": ("orange", ":material/warning:"),
    "failed": ("red", ":material/error:"),
    "running": ("blue", ":material/progress_activity:"),
    "pending": ("gray", ":material/schedule:"),
    "up": ("green", ":material/check_circle:"),
    "stale": ("orange", ":material/warning:"),
    "down": ("red", ":material/error:"),
    "stopped": ("gray", ":material/stop_circle:"),  # a worker that signed off cleanly: nothing is wrong
    "provisional": ("orange", ":material/hourglass_top:"),
    "final": ("green", ":material/lock:"),
    "error": ("red", ":material/error:"),
    "warn": ("orange", ":material/warning:"),
    "warning": ("orange", ":material/warning:"),
    "open": ("red", ":material/error:"),
    "resolved": ("green", ":material/check_circle:"),
    "sent": ("green", ":material/check_circle:"),
    "sending": ("blue", ":material/progress_activity:"),
}
# The status text of a failed run that a later run made good: not red, it needs nobody any more.
MADE_GOOD = "failed · resolved by run #{run}"
PRESET_LABELS = {"30d": "30 days", "90d": "90 days", "1y": "1 year", "all": "All", CUSTOM: "Custom"}
START_COMMANDS = {
    "demo": "crypto-pipeline up --demo",
    "prices": "crypto-pipeline ingest coingecko",
    "blocks": "crypto-pipeline ingest blockchair",
    "scheduler": "crypto-pipeline run",
    "simulator": "crypto-pipeline simulate",
}


# ---------------------------------------------------------------------------------------------- text

# Every ASCII punctuation character: CommonMark lets a backslash make any of them literal, which covers
# emphasis, links and images, HTML-ish tags, headings, lists, tables, `$` math, `:name[..]` directives,
# `:material/..:` icons and the backslash itself.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GFM autolinks (`http://..`, `www.`, `user@host.tld`) and Streamlit's `:streamlit:` logo are found in
# the text *after* parsing, where the escapes are already gone, so they are broken with an invisible word
# joiner instead.
_AUTOLINK_TRIGGERS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)|(?<=:)(?=streamlit:)", re.IGNORECASE)
WORD_JOINER = "\u2060"
# Four leading spaces (or a tab) start a code block; rendered markdown collapses indentation anyway.
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)


def literal(text: object) -> str:
    """Text from outside (a source, the run log, a link, the database) made safe to embed in any
    Streamlit element that renders markdown (markdown, error/warning/info/success, caption, title,
    subheader, toast, and the labels of metrics, expanders, buttons and segmented controls): it then
    shows exactly as written, with no link, image, formatting, math, colour, icon or emoji.

    Never pass its result to elements that are already literal (st.text, st.code, st.json, dataframe
    cells, multiselect/selectbox options): they would show the backslashes. And never put an emoji
    shortcode (`:smile:`) of our own in the same element: Streamlit loads its emoji plugin when it sees
    one, and that plugin would also turn the `:name:` words of this text into emoji. Leading spaces of
    each line are dropped (markdown would show them collapsed, or as a code block).
    """
    text = _AUTOLINK_TRIGGERS.sub(WORD_JOINER, _INDENT.sub("", str(text)))
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


# ---------------------------------------------------------------------------------------------- frame


def page_header(title: str, icon: str, caption: str) -> None:
    """The page title with its icon, a one-line explanation and, for simulated data, the notice."""
    st.title(f"{icon} {title}")
    st.caption(caption)
    simulated_banner(data.settings().SIMULATED_DATA)


def section(title: str, icon: str, caption: str | None = None) -> None:
    """A section heading with an optional caption."""
    st.subheader(f"{icon} {title}")
    if caption:
        st.caption(caption)


def simulated_banner(simulated: bool) -> None:
    """The notice shown on every page when the data comes from the local simulator."""
    if simulated:
        st.warning(
            "**Simulated data.** Prices, blocks and transactions come from the local API simulator "
            "(SIMULATED_DATA=true); they are not real market or chain data.",
            icon=":material/science:",
        )


def sidebar_badges(
    *,
    simulated: bool,
    read_only: bool,
    dialect: str,
    ok: bool,
    revision: str | None,
    replica_lag: float | None = None,
) -> None:
    """Data-source, database and access badges in the sidebar (never the URL or any secret); with a
    read replica, how far the data shown trails the primary."""
    with st.sidebar:
        st.caption("crypto-pipeline")
        if simulated:
            st.badge("Simulated data", icon=":material/science:", color="orange")
        else:
            st.badge("Live sources", icon=":material/cloud_done:", color="green")
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(dialect, dialect)
        if ok:
            st.badge(f"{name} · schema {revision or 'none'}", icon=":material/database:", color="blue")
        else:
            st.badge(f"{name} unreachable", icon=":material/database_off:", color="red")
        if replica_lag is not None:
            # Lag is what an analyst must know before trusting "latest": a few seconds is normal.
            text, icon = f"Replica · lag {replica_lag:,.1f} s", ":material/dns:"
            if replica_lag < 30:
                st.badge(text, icon=icon, color="blue")
            else:
                st.badge(text, icon=icon, color="orange" if replica_lag < 300 else "red")
        if read_only:
            st.badge("Read-only", icon=":material/lock:", color="gray")


def host_refusal(host: str | None) -> None:
    """The whole page for a Host header off the allow-list (gate.host_allowed): why, and the fix."""
    name = literal(host or "")
    st.error(
        f"**This dashboard does not answer to the host name {name}.** Open it at the address it was "
        "started with (for example `http://localhost:<port>`); to serve it under this name, add the name to "
        "DASHBOARD_ALLOWED_HOSTS. (Refusing unknown names stops other web sites from reaching a local "
        "dashboard through DNS rebinding.)",
        icon=":material/gpp_bad:",
    )


def access_notice(access: gate.Access) -> None:
    """Why write actions are off when the dashboard is reachable from other machines, and how to turn
    them on (DASHBOARD_READ_ONLY needs no notice: someone chose it, and the sidebar says so; nor does a
    session whose role decides: each page says what that role may not do)."""
    if access.writes or access.read_only or not access.exposed or access.role is not None:
        return
    if access.login:
        st.warning(
            "**Log in to rerun runs or fill gaps.** This dashboard is reachable from other machines, so "
            "its write actions need a logged-in user.",
            icon=":material/lock:",
        )
        st.button("Log in", key="access_login", icon=":material/login:", on_click=st.login)
        return
    where = "every interface" if access.bound is None else literal(access.bound)
    st.warning(
        f"**Write actions are off.** This dashboard listens on {where}, which other machines can reach, "
        "and no login protects it, so rerun, run here and fill gaps are disabled. To enable them, put an "
        "authenticating reverse proxy in front and set `DASHBOARD_TRUSTED_AUTH_PROXY=true`, configure "
        "Streamlit's login (`[auth]` in `.streamlit/secrets.toml`), or bind to 127.0.0.1 "
        "(`crypto-pipeline up` does by default).",
        icon=":material/lock:",
    )


def empty_state(title: str, body: str, commands: Iterable[str] = ()) -> None:
    """A box that tells a new user what to do next, with the commands to run."""
    lines = [f"**{title}**", "", body]
    cmds = list(commands)
    if cmds:
        lines += ["", "Run " + " or ".join(f"`{c}`" for c in cmds) + "."]
    st.info("\n".join(lines), icon=":material/lightbulb:")


# ---------------------------------------------------------------------------------------------- status


def status_badge(status: str, *, label: str | None = None) -> None:
    """A coloured badge for a run, request or worker status."""
    color, icon = STATUS_STYLE.get(status, ("gray", ":material/help:"))
    st.badge(label or status, icon=icon, color=color)


STATUS_TEXT_COLORS = {"green": "#21c354", "orange": "#ffa421", "red": "#ff4b4b", "blue": "#1c83e1"}


def status_cells(
    frame: pd.DataFrame, column: str = "status", label: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Show a status column as a coloured tag (a read-only multiselect column, no Styler: it stays fast
    on hundreds of rows); returns the frame to show and its column_config entry. Values without a style
    of their own (such as a made-good failure, `run_statuses`) are grey."""
    extra = [v for v in dict.fromkeys(str(v) for v in frame[column]) if v not in STATUS_STYLE]
    options = [*STATUS_STYLE, *extra]
    colors = [STATUS_TEXT_COLORS.get(STATUS_STYLE[o][0], "#808495") if o in STATUS_STYLE else "#808495"
              for o in options]  # fmt: skip
    tags = pd.Series([[str(v)] for v in frame[column]], index=frame.index, dtype=object)
    shown = frame.assign(**{column: tags})
    config = st.column_config.MultiselectColumn(label or column, options=options, color=colors)
    return shown, {column: config}


def run_statuses(frame: pd.DataFrame) -> list[str]:
    """Each run's status as shown: "failed · resolved by run #N" for a failure a later run made good."""
    made_good = (
        frame["resolved_by_run_id"] if "resolved_by_run_id" in frame else pd.Series(pd.NA, frame.index)
    )
    return [
        MADE_GOOD.format(run=int(by)) if status == "failed" and pd.notna(by) else str(status)
        for status, by in zip(frame["status"], made_good, strict=True)
    ]


def run_ref(run_id: object) -> str:
    """A run id as "#123", or "" when there is none (a cell that would otherwise say None or <NA>)."""
    return "" if run_id is None or pd.isna(run_id) else f"#{int(run_id)}"  # type: ignore[call-overload]


# Run tables: the key columns first (which run, when, how it ended, what it was about, why it failed),
# then its figures; human names; counts with thousands separators; an error class never cut off.
RUN_COLUMN_ORDER = (
    "id", "started_at", "status", "source", "data_type", "coin", "error_class", "error_message", "trigger",
    "records_fetched", "records_inserted", "records_updated", "records_rejected", "requests_made", "retries",
    "duration_seconds", "parent_run_id", "caused_by", "rerun",
)  # fmt: skip
# A narrow table of failures: why it failed comes right after when, so that it is never cut off.
FAILURE_COLUMN_ORDER = ("id", "started_at", "error_class", "coin", "source", "data_type", "error_message")
MISSING = "–"  # what a table shows for a missing value (st.dataframe's placeholder), never "None"


def count_column(label: str) -> Any:
    """A whole-number column with thousands separators."""
    return st.column_config.NumberColumn(label, format="localized")


def run_column_config() -> dict[str, Any]:
    """The column_config of a frame of runs (`data.runs`, `data.latest_failures`)."""
    return {
        "id": st.column_config.NumberColumn("run", format="#%d", width="small"),
        "started_at": st.column_config.DatetimeColumn("started (UTC)", format="MMM D, HH:mm:ss"),
        "data_type": st.column_config.TextColumn("data type"),
        "error_class": st.column_config.TextColumn("error class"),
        "error_message": st.column_config.TextColumn("error", width="large"),
        "records_fetched": count_column("fetched"),
        "records_inserted": count_column("inserted"),
        "records_updated": count_column("updated"),
        "records_rejected": count_column("rejected"),
        "requests_made": count_column("requests"),
        "retries": count_column("retries"),
        "duration_seconds": st.column_config.NumberColumn("duration", format="%.1f s"),
        "parent_run_id": st.column_config.TextColumn("rerun of"),
        "caused_by": st.column_config.TextColumn("requested by", help="Who asked for this run (audit log)"),
        "rerun": st.column_config.TextColumn("open rerun"),
    }


def runs_for_table(frame: pd.DataFrame, order: Sequence[str] = RUN_COLUMN_ORDER) -> pd.DataFrame:
    """A frame of runs ready to show: status text that says when a failure was made good, run references
    as "#N", empty text instead of None, and only the columns of `order`, in that order."""
    shown = frame.assign(status=run_statuses(frame)) if "status" in frame else frame.copy()
    if "parent_run_id" in shown:
        shown["parent_run_id"] = [run_ref(v) for v in shown["parent_run_id"]]
    for column in ("coin", "error_class", "error_message", "trigger", "caused_by"):
        if column in shown:
            shown[column] = shown[column].fillna("").astype(str)
    return shown[[c for c in order if c in shown.columns]]


def table_height(rows: int, most: int = 360) -> int:
    """A table height that fits the rows (no empty grid under one row), capped."""
    return min(most, 38 + 35 * max(rows, 1))


def freshness_color(level: str) -> BadgeColor:
    """Streamlit colour name of a freshness level (green / orange / red / gray)."""
    return LEVEL_COLORS.get(level, "gray")


def freshness_card(coin: str, what: str, value: str, level: str, detail: str) -> None:
    """One freshness measure: coin, value coloured by level, detail (coin and detail quote stored
    names, so they are shown literally)."""
    color = freshness_color(level)
    with st.container(border=True):
        st.markdown(f"**{literal(coin)}** · {what}")
        st.markdown(f"#### :{color}[{literal(value)}]")
        st.badge(level, icon=LEVEL_ICONS.get(level), color=color)
        st.caption(literal(detail))


# ---------------------------------------------------------------------------------------------- formatting


def utc_today() -> date:
    """Today's date in UTC."""
    return datetime.now(UTC).date()


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """'42 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if moment is None:
        return "never"
    seconds = max(((now or datetime.now(UTC)) - moment).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def usd(value: float | None) -> str:
    """A USD amount with a sensible precision."""
    if value is None or pd.isna(value):
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.6f}"


def size_text(size: int | None) -> str:
    """Bytes as kB / MB / GB."""
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"


# ---------------------------------------------------------------------------------------------- state


def seed(key: str, value: Any) -> None:
    """Give a widget its initial value once (widgets then own it; never pass a default as well)."""
    if key not in st.session_state:
        st.session_state[key] = value


def keep(*keys: str) -> None:
    """Restore widget values saved by `save` (Streamlit drops a widget's state on a page switch)."""
    for key in keys:
        if key not in st.session_state and f"_kept_{key}" in st.session_state:
            st.session_state[key] = st.session_state[f"_kept_{key}"]


def save(*keys: str) -> None:
    """Remember widget values so that `keep` can restore them when the user comes back to the page."""
    for key in keys:
        if key in st.session_state:
            st.session_state[f"_kept_{key}"] = st.session_state[key]


# ---------------------------------------------------------------------------------------------- pickers


def preset_range(preset: str, earliest: date | None, today: date) -> tuple[date, date]:
    """The dates a preset stands for ('all' starts at the earliest stored day)."""
    days = PRESETS.get(preset)
    if days is None:
        return (earliest or today - timedelta(days=364)), today
    return today - timedelta(days=days - 1), today


def _to_custom(preset_key: str) -> None:
    st.session_state[preset_key] = CUSTOM


def date_range_picker(key: str, *, earliest: date | None, default: str = "90d") -> tuple[date, date, str]:
    """Preset buttons (30d / 90d / 1y / all) plus a date range; editing the dates selects 'custom'."""
    preset_key, range_key = f"{key}_preset", f"{key}_range"
    today = utc_today()
    keep(preset_key, range_key)
    seed(preset_key, default)
    preset = st.session_state[preset_key] or default
    if preset != CUSTOM or range_key not in st.session_state:
        st.session_state[range_key] = preset_range(preset if preset != CUSTOM else default, earliest, today)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    left.segmented_control(
        "Period", [*PRESETS, CUSTOM], key=preset_key, required=True, format_func=PRESET_LABELS.__getitem__
    )
    right.date_input(
        "Dates (UTC)",
        key=range_key,
        min_value=EARLIEST_DAY,
        max_value=today,
        on_change=_to_custom,
        args=(preset_key,),
    )
    save(preset_key, range_key)
    chosen = tuple(st.session_state[range_key])
    start, end = (chosen[0], chosen[-1]) if chosen else preset_range(default, earliest, today)
    return start, end, st.session_state[preset_key] or default


def chain_picker(key: str) -> str | None:
    """The chain to show (its symbol, also the unit of its amounts), from `?chain=` once per session."""
    chains = {c.symbol: c for c in data.coins() if c.blockchair_chain}
    if not chains:
        return None
    if key not in st.session_state:
        by_name = {c.blockchair_chain: s for s, c in chains.items() if c.blockchair_chain}
        by_name |= {s.lower(): s for s in chains}
        params = {k: st.query_params.get_all(k) for k in st.query_params}
        warnings: list[str] = []
        chosen = urlstate.parse_choice(params, "chain", by_name, warnings)
        st.session_state[key] = by_name[chosen] if chosen else next(iter(chains))
        if warnings:  # they quote the link's values, which anyone can write
            st.warning("Ignored link parameter " + literal("; ".join(warnings)), icon=":material/link_off:")
    # Segmented-control options render markdown (multiselect options do not): names are escaped here only.
    return st.segmented_control(
        "Chain", list(chains), key=key, required=True, format_func=lambda s: literal(chains[s].name)
    )


def coin_picker(label: str, options: Mapping[str, str], key: str, default: Sequence[str]) -> list[str]:
    """A multiselect of coins (id -> display name), initialised once to `default`."""
    keep(key)
    seed(key, [c for c in default if c in options])
    choice = st.multiselect(label, list(options), key=key, format_func=lambda c: options.get(c, c))
    save(key)
    return choice


def choose_row(key: str, row_id: Any) -> None:
    """Choose the row of a `selectable_table` by id from outside the table (a link, a button): the table
    is drawn anew with that row selected, so a row the user had selected before cannot win over it."""
    st.session_state[f"{key}_selected"] = row_id
    st.session_state.pop(f"{key}_selected_from", None)
    st.session_state[f"{key}_picks"] = st.session_state.get(f"{key}_picks", 0) + 1


def selectable_table(
    frame: pd.DataFrame, *, id_column: str, key: str, status_column: str | None = None, **dataframe_args: Any
) -> Any | None:
    """A single-row-select table that remembers the selected row's **id**, not its position.

    The widget key carries a digest of the ids shown, so when the data changes the old selection cannot
    silently land on another row (selections are positional); the chosen id stays until the user picks
    another row or clears the selection. A new table starts with the chosen id's row selected, wherever
    it now is (also when a link chose it).
    """
    ids = frame[id_column].tolist()
    picks = st.session_state.get(f"{key}_picks", 0)  # a new table after each `choose_row`
    table_key = f"{key}_{hashlib.sha1(repr((ids, picks)).encode()).hexdigest()[:10]}"
    st.session_state[f"{key}_table_key"] = table_key
    dataframe_args.setdefault("height", table_height(len(frame)))
    chosen = st.session_state.get(f"{key}_selected")
    if chosen in ids:
        dataframe_args.setdefault(
            "selection_default", {"selection": {"rows": [ids.index(chosen)], "columns": []}}
        )
    if status_column:
        frame, config = status_cells(frame, status_column)
        dataframe_args["column_config"] = {**dataframe_args.get("column_config", {}), **config}
    event = st.dataframe(
        frame,
        key=table_key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        **dataframe_args,
    )
    rows = event.selection.rows
    if rows and rows[0] < len(ids):
        st.session_state[f"{key}_selected"] = ids[rows[0]]
        st.session_state[f"{key}_selected_from"] = table_key
    elif st.session_state.get(f"{key}_selected_from") == table_key:
        st.session_state.pop(f"{key}_selected", None)  # the user cleared the selection in this table
        st.session_state.pop(f"{key}_selected_from", None)
    return st.session_state.get(f"{key}_selected")


# ---------------------------------------------------------------------------------------------- periods


def window_dates(
    preset: str, presets: Mapping[str, int | None], earliest: date | None, today: date
) -> tuple[date, date]:
    """The days a quick range covers when it means "the last N x 24 hours" (1D: yesterday and today;
    'all' from the earliest stored day)."""
    days = presets.get(preset)
    if days is None:
        return (earliest or today - timedelta(days=365)), today
    return today - timedelta(days=days), today


def _period_changed(preset_key: str, on_preset: Any) -> None:
    if on_preset is not None:
        on_preset(st.session_state.get(preset_key))


def _dates_changed(preset_key: str, range_key: str, on_dates: Any) -> None:
    st.session_state[preset_key] = CUSTOM
    chosen = tuple(st.session_state.get(range_key) or ())
    if on_dates is not None and len(chosen) == 2:
        on_dates(chosen[0], chosen[1])


def period_picker(
    key: str,
    *,
    presets: Mapping[str, int | None],
    labels: Mapping[str, str],
    earliest: date | None,
    default: str,
    where: tuple[Any, Any] | None = None,
    on_preset: Any = None,
    on_dates: Any = None,
) -> tuple[date, date, str]:
    """Quick-range buttons (the page's `presets`, shown with `labels`) plus a date range; editing the
    dates selects 'custom'. `where` places the two widgets (two columns); `on_preset(preset)` and
    `on_dates(start, end)` run when the user changes them (before the rerun), e.g. to pick an interval."""
    preset_key, range_key = f"{key}_preset", f"{key}_range"
    today = utc_today()
    keep(preset_key, range_key)
    seed(preset_key, default)
    preset = st.session_state[preset_key] or default
    if preset != CUSTOM or range_key not in st.session_state:
        st.session_state[range_key] = window_dates(
            preset if preset != CUSTOM else default, presets, earliest, today
        )
    left, right = where or st.columns([3, 2], vertical_alignment="bottom")
    left.segmented_control(
        "Period", [*presets, CUSTOM], key=preset_key, required=True, format_func=lambda p: labels.get(p, p),
        on_change=_period_changed, args=(preset_key, on_preset),
    )  # fmt: skip
    right.date_input(
        "Dates (UTC)", key=range_key, min_value=EARLIEST_DAY, max_value=today, on_change=_dates_changed,
        args=(preset_key, range_key, on_dates),
    )  # fmt: skip
    save(preset_key, range_key)
    chosen = tuple(st.session_state[range_key])
    start, end = (chosen[0], chosen[-1]) if chosen else window_dates(default, presets, earliest, today)
    return start, end, st.session_state[preset_key] or default
