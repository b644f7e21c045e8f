"""Fault rules: which requests get a simulated failure, and bookkeeping of their counters."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_KINDS = (
    "429",
    "500",
    "503",
    "timeout",
    "reset",
    "malformed_json",
    "html",
    "missing_field",
    "wrong_type",
    "empty_data",
    "401",
    "402",
    "slow",
    # Replies that never end or never finish: the normal body one byte per `delay` seconds, an endless
    # chunked body, and a body of `size` bytes with its Content-Length.
    "trickle",
    "endless",
    "huge",
)
BLOCKCHAIR_ENDPOINTS = ("blocks", "transactions", "address", "addresses", "stats")
COINGECKO_ENDPOINTS = ("market_chart_range", "history", "simple_price", "ping", "coin")
FAULT_ENDPOINTS = ("any", "blockchair", "coingecko", *BLOCKCHAIR_ENDPOINTS, *COINGECKO_ENDPOINTS)


@dataclass
class FaultRule:
    """One simulated failure mode, applied to matching requests."""

    kind: str
    endpoint: str = "any"
    chain: str | None = None
    times: int | None = 1
    after: int = 0
    retry_after: int = 1
    delay: float = 5.0
    size: int = 200 * 1024 * 1024

    def __post_init__(self) -> None:
        """Reject unknown kinds and endpoints early, where the mistake is made."""
        self.kind = str(self.kind)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"unknown fault endpoint {self.endpoint!r}; expected one of {FAULT_ENDPOINTS}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if self.after < 0:
            raise ValueError("after must be >= 0")
        if self.delay < 0 or self.size < 0:
            raise ValueError("delay and size must be >= 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRule:
        """Build a rule from a JSON object, ignoring nothing silently."""
        known = {f.name for f in fields(cls)}
        extra = set(raw) - known
        if extra:
            raise ValueError(f"unknown FaultRule fields: {sorted(extra)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Return the rule as a JSON-friendly dict."""
        return asdict(self)

    def matches(self, api: str, endpoint: str, chains: tuple[str, ...]) -> bool:
        """Tell whether a request to ``endpoint`` of ``api`` about ``chains`` is targeted."""
        if self.endpoint not in ("any", api, endpoint):
            return False
        return self.chain is None or self.chain in chains


class _Armed:
    """A rule plus its per-rule counters."""

    __slots__ = ("rule", "seen", "fired")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.seen = 0
        self.fired = 0


class FaultBook:
    """Thread-safe list of fault rules with their `after`/`times` counters."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._lock = threading.Lock()
        self._armed = [_Armed(r) for r in rules or []]

    def add(self, rule: FaultRule) -> None:
        """Append a rule; later rules fire only when earlier ones do not."""
        with self._lock:
            self._armed.append(_Armed(rule))

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._armed.clear()

    def pick(self, api: str, endpoint: str, chains: tuple[str, ...]) -> FaultRule | None:
        """Advance the counters of every matching rule and return the first one that fires."""
        chosen: FaultRule | None = None
        with self._lock:
            for armed in self._armed:
                rule = armed.rule
                if not rule.matches(api, endpoint, chains):
                    continue
                # Every matching rule sees the request, so `after` counts requests, not misses.
                armed.seen += 1
                if chosen is not None or armed.seen <= rule.after:
                    continue
                if rule.times is None or armed.fired < rule.times:
                    armed.fired += 1
                    chosen = rule
        return chosen

    def snapshot(self) -> list[dict[str, Any]]:
        """Describe the rules and their counters (for the control API)."""
        with self._lock:
            return [{**a.rule.to_dict(), "seen": a.seen, "fired": a.fired} for a in self._armed]
