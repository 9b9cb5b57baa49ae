"""Build a scenario into a simulation, run it, and collect Results."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.cluster.pool import Cluster
from simulator.cluster.shared_pool import SharedPool, set_target_workload, share_milli
from simulator.cluster.torus import NamedShapes, TorusPool, shape_of
from simulator.engine.checkpoint import Checkpointing
from simulator.engine.features import Meter, Outcome, Source
from simulator.engine.simulation import Simulation
from simulator.engine.timeline import TimelineBuilder
from simulator.errors import CapsimError
from simulator.features import Setup, build_features
from simulator.metrics.summary import summarize
from simulator.models.cost import cost_rates
from simulator.perf.jobs import fill_reference_durations, make_runtime
from simulator.policies.base import ClusterView, PolicyContext
from simulator.policies.preemption import rotation_loses_work
from simulator.policies.registry import policy_class, policy_reference, validate_options
from simulator.results import Results
from simulator.scenario import Scenario, load_scenario, scenario_from_data, scenario_from_text
from simulator.workload.build import build_jobs, check_slice_shapes, pool_tori, reference_device
from simulator.workload.schema import validate_jobs


def _as_scenario(scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return scenario_from_data(scenario, source="<dict>")
    if isinstance(scenario, str) and "\n" in scenario:
        return scenario_from_text(scenario, source="<text>")
    return load_scenario(Path(scenario))


def infeasible_jobs(jobs: pd.DataFrame, cluster: Cluster) -> np.ndarray:
    """Jobs that ask for more devices than any pool they may use can ever offer."""
    if "device" in jobs.columns:
        limit = jobs["device"].map(lambda d: cluster.largest_pool(None if pd.isna(d) else d))
    else:
        limit = cluster.largest_pool()
    return (jobs["gpus"] > limit).to_numpy()


def preflight(scenario: Scenario, cls=None):
    """What a run checks before it simulates, so a bad policy, option or price fails at once, not after
    hours: the policy class (`cls` when the caller holds it), its validated options, and the cost rates
    (None without `cost:`)."""
    cls = cls or policy_class(scenario.scheduler.policy, source=scenario.source)
    options = validate_options(cls, scenario.scheduler.options, source=scenario.source)
    rates = cost_rates(scenario) if scenario.cost is not None else None
    return cls, options, rates


@dataclass
class RunContext:
    """What `collect` needs besides the engine's record: the validated scenario, its job table, the
    run's meters (simulator.build attaches it to the Simulation as `sim.context`)."""

    scenario: Scenario
    seed: int
    jobs: pd.DataFrame
    meters: list[Meter]
    bar: object


def run(scenario, seed: int | None = None, progress: bool | None = None, *, jobs: pd.DataFrame | None = None,
        policy=None, features=()) -> Results:
    """Run a scenario (a Scenario, a path to YAML, YAML text or a dict) and return its Results:
    `build`, `Simulation.run` and `collect` in a row.

    jobs: a job table (DataFrame with job_id, submit_time, gpus, duration and any optional column) that
    replaces the scenario's `workload`. policy: a Policy subclass, a "module:Class" reference or a
    registered name, replacing `scheduler.policy`. features: sources and meters (engine/features.py)
    added to those the scenario asks for. `progress=None` shows a progress bar only when stderr is a
    terminal.
    """
    sim = build(scenario, seed, jobs=jobs, policy=policy, progress=progress, features=features)
    try:
        sim.run()
    finally:
        if sim.context.bar is not None:
            sim.context.bar.close()
    return collect(sim)


def with_policy(scenario: Scenario, policy) -> Scenario:
    """The scenario with `scheduler.policy` replaced by a name, a reference, or a class (as its
    "module:Class" reference, which worker processes can import)."""
    name = policy if isinstance(policy, str) else policy_reference(policy)
    sched = scenario.scheduler.model_copy(update={"policy": name})
    return scenario.model_copy(update={"scheduler": sched})


def build(scenario, seed: int | None = None, *, jobs: pd.DataFrame | None = None, policy=None,
          progress: bool | None = None, features=()) -> Simulation:
    """A scenario built into a Simulation that has not run yet: `sim.run(until=...)` advances it (and can
    stop half-way to inspect `sim.policy.queue`, `sim.running`, `sim.cluster`), `collect(sim)` turns the
    finished run into Results. Arguments as for `run`."""
    scenario = _as_scenario(scenario)
    if policy is not None:
        scenario = with_policy(scenario, policy)
    if jobs is None and not scenario.workload:
        if not getattr(scenario, "services", None):
            raise CapsimError("required key is missing: a list of job sources (or pass jobs= a job table, or give "
                              "services and requests)", source=scenario.source, where="workload")
        jobs = pd.DataFrame({"job_id": pd.Series(dtype=str), "submit_time": pd.Series(dtype=float),
                             "gpus": pd.Series(dtype=np.int64), "duration": pd.Series(dtype=float)})
    seed = scenario.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise CapsimError(f"expected a whole number >= 0 and < 2^63, got {seed!r}", where="seed")
    n_sources = len(scenario.workload)
    root = np.random.SeedSequence(seed)
    seeds = root.spawn(n_sources + 1)  # the workload's sources, the policy; then the features' streams
    workload_rngs = [np.random.default_rng(s) for s in seeds[:n_sources]]
    policy_rng = np.random.default_rng(seeds[n_sources])

    cluster = Cluster.from_spec(scenario.cluster)
    if jobs is None:
        jobs = build_jobs(scenario, workload_rngs)
    else:
        jobs = given_jobs(jobs, scenario)
        check_slice_shapes(jobs, pool_tori(cluster.pools), "jobs",
                           lambda row: f"job {jobs['job_id'].iloc[row]!r} (row {row + 1}), column 'slice_shape'")
    jobs = _with_shares(jobs, cluster)
    infeasible = infeasible_jobs(jobs, cluster)
    _check_slice_sizes(jobs, infeasible, cluster, scenario.source)
    runtime_of = make_runtime(jobs)  # the performance model for model jobs, else the recorded duration

    sched = scenario.scheduler
    # A class given in hand is used as it is (one defined inside a function has no importable reference).
    cls, options, _ = preflight(scenario, policy if isinstance(policy, type) else None)
    named = _named_shapes(jobs, cluster)
    if named is None:
        view = ClusterView(cluster, spread=sched.placement == "spread")
    else:  # some job names its slice shape: torus pools learn which job they place
        from simulator.policies.shaped import ShapedClusterView

        view = ShapedClusterView(cluster, named, spread=sched.placement == "spread")
    context = PolicyContext(rng=policy_rng, restore_s=sched.preemption.restore,
                            checkpoint_interval_s=sched.preemption.checkpoint_interval,
                            runtime_of=runtime_of, checkpoint_cost_s=sched.preemption.checkpoint_cost,
                            checkpoint_on_preempt=sched.preemption.checkpoint_on_preempt)
    policy = cls(options, view, context)

    _warn_infeasible(jobs[infeasible], cluster)
    rotation_warning = rotation_loses_work(policy, sched.preemption)
    if rotation_warning:
        warnings.warn(f"{scenario.source}: {rotation_warning}", stacklevel=2)
    parts = [*build_features(Setup(scenario, cluster, jobs, root, first_stream=n_sources + 1)), *features]
    for part in parts:
        if not isinstance(part, Source | Meter):
            raise CapsimError(f"a feature must be a Source or a Meter (simulator.engine.features), got "
                              f"{type(part).__name__}", where="features")
    bar = progress_bar(len(jobs), f"simulating {scenario.name}", "job", progress)
    checkpointing = Checkpointing(sched.preemption.restore, sched.preemption.checkpoint_interval,
                                  sched.preemption.checkpoint_cost, sched.preemption.checkpoint_on_preempt)
    sim = Simulation(cluster, jobs, policy, view, runtime_of, checkpointing, infeasible=infeasible, progress=bar,
                     sources=[p for p in parts if isinstance(p, Source)])
    sim.context = RunContext(scenario, seed, jobs, [p for p in parts if isinstance(p, Meter)], bar)
    return sim


def given_jobs(jobs: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """A job table passed in by the caller, validated like a trace and sorted by submission (stable, so
    simultaneous jobs keep their order); model jobs get their reference-device duration."""
    if not isinstance(jobs, pd.DataFrame):
        raise CapsimError(f"expected a pandas DataFrame of jobs, got {type(jobs).__name__}", where="jobs")
    if "model" in jobs.columns:
        jobs = fill_reference_durations(jobs, reference_device(scenario))
    return validate_jobs(jobs, source="jobs")


def collect(sim: Simulation) -> Results:
    """The Results of a finished simulation built by `build`: the core's job table, timeline and summary,
    and what every meter adds to them."""
    ctx = sim.context
    if ctx is None:
        raise CapsimError("this Simulation was not made by simulator.build", where="collect")
    if not sim.finished:
        raise CapsimError(f"the simulation is at t = {sim.now:g} s and has not finished: call sim.run() first",
                          where="collect")
    scenario, cluster, recorder = ctx.scenario, sim.cluster, sim.recorder
    outcome = Outcome(recorder, cluster, ctx.jobs, jobs=recorder.jobs_frame(ctx.jobs, cluster.pools))
    for meter in ctx.meters:
        meter.job_columns(outcome)
    _warn_stranded(outcome.jobs)
    builder = TimelineBuilder(recorder, ctx.jobs["submit_time"].to_numpy(dtype=float), cluster.pools)
    for meter in ctx.meters:
        meter.timeline(builder, outcome)
    outcome.timeline = builder.frame()
    # Utilisation is of the owned devices: burst pools are rented by the hour.
    rented = np.array([p.burst_after is not None for p in cluster.pools], dtype=bool)
    busy_device_seconds = recorder.busy_device_seconds
    if rented.any():
        busy_device_seconds -= float(recorder.device_seconds_by_pool(len(rented))[rented].sum())
    owned_capacity = sum(p.capacity for p, r in zip(cluster.pools, rented, strict=True) if not r)
    outcome.summary = summarize(outcome.jobs, busy_device_seconds, owned_capacity, outcome.timeline, extra={
        "scenario": scenario.name, "seed": ctx.seed, "policy": scenario.scheduler.policy,
        "gpus_total": owned_capacity})
    for meter in ctx.meters:
        meter.finish(outcome)
    from simulator.report.simulated import scenario_record

    return Results(scenario.name, ctx.seed, outcome.jobs, outcome.timeline, outcome.summary,
                   requests=outcome.tables.get("requests"), scenario=scenario_record(scenario))


def _with_shares(jobs: pd.DataFrame, cluster: Cluster) -> pd.DataFrame:
    """With a sharing pool, fractional jobs ask for their share of one GPU (`gpu_milli`, from
    `gpu_fraction`); FGD pools learn the run's mix of requests. Without one the table is unchanged."""
    pools = [p for p in cluster.pools if isinstance(p, SharedPool)]
    if not pools:
        return jobs
    gpus = jobs["gpus"].to_numpy(dtype=np.int64)
    fraction = jobs["gpu_fraction"] if "gpu_fraction" in jobs.columns else np.full(len(jobs), np.nan)
    milli = share_milli(gpus, pd.to_numeric(fraction, errors="coerce"))
    set_target_workload(pools, gpus, milli)
    return jobs.assign(gpu_milli=milli)


def _named_shapes(jobs: pd.DataFrame, cluster: Cluster) -> NamedShapes | None:
    """The slice shapes jobs name (job index -> shape), given to the torus pools; None when no job names
    one (or no pool is a torus: a shape only shapes a slice)."""
    pools = [p for p in cluster.pools if isinstance(p, TorusPool)]
    if "slice_shape" not in jobs.columns or not pools:
        return None
    column = jobs["slice_shape"]
    rows = np.flatnonzero(column.notna().to_numpy())
    if not len(rows):
        return None
    parsed = {text: shape_of(text) for text in column.iloc[rows].unique()}
    named = NamedShapes({int(i): parsed[text] for i, text in zip(rows.tolist(), column.iloc[rows], strict=True)})
    for pool in pools:
        pool.named = named
    return named


def _check_slice_sizes(jobs: pd.DataFrame, infeasible: np.ndarray, cluster: Cluster, source: str) -> None:
    """A job within the largest pool's size that no pool it may use can ever place (on a torus pool: a
    size with no slice shape) is refused here, before the run, naming the sizes each pool takes. A job
    that names its slice shape was checked against the pools' tori as it was read (check_slice_shapes)."""
    if not any(isinstance(p, TorusPool) for p in cluster.pools):
        return  # node pools only: a size within a pool always fits it once it is empty
    unnamed = jobs["slice_shape"].isna().to_numpy() if "slice_shape" in jobs.columns else True
    feasible = jobs.loc[~infeasible & unnamed]
    device = feasible["device"] if "device" in feasible.columns else pd.Series(None, index=feasible.index)
    for (gpus, dev), rows in feasible.groupby([feasible["gpus"], device.where(device.notna(), "")], sort=True):
        pools = cluster.candidate_pools(dev or None)
        if not any(p.can_ever_fit(int(gpus)) for p in pools):
            sizes = "; ".join(f"{p.name}: {', '.join(map(str, sorted(p.shapes)))}" for p in pools
                              if isinstance(p, TorusPool))
            raise CapsimError(f"{len(rows)} job(s) ask for {int(gpus)} chips, which no pool can place as a slice "
                              f"(slice sizes by torus pool: {sizes}; add a shape under slice_shapes): "
                              f"{_some_ids(rows['job_id'])}", source=source, where="workload")


def _warn_infeasible(infeasible: pd.DataFrame, cluster: Cluster) -> None:
    if infeasible.empty:
        return
    warnings.warn(
        f"{len(infeasible)} job(s) ask for more devices than the cluster can ever offer "
        f"(largest pool: {cluster.largest_pool()} devices) and are rejected: {_some_ids(infeasible['job_id'])}",
        stacklevel=3)


def _warn_stranded(job_frame: pd.DataFrame) -> None:
    stranded = job_frame.loc[job_frame["status"] == "queued", "job_id"]
    if len(stranded):
        ids = _some_ids(stranded)
        warnings.warn(f"{len(stranded)} job(s) never finished: when nothing more could start, no pool still taking "
                      f"jobs could hold them (after a drain or retirement, or pinned to a device type no pool "
                      f"offers any more); they stay 'queued' in jobs.parquet: {ids}", stacklevel=3)


def _some_ids(ids: pd.Series) -> str:
    """The first few job ids of a warning."""
    return ", ".join(ids.astype(str).head(5)) + (" ..." if len(ids) > 5 else "")


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None, initial: int = 0):
    """A tqdm bar on stderr; `enabled=None` shows it only when stderr is a terminal."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, leave=False)
