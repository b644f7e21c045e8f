"""Client for the /_sim control API, for driving a simulator running in another process."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from pipeline.simulator.faults import FaultRule


class SimulatorControl:
    """Mirror of the `Simulator` control methods over HTTP."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_sim/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """Return request counts, tips, faults and reorgs."""
        stats: dict[str, Any] = self._call("GET", "stats")
        return stats

    def add_fault(self, rule: FaultRule | dict[str, Any] | list[FaultRule | dict[str, Any]]) -> None:
        """Append one rule or a list of rules."""
        rules = rule if isinstance(rule, list) else [rule]
        self._call("POST", "faults", [r.to_dict() if isinstance(r, FaultRule) else r for r in rules])

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "faults")

    def reorg(self, chain: str, depth: int) -> None:
        """Replace the newest ``depth`` blocks of ``chain``."""
        self._call("POST", "reorg", {"chain": chain, "depth": depth})

    def advance_tip(self, chain: str, blocks: int) -> None:
        """Move the tip of ``chain`` forward by ``blocks``."""
        self._call("POST", "advance", {"chain": chain, "blocks": blocks})

    def tip(self, chain: str) -> int:
        """Return the current tip of ``chain``."""
        return int(self.stats()["tips"][chain])

    def request_counts(self) -> dict[str, int]:
        """Return served requests per endpoint kind."""
        return dict(self.stats()["requests"])

    def reset(self) -> None:
        """Zero counters, clear faults and the rate-limit window."""
        self._call("POST", "reset")
