"""What every parser returns: the valid records, and the invalid ones with the reason they were refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import ResponseFormatError

# Reject lives with the schemas since database refusals are rejects too (UpsertResult carries them);
# it is re-exported here, where the parsers and the run log have always imported it from.
from pipeline.schemas import MAX_SAMPLE_CHARS, Reject, describe_validation_error

__all__ = [
    "MAX_SAMPLE_CHARS",
    "ParseResult",
    "Reject",
    "format_error",
    "validate_into",
    "validation_context",
]

T = TypeVar("T", bound=BaseModel)


@dataclass
class ParseResult(Generic[T]):
    """Records and rejects of one response; `tip` is the chain height the source reported, if any."""

    records: list[T] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    tip: int | None = None
    # Rows the source returned, valid or not: the pager's notion of a page being full.
    rows_seen: int = 0


def validate_into(
    result: ParseResult[T], model: type[T], raw: Any, fields: dict[str, Any] | None, context: dict[str, Any]
) -> None:
    """Validate mapped fields into a record, or record a reject with the validation message."""
    if fields is None:
        result.rejects.append(Reject("not an object", raw))
        return
    try:
        result.records.append(model.model_validate(fields, context=context))
    except ValidationError as exc:
        result.rejects.append(Reject(describe_validation_error(exc), raw))


def format_error(source: str, endpoint: str, detail: str) -> ResponseFormatError:
    """The error for a 200 response whose body is not the documented shape."""
    return ResponseFormatError(detail, source=source, endpoint=endpoint, status=200)


def validation_context(now: datetime | None, **extra: Any) -> dict[str, Any]:
    """The context record validators read (the clock is passed in, so parsers stay pure)."""
    return {"now": now, **extra} if now is not None else dict(extra)
