"""The saved API replies in tests/fixtures (Blockchair, CoinGecko, edge cases), one loader for all tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_text(name: str) -> str:
    """A saved reply as text, e.g. `fixture_text("coingecko/error_429.json")`."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def load_fixture(name: str, parse_float: Callable[[str], Any] = Decimal) -> Any:
    """A saved reply decoded as the HTTP client decodes it (floats as Decimal, so prices compare exactly).

    `parse_float=float` decodes it as `requests.Response.json()` does, to compare with a raw reply.
    """
    return json.loads(fixture_text(name), parse_float=parse_float)
