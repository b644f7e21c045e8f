"""Fixtures of the pipeline/http tests: a record of retry sleeps, and mocked replies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps
