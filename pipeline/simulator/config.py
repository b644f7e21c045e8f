"""Configuration of the API simulator."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from pipeline.simulator.faults import FaultRule

DEFAULT_TIPS: dict[str, int] = {
    "bitcoin": 870_000,
    "ethereum": 21_000_000,
    "dogecoin": 5_400_000,
    "litecoin": 2_800_000,
    "bitcoin-cash": 880_000,
    "dash": 2_150_000,
}

PLANS = ("public", "demo", "pro")


@dataclass
class SimulatorConfig:
    """Everything that shapes the simulated data and the simulated service behaviour.

    Block times are anchored at T0: ``anchor_time`` when given, otherwise the simulated clock at
    construction (real UTC time, moved onto ``today`` when that is set) minus
    ``history_anchor_hours``. The block at height ``tips[chain]`` is dated exactly T0 (whole
    seconds). With ``tip_growth`` the tip moves on by one block per chain interval since T0, so the
    newest block is always within one interval of now; without it the tip stays at ``tips[chain]``
    (dated about ``history_anchor_hours`` ago) plus manual advances.
    """

    seed: int = 42
    tips: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TIPS))
    tip_growth: bool = True
    tx_per_block: tuple[int, int] = (3, 12)
    blockchair_key: str | None = None
    coingecko_key: str | None = None
    coingecko_plan: str = "public"
    history_days: int = 365
    rate_limit_per_minute: int | None = None
    faults: list[FaultRule] = field(default_factory=list)
    today: date | None = None
    history_anchor_hours: float = 24
    anchor_time: datetime | None = None  # pins T0 exactly; a naive value is taken as UTC

    def __post_init__(self) -> None:
        """Fill chains missing from ``tips`` and validate the simple fields."""
        # A partial dict (e.g. only bitcoin) must not remove the other chains.
        self.tips = {**DEFAULT_TIPS, **self.tips}
        lo, hi = self.tx_per_block
        if lo < 0 or hi < lo or hi >= 1_000_000:
            raise ValueError(f"invalid tx_per_block {self.tx_per_block!r}")
        self.tx_per_block = (int(lo), int(hi))
        if self.coingecko_plan not in PLANS:
            raise ValueError(f"coingecko_plan must be one of {PLANS}")
        if not math.isfinite(self.history_anchor_hours) or self.history_anchor_hours < 0:
            raise ValueError(f"history_anchor_hours must be >= 0, not {self.history_anchor_hours!r}")
        if self.anchor_time is not None:
            if not isinstance(self.anchor_time, datetime):
                raise TypeError(f"anchor_time must be a datetime, not {type(self.anchor_time).__name__}")
            if self.anchor_time.tzinfo is None:
                self.anchor_time = self.anchor_time.replace(tzinfo=UTC)
            self.anchor_time = self.anchor_time.astimezone(UTC)
        unknown = set(self.tips) - set(DEFAULT_TIPS)
        if unknown:
            raise ValueError(f"unknown chains in tips: {sorted(unknown)}")
