"""Reliability suite: the fault-matrix cells and the notes (seeds, latencies) are printed at the end."""

from __future__ import annotations

import pytest

from benchmarks.harness.matrix import RECORDED, format_matrix, summary
from tests.support.reliability import NOTES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault matrix (fault x unit -> status, expected, stored, lost, duplicates) and the notes."""
    if RECORDED:
        terminalreporter.section("fault matrix")
        terminalreporter.write_line(format_matrix(RECORDED))
        terminalreporter.write_line("")
        terminalreporter.write_line(summary(RECORDED))
    if NOTES:
        terminalreporter.section("reliability notes")
        for line in NOTES:
            terminalreporter.write_line(line)
