"""The seeded QA-sheet simulator (docs/simulator.md)."""

from neoqa.simulate.config import SimConfig
from neoqa.simulate.runner import DEFAULT_PATH, DEFAULT_SHEETS, simulate, simulate_batch

__all__ = ["SimConfig", "simulate", "simulate_batch", "DEFAULT_PATH", "DEFAULT_SHEETS"]
