"""Parser for the subset of Blockchair's infinitable query language the simulator serves."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNBOUNDED = 1 << 62
MAX_LIMIT = 100
MAX_OFFSET = 10_000
DEFAULT_LIMIT = 10
_FILTER = re.compile(r"([a-z_]+)\(([^()]*)\)")
_SORT = re.compile(r"([a-z_]+)\((asc|desc)\)")


class QueryError(ValueError):
    """A query Blockchair would answer with HTTP 400."""


@dataclass
class RowQuery:
    """Parsed q/s/limit/offset parameters; every filter is an inclusive integer range."""

    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    filter_count: int = 0

    def bounds(self, name: str) -> tuple[int, int]:
        """Return the inclusive range for ``name`` (unbounded when not filtered)."""
        return self.ranges.get(name, (-UNBOUNDED, UNBOUNDED))


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise QueryError(f"Invalid value in filter: {text!r}") from None


def parse_range(expr: str) -> tuple[int, int]:
    """Parse 'a..b', 'a..', '..b', 'a...b' (end excluded) or 'x' into an inclusive range."""
    if "..." in expr:
        lo, hi = expr.split("...", 1)
        return (_int(lo) if lo else -UNBOUNDED, _int(hi) - 1 if hi else UNBOUNDED)
    if ".." in expr:
        lo, hi = expr.split("..", 1)
        return (_int(lo) if lo else -UNBOUNDED, _int(hi) if hi else UNBOUNDED)
    value = _int(expr)
    return value, value


def _split_filters(q: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(q):
        match = _FILTER.match(q, pos)
        if match is None:
            raise QueryError(f"Invalid query syntax near {q[pos : pos + 20]!r}")
        found.append((match.group(1), match.group(2)))
        pos = match.end()
        if pos < len(q):
            if q[pos] != ",":
                raise QueryError(f"Invalid query syntax near {q[pos : pos + 20]!r}")
            pos += 1
    return found


def parse_row_query(params: dict[str, str], filters: set[str], sorts: set[str]) -> RowQuery:
    """Parse the parameters of a /blocks or /transactions request."""
    query = RowQuery()
    for name, expr in _split_filters(params.get("q", "").strip()):
        if name not in filters:
            raise QueryError(f"Unknown column for filtering: {name}")
        lo, hi = parse_range(expr)
        old_lo, old_hi = query.bounds(name)
        # Filters are ANDed, so repeated columns intersect.
        query.ranges[name] = (max(lo, old_lo), min(hi, old_hi))
        query.filter_count += 1
    sort = params.get("s", "").strip()
    if sort:
        match = _SORT.fullmatch(sort)
        if match is None or match.group(1) not in sorts:
            raise QueryError(f"Invalid sorting: {sort!r}")
        query.descending = match.group(2) == "desc"
    if "limit" in params:
        query.limit = _int(params["limit"])
        if not 1 <= query.limit <= MAX_LIMIT:
            raise QueryError(f"Limit should be between 1 and {MAX_LIMIT}")
    if "offset" in params:
        query.offset = _int(params["offset"])
        if not 0 <= query.offset <= MAX_OFFSET:
            raise QueryError(f"Offset should be between 0 and {MAX_OFFSET}")
    return query


def request_cost(base: float, query: RowQuery) -> float:
    """Return Blockchair's documented cost of a row query."""
    extra_rows = max(0, query.limit - DEFAULT_LIMIT)
    return round((base + query.filter_count) * (1 + 0.01 * extra_rows), 4)
