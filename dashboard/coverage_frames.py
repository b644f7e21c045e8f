"""Pure frame helpers of the Coverage page and of the finding marks on the charts (no Streamlit, no I/O).

Inputs are the frames `dashboard.data` builds: price coverage ranges (coin_id, start, end, state, days),
block coverage ranges (coin_symbol, chain, kind held / hole / incomplete, start, end, size, missing) and
stored quality findings (one row per finding, `samples` a list of dicts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any, Literal, Protocol, SupportsInt, TypeVar, cast, overload

import pandas as pd

GAP_STATES = ("missing", "failed")
GAP_COLUMNS = ["data", "subject", "range", "size", "unit", "state"]
FINDING_COLUMNS = [
    "id", "run_id", "check_name", "severity", "subject", "slice", "observed", "threshold", "samples",
    "created_at",
]  # fmt: skip
SEVERITY_ORDER = {"error": 0, "warn": 1}

# The rows of the input frames as `itertuples(index=False)` yields them. pandas-stubs types every field of
# such a row as "any scalar"; these name the columns read here and what they hold (counts come back as
# numpy integers, hence SupportsInt).


class PriceRangeRow(Protocol):
    """A row of the price coverage ranges: one coin's run of days in one state."""

    coin_id: str
    start: date
    end: date
    state: str
    days: SupportsInt


class BlockRangeRow(Protocol):
    """A row of the block coverage ranges: one chain's run of heights held, missing or incomplete."""

    chain: str
    kind: str
    start: SupportsInt
    end: SupportsInt
    size: SupportsInt
    missing: float  # transactions missing from an incomplete run; NaN when unknown


class FindingRow(Protocol):
    """A row of `findings_frame`: one stored quality finding with its sample rows."""

    id: SupportsInt
    check_name: str
    severity: str
    subject: str
    samples: list[dict[str, Any]] | None


def price_range_rows(frame: pd.DataFrame) -> Iterator[PriceRangeRow]:
    """Iterate a price coverage frame with its columns typed (see PriceRangeRow)."""
    return cast(Iterator[PriceRangeRow], frame.itertuples(index=False))


def block_range_rows(frame: pd.DataFrame) -> Iterator[BlockRangeRow]:
    """Iterate a block coverage frame with its columns typed (see BlockRangeRow)."""
    return cast(Iterator[BlockRangeRow], frame.itertuples(index=False))


def finding_rows(frame: pd.DataFrame) -> Iterator[FindingRow]:
    """Iterate a findings frame with its columns typed (see FindingRow)."""
    return cast(Iterator[FindingRow], frame.itertuples(index=False))


# ---------------------------------------------------------------------------------------------- gaps


def gap_rows(prices: pd.DataFrame, blocks: pd.DataFrame) -> pd.DataFrame:
    """One row per gap range (never one per day): missing or failed price days, block holes, and blocks
    whose transactions are incomplete."""
    rows: list[tuple[Any, ...]] = []
    if not prices.empty:
        for r in price_range_rows(prices[prices["state"].isin(GAP_STATES)]):
            rows.append(("prices", r.coin_id, f"{r.start}..{r.end}", int(r.days), "days", r.state))
    if not blocks.empty:
        for b in block_range_rows(blocks[blocks["kind"] == "hole"]):
            rows.append(("blocks", b.chain, f"{b.start}..{b.end}", int(b.size), "heights", "missing"))
        for b in block_range_rows(blocks[blocks["kind"] == "incomplete"]):
            state = "incomplete" if pd.isna(b.missing) else f"incomplete ({int(b.missing):,} tx missing)"
            rows.append(("transactions", b.chain, f"{b.start}..{b.end}", int(b.size), "blocks", state))
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
        for f in finding_rows(findings)
        for sample in (f.samples or [])
    ]
    return pd.DataFrame(rows, columns=None if rows else ["finding", "check_name", "subject"])


def _worst(a: str | None, b: str) -> str:
    return b if a is None or SEVERITY_ORDER.get(b, 9) < SEVERITY_ORDER.get(a, 9) else a


MarkKey = TypeVar("MarkKey", date, int)  # where a finding mark sits: a day, or a block height


def _as_day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except (TypeError, ValueError):
        return None


def _as_height(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@overload
def finding_marks(
    findings: pd.DataFrame, key: Literal["day"], *, low: date | None = None, high: date | None = None
) -> tuple[dict[date, list[str]], dict[date, str]]: ...


@overload
def finding_marks(
    findings: pd.DataFrame, key: Literal["height"], *, low: int | None = None, high: int | None = None
) -> tuple[dict[int, list[str]], dict[int, str]]: ...


def finding_marks(
    findings: pd.DataFrame,
    key: Literal["day", "height"],
    *,
    low: date | int | None = None,
    high: date | int | None = None,
) -> tuple[dict[date, list[str]], dict[date, str]] | tuple[dict[int, list[str]], dict[int, str]]:
    """The days (`key="day"`) or heights (`key="height"`) named in the findings' samples, within
    [low, high]: value -> hover labels ('bitcoin: price_move (warn)'), and value -> worst severity."""
    # The overloads pair the key with the type of its bounds.
    if key == "day":
        return _marks(findings, key, _as_day, cast("date | None", low), cast("date | None", high))
    return _marks(findings, key, _as_height, cast("int | None", low), cast("int | None", high))


def _marks(
    findings: pd.DataFrame,
    key: str,
    parse: Callable[[Any], MarkKey | None],
    low: MarkKey | None,
    high: MarkKey | None,
) -> tuple[dict[MarkKey, list[str]], dict[MarkKey, str]]:
    marks: dict[MarkKey, list[str]] = {}
    severities: dict[MarkKey, str] = {}
    for f in finding_rows(findings):
        for sample in f.samples or []:
            value = parse(sample.get(key)) if key in sample else None
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
