"""Build a scenario into a simulation, run it, and collect Results."""

from __future__ import annotations

import gc
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.cluster.pool import Cluster
from simulator.engine.simulation import Simulation
from simulator.errors import CapsimError
from simulator.metrics.summary import summarize
from simulator.models.cost import (
    cost_rates,
    device_seconds_by_pool,
    period_cost,
    pool_spans,
    spend_rate_usd_per_h,
)
from simulator.models.failures import FailureProcess
from simulator.models.power import PoolPower, pool_power
from simulator.network.fabric import pool_fabrics
from simulator.perf.jobs import fill_reference_durations, make_comm_fraction, make_runtime, perf_bands
from simulator.policies.base import ClusterView, PolicyContext
from simulator.policies.registry import policy_class, policy_reference, validate_options
from simulator.results import Results
from simulator.scenario import Scenario, load_scenario, scenario_from_data, scenario_from_text
from simulator.units import format_duration
from simulator.workload.build import build_jobs, reference_device
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


def preflight(scenario: Scenario):
    """What a run checks before it simulates, so a bad policy, option or price fails at once, not after
    hours: the policy class, its validated options, and the cost rates (None without `cost:`)."""
    cls = policy_class(scenario.scheduler.policy, source=scenario.source)
    options = validate_options(cls, scenario.scheduler.options, source=scenario.source)
    rates = cost_rates(scenario) if scenario.cost is not None else None
    return cls, options, rates


@dataclass
class RunContext:
    """What `collect` needs besides the engine's record: the validated scenario and the pieces built
    from it (simulator.build attaches it to the Simulation as `sim.context`)."""

    scenario: Scenario
    seed: int
    cluster: Cluster
    jobs: pd.DataFrame
    failures: FailureProcess | None
    install_at: np.ndarray
    retire_at: np.ndarray
    rates: object
    bar: object


def run(scenario, seed: int | None = None, progress: bool | None = None, *, jobs: pd.DataFrame | None = None,
        policy=None) -> Results:
    """Run a scenario (a Scenario, a path to YAML, YAML text or a dict) and return its Results:
    `build`, `Simulation.run` and `collect` in a row.

    jobs: a job table (DataFrame with job_id, submit_time, gpus, duration and any optional column) that
    replaces the scenario's `workload`. policy: a Policy subclass, a "module:Class" reference or a
    registered name, replacing `scheduler.policy`. `progress=None` shows a progress bar only when
    stderr is a terminal.
    """
    sim = build(scenario, seed, jobs=jobs, policy=policy, progress=progress)
    with _gc_paused():
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
          progress: bool | None = None) -> Simulation:
    """A scenario built into a Simulation that has not run yet: `sim.run(until=...)` advances it (and can
    stop half-way to inspect `sim.policy.queue`, `sim.running`, `sim.cluster`), `collect(sim)` turns the
    finished run into Results. Arguments as for `run`."""
    scenario = _as_scenario(scenario)
    if policy is not None:
        scenario = with_policy(scenario, policy)
    if jobs is None and not scenario.workload:
        raise CapsimError("required key is missing: a list of job sources (or pass jobs= a job table)",
                          source=scenario.source, where="workload")
    seed = scenario.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise CapsimError(f"expected a whole number >= 0 and < 2^63, got {seed!r}", where="seed")
    n_sources = len(scenario.workload)
    seeds = np.random.SeedSequence(seed).spawn(n_sources + 2)  # sources, the policy, failures
    workload_rngs = [np.random.default_rng(s) for s in seeds[:n_sources]]
    policy_rng = np.random.default_rng(seeds[n_sources])

    cluster = Cluster.from_spec(scenario.cluster)
    jobs = build_jobs(scenario, workload_rngs) if jobs is None else given_jobs(jobs, scenario)
    infeasible = infeasible_jobs(jobs, cluster)
    runtime_of = make_runtime(jobs)  # the performance model for model jobs, else the recorded duration

    sched = scenario.scheduler
    cls, options, rates = preflight(scenario)
    view = ClusterView(cluster, spread=sched.placement == "spread")
    context = PolicyContext(rng=policy_rng, restore_s=sched.preemption.restore,
                            checkpoint_interval_s=sched.preemption.checkpoint_interval,
                            runtime_of=runtime_of)
    policy = cls(options, view, context)

    _warn_infeasible(jobs[infeasible], cluster)
    _warn_rotation_loses_work(policy, sched.preemption, scenario.source)
    failures = None
    if scenario.failures is not None:
        failures = FailureProcess(cluster, scenario.failures.device_mtbf, scenario.failures.repair,
                                  np.random.default_rng(seeds[n_sources + 1]))
    # Pools entering and leaving service: seconds after the first submission for the engine, absolute
    # times for the timeline and the cost (-inf: there from the start; inf: never retired).
    specs = list(zip(scenario.cluster.pools, cluster.pools, strict=True))
    installs = [(p.available_from, pool) for p, pool in specs if p.available_from > 0]
    retirements = [(p.available_until, pool) for p, pool in specs if p.available_until is not None]
    drains = [(p.available_until - p.drain_before, pool) for p, pool in specs if p.drain_before is not None]
    first_submit = float(jobs["submit_time"].iloc[0]) if len(jobs) else 0.0
    install_at = np.array([first_submit + p.available_from if p.available_from > 0 else -np.inf
                           for p in scenario.cluster.pools])
    retire_at = np.array([first_submit + p.available_until if p.available_until is not None else np.inf
                          for p in scenario.cluster.pools])
    fabrics = pool_fabrics(scenario.cluster.pools) if any(p.network for p in scenario.cluster.pools) else None
    bar = progress_bar(len(jobs), f"simulating {scenario.name}", "job", progress)
    sim = Simulation(cluster, jobs, policy, view, runtime_of,
                     restore_s=sched.preemption.restore,
                     checkpoint_interval_s=sched.preemption.checkpoint_interval,
                     checkpoint_cost_s=sched.preemption.checkpoint_cost,
                     checkpoint_on_preempt=sched.preemption.checkpoint_on_preempt,
                     infeasible=infeasible, progress=bar, failures=failures, installs=installs,
                     retirements=retirements, drains=drains, fabrics=fabrics,
                     comm_fraction_of=make_comm_fraction(jobs) if fabrics else None)
    sim.context = RunContext(scenario, seed, cluster, jobs, failures, install_at, retire_at, rates, bar)
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
    """The Results of a finished simulation built by `build`."""
    ctx = sim.context
    if ctx is None:
        raise CapsimError("this Simulation was not made by simulator.build", where="collect")
    if not sim.finished:
        raise CapsimError(f"the simulation is at t = {sim.now:g} s and has not finished: call sim.run() first",
                          where="collect")
    scenario, seed, cluster, jobs, failures = ctx.scenario, ctx.seed, ctx.cluster, ctx.jobs, ctx.failures
    install_at, retire_at, rates, recorder = ctx.install_at, ctx.retire_at, ctx.rates, sim.recorder
    sched = scenario.scheduler
    job_frame = recorder.jobs_frame(jobs, cluster.pools)
    bands = perf_bands(jobs, job_frame)
    if bands is not None:  # how sure the performance model is of each model job's runtime
        job_frame["runtime_band_low"], job_frame["runtime_band_high"] = bands
    _warn_stranded(job_frame)
    pools = scenario.cluster.pools
    burst = np.array([p.burst for p in pools])
    # Burst pools are the provider's: not installed here, no power on site (it is in their price).
    power = [PoolPower(0.0, 0.0) if p.burst else
             pool_power(p.device, p.nodes, p.devices_per_node, scenario.power.idle_fraction, scenario.power.pue)
             for p in pools]
    outages = failures.outages(retire_at) if failures is not None else None
    owned_capacity = [0 if p.burst else pool.capacity for p, pool in zip(pools, cluster.pools, strict=True)]
    timeline = recorder.timeline_frame(jobs["submit_time"].to_numpy(dtype=float), owned_capacity, power, outages,
                                       install_at, retire_at, burst)
    runs = recorder.runs() if burst.any() else None
    used_device_s = device_seconds_by_pool(runs, len(pools)) if runs is not None else None
    extra = {"scenario": scenario.name, "seed": seed, "policy": sched.policy, "gpus_total": sum(owned_capacity)}
    busy_device_seconds = recorder.busy_device_seconds
    if burst.any():
        burst_s = float(used_device_s[burst].sum())
        busy_device_seconds -= burst_s  # utilisation is of the owned devices
        extra.update(burst_gpu_hours=burst_s / 3600.0,
                     burst_jobs=int(job_frame["pool"].isin([p.name for p in pools if p.burst]).sum()))
    if any(p.network is not None for p in pools):
        extra.update(network_delay_gpu_hours=recorder.network_delay_device_seconds / 3600.0,
                     network_delayed_jobs=len(recorder.network_delay))
    if failures is not None:
        extra.update(failures=len(failures.failures), failure_interruptions=int(job_frame["failures"].sum()),
                     down_gpu_hours=float(((outages[:, 1] - outages[:, 0]) * outages[:, 2]).sum() / 3600.0))
    summary = summarize(job_frame, busy_device_seconds, sum(owned_capacity), timeline, extra=extra)
    if rates is not None:
        summary.update(period_cost(rates, pool_spans(timeline, install_at, retire_at), summary["energy_kwh"],
                                   used_device_s))
        timeline["usd_per_h"] = spend_rate_usd_per_h(rates, timeline["time_s"].to_numpy(dtype=float),
                                                     timeline["power_kw"].to_numpy(dtype=float), install_at,
                                                     retire_at, runs)
    return Results(scenario.name, seed, job_frame, timeline, summary)


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


def _warn_rotation_loses_work(policy, preemption, source: str) -> None:
    """A policy that moves jobs every round, shorter than the checkpoint interval, with preemptions
    that do not checkpoint: a job moved every round would never keep its work (and a run of such jobs
    would not end)."""
    rotation = policy.rotation_s()
    interval = preemption.checkpoint_interval
    if rotation is None or interval is None or preemption.checkpoint_on_preempt or rotation >= interval:
        return
    warnings.warn(
        f"{source}: {policy.name} moves jobs every {format_duration(rotation)}, more often than they checkpoint "
        f"(scheduler.preemption.checkpoint_interval: {format_duration(interval)}), and its preemptions do not "
        "checkpoint: a job moved at a round's end loses the work since its last checkpoint, and one moved "
        "every round keeps none. Gavel and Themis checkpoint at lease ends: set "
        "scheduler.preemption.checkpoint_on_preempt: true.", stacklevel=3)


@contextmanager
def _gc_paused():
    """The run allocates millions of short-lived, acyclic records (jobs, events); the cyclic garbage
    collector would rescan every live one again and again. Reference counting frees them anyway."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None, initial: int = 0):
    """A tqdm bar on stderr; `enabled=None` shows it only when stderr is a terminal."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, leave=False)
