"""Configuration of the API simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

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
    """Everything that shapes the simulated data and the simulated service behaviour."""

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
        unknown = set(self.tips) - set(DEFAULT_TIPS)
        if unknown:
            raise ValueError(f"unknown chains in tips: {sorted(unknown)}")
