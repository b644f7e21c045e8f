"""The run detail's tables: replay parameters and rejected samples as rows and columns, never JSON or a
Python repr, and outside text kept as it came."""

from __future__ import annotations

import json

from dashboard.run_actions import params_table, samples_table

HOSTILE = "[click](https://evil.example) ![x](https://evil.example/x.png) **bold** $x$"


def test_rejected_samples_are_a_table_with_the_reason_first_and_a_column_per_field():
    samples = [
        {"reason": "fee: not a number", "record": json.dumps({"hash": "0xab", "fee": "abc", "n": 3})},
        {"reason": HOSTILE, "record": json.dumps({"hash": "0xcd", "extra": {"a": [1, 2]}})},
        {"reason": "cut", "record": '{"hash": "0xef", "fee": "12'},  # truncated: kept whole
    ]
    table = samples_table(samples)
    assert list(table.columns[:1]) == ["reason"]
    assert table.loc[0, "fee"] == "abc"
    assert table.loc[0, "n"] == "3"
    assert table.loc[1, "reason"] == HOSTILE
    assert table.loc[1, "extra"] == '{"a": [1, 2]}'
    assert table.loc[2, "record"] == '{"hash": "0xef", "fee": "12'
    assert table.loc[0, "record"] == "–"  # no None anywhere
    assert samples_table([]).empty


def test_replay_parameters_are_parameter_value_rows():
    table = params_table({"chain": "bitcoin", "start_height": 870139, "addresses": ["a", "b"], "x": HOSTILE})
    assert table.to_dict("records") == [
        {"parameter": "chain", "value": "bitcoin"},
        {"parameter": "start_height", "value": "870139"},
        {"parameter": "addresses", "value": '["a", "b"]'},
        {"parameter": "x", "value": HOSTILE},
    ]
