"""Shareable views: parse query-string values into widget values, collecting what had to be ignored.

Pure functions (no Streamlit), so a bad link is a warning and never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    params: Mapping[str, Any], warnings: list[str], today: date
) -> tuple[str | None, tuple[date, date] | None]:
    """The preset and the explicit range of a link; an explicit range makes the preset 'custom'."""
    preset = parse_choice(params, "preset", [*PRESETS, CUSTOM], warnings)
    dates = parse_range(params, warnings, today)
    if dates is not None:
        return CUSTOM, dates
    return (None if preset == CUSTOM else preset), None
