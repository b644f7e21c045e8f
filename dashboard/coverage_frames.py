"""Pure frame helpers of the Coverage page and of the finding marks on the charts (no Streamlit, no I/O).

Inputs are the frames `dashboard.data` builds: price coverage ranges (coin_id, start, end, state, days),
block coverage ranges (coin_symbol, chain, kind held / hole / incomplete, start, end, size, missing) and
stored quality findings (one row per finding, `samples` a list of dicts).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import pandas as pd

GAP_STATES = ("missing", "failed")
GAP_COLUMNS = ["data", "subject", "range", "size", "unit", "state"]
FINDING_COLUMNS = [
    "id", "run_id", "check_name", "severity", "subject", "slice", "observed", "threshold", "samples",
    "created_at",
]  # fmt: skip
SEVERITY_ORDER = {"error": 0, "warn": 1}


# ---------------------------------------------------------------------------------------------- gaps


def gap_rows(prices: pd.DataFrame, blocks: pd.DataFrame) -> pd.DataFrame:
    """One row per gap range (never one per day): missing or failed price days, block holes, and blocks
    whose transactions are incomplete."""
    rows: list[tuple[Any, ...]] = []
    if not prices.empty:
        for r in prices[prices["state"].isin(GAP_STATES)].itertuples(index=False):
            rows.append(("prices", r.coin_id, f"{r.start}..{r.end}", int(r.days), "days", r.state))
    if not blocks.empty:
        for r in blocks[blocks["kind"] == "hole"].itertuples(index=False):
            rows.append(("blocks", r.chain, f"{r.start}..{r.end}", int(r.size), "heights", "missing"))
        for r in blocks[blocks["kind"] == "incomplete"].itertuples(index=False):
            state = "incomplete" if pd.isna(r.missing) else f"incomplete ({int(r.missing):,} tx missing)"
            rows.append(("transactions", r.chain, f"{r.start}..{r.end}", int(r.size), "blocks", state))
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def has_data(prices: pd.DataFrame, blocks: pd.DataFrame) -> bool:
    """Whether anything is stored at all (a price day present, or a block height held)."""
    held_price = not prices.empty and bool((prices["state"] == "present").any())
    held_block = not blocks.empty and bool((blocks["kind"] == "held").any())
    return held_price or held_block


# ---------------------------------------------------------------------------------------------- findings


def findings_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Stored findings as a frame, newest first (an empty frame keeps the columns)."""
    frame = pd.DataFrame(list(rows), columns=FINDING_COLUMNS)
    return frame.sort_values("id", ascending=False, ignore_index=True) if not frame.empty else frame


def filter_findings(
    findings: pd.DataFrame, severities: Iterable[str] = (), subjects: Iterable[str] = ()
) -> pd.DataFrame:
    """Findings of some severities and subjects (an empty choice keeps all)."""
    keep = pd.Series(True, index=findings.index)
    if severities := list(severities):
        keep &= findings["severity"].isin(severities)
    if subjects := list(subjects):
        keep &= findings["subject"].isin(subjects)
    return findings[keep].reset_index(drop=True)


def _value_text(value: Any) -> str:
    return "" if value is None else str(value)


def sample_text(samples: list[dict[str, Any]] | None) -> str:
    """Samples in one cell: 'day=2024-01-02, price=5; day=…'."""
    return "; ".join(
        ", ".join(f"{k}={_value_text(v)}" for k, v in sample.items()) for sample in samples or []
    )


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    """The columns the findings table shows, samples as text."""
    table = findings[["created_at", "severity", "check_name", "subject", "slice", "observed", "threshold"]]
    return table.assign(samples=[sample_text(s) for s in findings["samples"]])


def sample_rows(findings: pd.DataFrame) -> pd.DataFrame:
    """One row per sample row of the findings, with the finding it belongs to (values as text)."""
    rows = [
        {"finding": int(f.id), "check_name": f.check_name, "subject": f.subject}
        | {str(k): _value_text(v) for k, v in sample.items()}
        for f in findings.itertuples(index=False)
        for sample in (f.samples or [])
    ]
    return pd.DataFrame(rows, columns=None if rows else ["finding", "check_name", "subject"])


def _worst(a: str | None, b: str) -> str:
    return b if a is None or SEVERITY_ORDER.get(b, 9) < SEVERITY_ORDER.get(a, 9) else a


def _as_key(value: Any, key: str) -> date | int | None:
    try:
        return date.fromisoformat(str(value)[:10]) if key == "day" else int(value)
    except (TypeError, ValueError):
        return None


def finding_marks(
    findings: pd.DataFrame,
    key: str,
    *,
    low: date | int | None = None,
    high: date | int | None = None,
) -> tuple[dict[Any, list[str]], dict[Any, str]]:
    """The days (`key="day"`) or heights (`key="height"`) named in the findings' samples, within
    [low, high]: value -> hover labels ('bitcoin: price_move (warn)'), and value -> worst severity."""
    marks: dict[Any, list[str]] = {}
    severities: dict[Any, str] = {}
    for f in findings.itertuples(index=False):
        for sample in f.samples or []:
            value = _as_key(sample.get(key), key) if key in sample else None
            if value is None or (low is not None and value < low) or (high is not None and value > high):
                continue
            label = f"{f.subject}: {f.check_name} ({f.severity})"
            if label not in marks.setdefault(value, []):
                marks[value].append(label)
            severities[value] = _worst(severities.get(value), str(f.severity))
    return marks, severities


def by_day(
    marks: dict[int, list[str]], severities: dict[int, str], days: dict[int, date]
) -> tuple[dict[date, list[str]], dict[date, str]]:
    """Height marks moved onto the UTC day of each height's block (heights without a block are dropped)."""
    day_marks: dict[date, list[str]] = {}
    day_levels: dict[date, str] = {}
    for height, labels in marks.items():
        if height not in days:
            continue
        day = days[height]
        day_marks.setdefault(day, []).extend(f"{label} @ {height:,}" for label in labels)
        day_levels[day] = _worst(day_levels.get(day), severities.get(height, "warn"))
    return day_marks, day_levels
