"""Tests for pipeline.errors: the hierarchy callers catch by, and errors that survive pickling."""

from __future__ import annotations

import pickle

from pipeline.errors import (
    AuthError,
    ConfigError,
    FatalSourceError,
    PipelineError,
    PlanLimitError,
    RateLimitedError,
    RecordValidationError,
    ResponseFormatError,
    RetriableSourceError,
    SourceError,
)


def test_error_hierarchy() -> None:
    assert issubclass(RateLimitedError, RetriableSourceError)
    assert issubclass(AuthError, FatalSourceError)
    assert issubclass(PlanLimitError, FatalSourceError)
    assert issubclass(ResponseFormatError, SourceError)
    assert not issubclass(ResponseFormatError, (RetriableSourceError, FatalSourceError))
    for cls in (ConfigError, SourceError, RecordValidationError):
        assert issubclass(cls, PipelineError)


def test_errors_pickle_round_trip() -> None:
    error = RateLimitedError(
        "slow down", source="coingecko", endpoint="/ping", status=429, api_code=429, retry_after=7.0
    ).with_attempts(3)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimitedError
    assert (str(copy), copy.retry_after, copy.attempts) == (str(error), 7.0, 3)

    invalid = RecordValidationError("price is negative", record={"price": -1}, field="price")
    restored = pickle.loads(pickle.dumps(invalid))
    assert (restored.reason, restored.record, restored.field) == ("price is negative", {"price": -1}, "price")
    assert str(restored) == "invalid record (field 'price'): price is negative"
    assert restored.kind == "RecordValidationError"
