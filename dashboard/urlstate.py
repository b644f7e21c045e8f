"""Shareable views: parse query-string values into widget values, collecting what had to be ignored.

Pure functions (no Streamlit), so a bad link is a warning and never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

PRESETS: dict[str, int | None] = {"30d": 30, "90d": 90, "1y": 365, "all": None}
CUSTOM = "custom"
EARLIEST_DAY = date(2009, 1, 3)  # the Bitcoin genesis block; nothing older can be a valid range
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _values(params: Mapping[str, Any], name: str) -> list[str]:
    raw = params.get(name)
    items = raw if isinstance(raw, list | tuple) else [raw]
    return [part.strip() for item in items if item for part in str(item).split(",") if part.strip()]


def _day(text: str) -> date | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day >= EARLIEST_DAY else None


def parse_choices(
    params: Mapping[str, Any], name: str, options: Iterable[str], warnings: list[str]
) -> list[str] | None:
    """A comma-separated (or repeated) list restricted to known options; None when absent or all invalid."""
    if name not in params:
        return None
    allowed = set(options)
    values = _values(params, name)
    valid = [v for v in dict.fromkeys(values) if v in allowed]
    bad = [v for v in values if v not in allowed]
    if bad:
        warnings.append(f"{name}: unknown {', '.join(repr(b) for b in bad[:5])}")
    return valid or None


def parse_choice(
    params: Mapping[str, Any], name: str, options: Iterable[str], warnings: list[str]
) -> str | None:
    """One value from the known options."""
    choices = parse_choices(params, name, options, warnings)
    return choices[0] if choices else None


def parse_bool(params: Mapping[str, Any], name: str, warnings: list[str]) -> bool | None:
    """A boolean flag such as log=1 / log=false."""
    if name not in params:
        return None
    text = (_values(params, name) or [""])[0].lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    warnings.append(f"{name}: expected 1/0 or true/false, got {text!r}")
    return None


def parse_int(params: Mapping[str, Any], name: str, warnings: list[str]) -> int | None:
    """A positive integer such as run=123."""
    if name not in params:
        return None
    text = (_values(params, name) or [""])[0]
    if text.isdigit() and int(text) > 0:
        return int(text)
    warnings.append(f"{name}: expected a positive whole number, got {text!r}")
    return None


def parse_range(params: Mapping[str, Any], warnings: list[str], today: date) -> tuple[date, date] | None:
    """start/end as ISO dates, start <= end <= today; None when absent or invalid."""
    if "start" not in params and "end" not in params:
        return None
    start = _day((_values(params, "start") or [""])[0])
    end = _day((_values(params, "end") or [today.isoformat()])[0])
    if start is None or end is None:
        warnings.append("start/end: expected dates as YYYY-MM-DD (2009 or later)")
        return None
    if start > end or start > today:
        warnings.append(f"start/end: {start} .. {end} is not a range up to today")
        return None
    return start, min(end, today)


def parse_period(
    params: Mapping[str, Any],
    warnings: list[str],
    today: date,
    presets: Iterable[str] = PRESETS,
) -> tuple[str | None, tuple[date, date] | None]:
    """The preset and the explicit range of a link; an explicit range makes the preset 'custom'.
    `presets` names the page's presets (the shared 30d / 90d / 1y / all by default)."""
    preset = parse_choice(params, "preset", [*presets, CUSTOM], warnings)
    dates = parse_range(params, warnings, today)
    if dates is not None:
        return CUSTOM, dates
    return (None if preset == CUSTOM else preset), None


# ---------------------------------------------------------------------------------------------- prices

# The Prices page's quick ranges (days back from now; None = everything stored). 30d and 90d keep the
# names of the shared presets, so old links still open the same view.
PRICE_PRESETS: dict[str, int | None] = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "1y": 365, "all": None}
PRICE_PRESET_LABELS = {
    "1d": "1D", "7d": "7D", "30d": "1M", "90d": "3M", "1y": "1Y", "all": "All", CUSTOM: "Custom",
}  # fmt: skip
INTERVALS = ("1h", "4h", "1d", "1w")
# The interval a quick range opens with: about 24 to 200 candles.
DEFAULT_INTERVALS = {"1d": "1h", "7d": "1h", "30d": "4h", "90d": "1d", "1y": "1d", "all": "1w"}
COMPARE_MODES = ("auto", "index", "price", "multiples")
PRICE_TABS = ("chart", "analytics", "data")


def default_interval(preset: str, days: int | None = None) -> str:
    """The interval that suits a quick range, or a custom range of `days` days."""
    if preset in DEFAULT_INTERVALS:
        return DEFAULT_INTERVALS[preset]
    span = days or 90
    for limit, interval in ((3, "1h"), (10, "1h"), (45, "4h"), (400, "1d")):
        if span <= limit:
            return interval
    return "1w"


@dataclass
class PriceLink:
    """What a Prices link asks for; None where the link says nothing valid (the widget keeps its value)."""

    coins: list[str] | None = None
    quote: str | None = None
    interval: str | None = None
    preset: str | None = None
    dates: tuple[date, date] | None = None
    tab: str | None = None
    log: bool | None = None
    mode: str | None = None
    warnings: list[str] = field(default_factory=list)


def parse_price_link(
    params: Mapping[str, Any], *, coins: Iterable[str], quotes: Iterable[str], today: date
) -> PriceLink:
    """Every parameter of a Prices link: coins, quote, interval, preset or start/end, tab, log and mode.

    Values are matched case-insensitively where they are codes (quote, interval, tab, mode); an unknown
    value is dropped with a warning, and a link that names a preset but no interval gets the preset's
    default interval.
    """
    warnings: list[str] = []
    lowered = {
        k: [str(v).lower() for v in (params[k] if isinstance(params[k], list | tuple) else [params[k]])]
        for k in ("quote", "interval", "tab", "mode", "preset")
        if k in params
    }
    link = PriceLink(warnings=warnings)
    link.coins = parse_choices(params, "coins", coins, warnings)
    link.quote = parse_choice(lowered, "quote", [q.lower() for q in quotes], warnings)
    link.interval = parse_choice(lowered, "interval", INTERVALS, warnings)
    link.preset, link.dates = parse_period({**params, **lowered}, warnings, today, PRICE_PRESETS)
    link.tab = parse_choice(lowered, "tab", PRICE_TABS, warnings)
    link.log = parse_bool(params, "log", warnings)
    link.mode = parse_choice(lowered, "mode", COMPARE_MODES, warnings)
    if link.interval is None and link.preset is not None:
        days = None if link.dates is None else (link.dates[1] - link.dates[0]).days + 1
        link.interval = default_interval(link.preset, days)
    return link
