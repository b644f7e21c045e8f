"""Local HTTP simulator of the Blockchair and CoinGecko APIs (standard library only)."""

from __future__ import annotations

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.control import SimulatorControl
from pipeline.simulator.faults import FaultRule
from pipeline.simulator.server import Simulator, serve_forever

__all__ = ["FaultRule", "Simulator", "SimulatorConfig", "SimulatorControl", "serve_forever"]
