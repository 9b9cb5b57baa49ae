"""capsim: a capacity-planning simulator for AI compute.

    import simulator
    results = simulator.run("scenario.yaml")      # Results: .jobs, .timeline (DataFrames), .summary
    results = simulator.run(scenario, jobs=df, policy=MyPolicy)  # a job table and a policy class of your own
    sim = simulator.build("scenario.yaml"); sim.run(until=86400); sim.policy.queue; sim.run()
    results = simulator.collect(sim)
    over = simulator.run_seeds("scenario.yaml", 5)  # SeedResults: .summary (means, <key>_ci95), .runs, .first
    sweep = simulator.sweep("sweep.yaml")         # SweepResults: .runs, .points (DataFrames), .compare()
    plan = simulator.cheapest_purchase("plan.yaml")  # PurchasePlan: .options, .evaluations, .cheapest
"""

from simulator.compiled import drop_stale

drop_stale()  # before the engine is imported: a compiled module older than its source must not load

from simulator.errors import CapsimError  # noqa: E402
from simulator.experiment import SweepResults, sweep  # noqa: E402
from simulator.experiment.seeds import SeedResults, run_seeds  # noqa: E402
from simulator.planning.purchase import PurchasePlan, cheapest_purchase  # noqa: E402
from simulator.results import Results  # noqa: E402
from simulator.run import build, collect, run  # noqa: E402
from simulator.scenario import Scenario, default_scenario, load_scenario  # noqa: E402

__all__ = ["CapsimError", "PurchasePlan", "Results", "Scenario", "SeedResults", "SweepResults", "build",
           "cheapest_purchase", "collect", "default_scenario", "load_scenario", "run", "run_seeds", "sweep"]
