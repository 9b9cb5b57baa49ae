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

# The public names, imported on first use (PEP 562): `import simulator` (and so `capsim --help`) stays
# fast, and each name loads its part of the stack only when a caller touches it.
_PUBLIC = {
    "CapsimError": "simulator.errors", "SweepResults": "simulator.experiment", "sweep": "simulator.experiment",
    "SeedResults": "simulator.experiment.seeds", "run_seeds": "simulator.experiment.seeds",
    "PurchasePlan": "simulator.planning.purchase", "cheapest_purchase": "simulator.planning.purchase",
    "Results": "simulator.results", "build": "simulator.runner", "collect": "simulator.runner", "run": "simulator.runner",
    "Scenario": "simulator.scenario", "default_scenario": "simulator.scenario", "load_scenario": "simulator.scenario",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
