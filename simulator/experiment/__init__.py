"""Sweeps over scenarios: axes × cases × seeds, run locally or on Ray, with confidence intervals."""

from simulator.experiment.runner import SweepResults, sweep
from simulator.experiment.sweep import Sweep, load_sweep

__all__ = ["Sweep", "SweepResults", "load_sweep", "sweep"]
