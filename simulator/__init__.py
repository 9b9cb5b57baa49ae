"""capsim: a capacity-planning simulator for AI compute.

    import simulator
    results = simulator.run("scenario.yaml")      # Results: .jobs, .timeline (DataFrames), .summary
    sweep = simulator.sweep("sweep.yaml")         # SweepResults: .runs, .points (DataFrames), .compare()
"""

from simulator.errors import CapsimError
from simulator.experiment import SweepResults, sweep
from simulator.results import Results
from simulator.run import run
from simulator.scenario import Scenario, default_scenario, load_scenario

__all__ = ["CapsimError", "Results", "Scenario", "SweepResults", "default_scenario", "load_scenario", "run", "sweep"]
