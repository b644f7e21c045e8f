"""`dashboard.coverage_frames`: gap rows, findings filters, sample rows and finding marks (pure functions)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from dashboard import coverage_frames as cf

D = date(2024, 3, 1)


def price_ranges() -> pd.DataFrame:
    rows = [
        ("bitcoin", D, D + timedelta(days=9), "present", 10),
        ("bitcoin", D + timedelta(days=10), D + timedelta(days=12), "missing", 3),
        ("bitcoin", D + timedelta(days=13), D + timedelta(days=13), "failed", 1),
        ("bitcoin", D + timedelta(days=14), D + timedelta(days=20), "unavailable", 7),
    ]
    return pd.DataFrame(rows, columns=["coin_id", "start", "end", "state", "days"])


def block_ranges() -> pd.DataFrame:
    rows = [
        ("BTC", "bitcoin", "held", 100, 199, 100, None),
        ("BTC", "bitcoin", "hole", 200, 223, 24, None),
        ("BTC", "bitcoin", "held", 224, 300, 77, None),
        ("BTC", "bitcoin", "incomplete", 295, 300, 6, 1200),
    ]
    return pd.DataFrame(rows, columns=["coin_symbol", "chain", "kind", "start", "end", "size", "missing"])


def finding(id_: int, check: str, severity: str, subject: str, slice_: str, samples: list[dict]) -> dict:
    return {
        "id": id_, "run_id": 7, "check_name": check, "severity": severity, "subject": subject,
        "slice": slice_, "observed": f"{len(samples)} rows", "threshold": "> 0", "samples": samples,
        "created_at": datetime(2024, 3, 2, tzinfo=UTC),
    }  # fmt: skip


def findings() -> pd.DataFrame:
    return cf.findings_frame(
        [
            finding(1, "price_move", "warn", "bitcoin", "2024-03-01..2024-03-05",
                    [{"day": "2024-03-02", "price": "9"}, {"day": "2024-03-04", "price": "1"}]),
            finding(3, "non_positive_value", "error", "bitcoin", "2024-03-04..2024-03-04",
                    [{"day": "2024-03-04", "price": "0", "volume": None}]),
            finding(2, "non_positive_size", "error", "BTC", "250..260", [{"height": 255, "size": 0}]),
            finding(4, "hash_at_two_heights", "error", "BTC", "250..260", [{"hash": "ab", "heights": 2}]),
        ]
    )  # fmt: skip


def test_gap_rows_are_ranges_of_every_kind():
    gaps = cf.gap_rows(price_ranges(), block_ranges())
    assert gaps.values.tolist() == [
        ["prices", "bitcoin", f"{D + timedelta(days=10)}..{D + timedelta(days=12)}", 3, "days", "missing"],
        ["prices", "bitcoin", f"{D + timedelta(days=13)}..{D + timedelta(days=13)}", 1, "days", "failed"],
        ["blocks", "bitcoin", "200..223", 24, "heights", "missing"],
        ["transactions", "bitcoin", "295..300", 6, "blocks", "incomplete (1,200 tx missing)"],
    ]
    empty = cf.gap_rows(price_ranges().iloc[0:0], block_ranges().iloc[0:0])
    assert empty.empty
    assert list(empty.columns) == cf.GAP_COLUMNS


def test_has_data_needs_a_present_day_or_a_held_height():
    prices, blocks = price_ranges(), block_ranges()
    assert cf.has_data(prices, blocks)
    assert cf.has_data(prices, blocks.iloc[0:0])
    assert cf.has_data(prices[prices["state"] != "present"], blocks)
    assert not cf.has_data(prices[prices["state"] != "present"], blocks[blocks["kind"] != "held"])
    assert not cf.has_data(pd.DataFrame(columns=prices.columns), pd.DataFrame(columns=blocks.columns))


def test_findings_are_newest_first_and_filter_by_severity_and_subject():
    frame = findings()
    assert frame["id"].tolist() == [4, 3, 2, 1]
    assert cf.filter_findings(frame)["id"].tolist() == [4, 3, 2, 1]
    assert cf.filter_findings(frame, ["warn"])["id"].tolist() == [1]
    assert cf.filter_findings(frame, ["error"], ["bitcoin"])["id"].tolist() == [3]
    assert cf.filter_findings(frame, (), ["BTC", "bitcoin"])["id"].tolist() == [4, 3, 2, 1]
    assert cf.findings_frame([]).empty


def test_findings_table_and_sample_rows():
    frame = findings()
    table = cf.findings_table(frame)
    assert table["samples"].iloc[1] == "day=2024-03-04, price=0, volume="
    assert "slice" in table.columns
    assert "run_id" not in table.columns
    samples = cf.sample_rows(frame)
    assert len(samples) == 5
    assert samples.loc[samples["finding"] == 2, "height"].tolist() == ["255"]
    assert samples.loc[samples["finding"] == 1, "day"].tolist() == ["2024-03-02", "2024-03-04"]
    assert list(cf.sample_rows(frame.iloc[0:0]).columns) == ["finding", "check_name", "subject"]


def test_finding_marks_name_days_and_heights_with_the_worst_severity():
    frame = findings()
    days, levels = cf.finding_marks(frame, "day")
    assert sorted(days) == [date(2024, 3, 2), date(2024, 3, 4)]
    assert days[date(2024, 3, 4)] == [
        "bitcoin: non_positive_value (error)",
        "bitcoin: price_move (warn)",
    ]
    assert levels == {date(2024, 3, 2): "warn", date(2024, 3, 4): "error"}
    within, _ = cf.finding_marks(frame, "day", low=date(2024, 3, 3), high=date(2024, 3, 31))
    assert list(within) == [date(2024, 3, 4)]
    heights, height_levels = cf.finding_marks(frame, "height")
    assert heights == {255: ["BTC: non_positive_size (error)"]}  # "heights" (a count) is not a height
    assert height_levels == {255: "error"}
    assert cf.finding_marks(frame, "height", low=256) == ({}, {})


def test_height_marks_move_onto_the_day_of_their_block():
    marks = {255: ["BTC: a (warn)"], 256: ["BTC: b (error)"], 999: ["BTC: c (warn)"]}
    levels = {255: "warn", 256: "error", 999: "warn"}
    day = date(2024, 3, 3)
    by_day, day_levels = cf.by_day(marks, levels, {255: day, 256: day})
    assert by_day == {day: ["BTC: a (warn) @ 255", "BTC: b (error) @ 256"]}
    assert day_levels == {day: "error"}
