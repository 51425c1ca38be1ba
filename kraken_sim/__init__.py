"""kraken_sim: a local Kraken spot exchange speaking Kraken's REST and WebSocket v2 protocols.

An independent implementation of the protocol (it never imports the client in ``ingest/``), for tests,
benchmarks and offline runs. See ``kraken_sim/README.md``.
"""

from kraken_sim.config import TIERS, SimConfig, Tier
from kraken_sim.server import Simulator

__all__ = ["TIERS", "SimConfig", "Simulator", "Tier"]
