"""The cheapest purchase that keeps a service level: a search over how many nodes of each option to add.

    name: keep-p95-under-1h
    scenario: base.yaml                 # relative to this file; or `base:` inline; the default when omitted
    seeds: 3
    target: {metric: p95_wait_s, at_most: 1h, period: 90d}   # every quarter's p95 wait under an hour
    options:                            # each a pool added to the base cluster; the search sizes it
      - {name: h100, pool: {device: h100-sxm, devices_per_node: 8}, max_nodes: 64}
      - {name: h200, pool: {device: h200-sxm, devices_per_node: 8, available_from: 180d}, max_nodes: 64}
      - {name: burst, pool: {device: h100-sxm, devices_per_node: 8, burst_after: 1h,
                             usd_per_device_hour: 4.5}, max_nodes: 64}

For each option the search finds the fewest nodes that meet the target, by bisection between none
and `max_nodes`, judging each size on the mean over the seeds (or, with `judged_on: ci95_upper`, on
the upper end of its 95% interval). Every size runs on the same seeds (common random numbers), so
the metric falls with the nodes added almost surely run by run, which bisection needs. The answer is
the feasible option whose run costs least (`cost_usd`: amortised purchases, rentals, burst hours
and energy over the simulated period), so the base scenario must have `cost:`. With `period`, the
target holds for every period (the worst one counts), and the plan says in which period the cluster
as it is first misses it. Options are searched in lockstep, so each round's runs (every option's next
size, every seed) go to the executor together.
"""

from __future__ import annotations

import copy
import math
import warnings
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from simulator.errors import CapsimError
from simulator.experiment.executors import RunTask, execute
from simulator.experiment.runner import run_key
from simulator.experiment.stats import ci95_half_width
from simulator.experiment.sweep import base_scenario_data, load_spec_file
from simulator.runner import build, preflight, progress_bar
from simulator.scenario import scenario_from_data
from simulator.units import format_duration, parse_duration


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Service levels a purchase can only improve (smaller is better); waits are also kept by period.
_TARGETS = ("mean_wait_s", "p50_wait_s", "p95_wait_s", "p99_wait_s", "max_wait_s", "mean_jct_s", "p95_jct_s")
_PERIOD_TARGETS = ("mean_wait_s", "p50_wait_s", "p95_wait_s")
QUARTER_S = 90 * 86400.0  # the period of a plan's cost table when its target has none


class TargetSpec(_Spec):
    metric: Literal[_TARGETS] = "p95_wait_s"
    at_most: float = Field(ge=0)  # seconds, or a duration such as 1h
    period: float | None = Field(default=None, gt=0)  # the target holds in every period of this length
    judged_on: Literal["mean", "ci95_upper"] = "mean"

    _durations = field_validator("at_most", "period", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _period_metric(self):
        if self.period is not None and self.metric not in _PERIOD_TARGETS:
            raise ValueError(f"a per-period target needs one of {', '.join(_PERIOD_TARGETS)}")
        return self


# Serving targets: latency percentiles at most a duration, SLO attainment at least a share.
SERVICE_LATENCIES = tuple(f"{kind}_p{q}_s" for kind in ("ttft", "tpot", "e2e") for q in (50, 95, 99))


class ServiceTargetSpec(_Spec):
    """A service's level, over the requests arriving in its busiest hour (`window: peak_hour`, the
    default) or over all of them (`window: run`): every threshold given must hold."""

    service: str
    ttft_p50_s: float | None = Field(default=None, gt=0)
    ttft_p95_s: float | None = Field(default=None, gt=0)
    ttft_p99_s: float | None = Field(default=None, gt=0)
    tpot_p50_s: float | None = Field(default=None, gt=0)
    tpot_p95_s: float | None = Field(default=None, gt=0)
    tpot_p99_s: float | None = Field(default=None, gt=0)
    e2e_p50_s: float | None = Field(default=None, gt=0)
    e2e_p95_s: float | None = Field(default=None, gt=0)
    e2e_p99_s: float | None = Field(default=None, gt=0)
    slo_attainment: float | None = Field(default=None, gt=0, le=1)  # at least this share (needs the service's slo)
    window: Literal["peak_hour", "run"] = "peak_hour"
    judged_on: Literal["mean", "ci95_upper"] = "mean"

    _durations = field_validator(*SERVICE_LATENCIES, mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _some(self):
        if not self.limits:
            raise ValueError(f"give at least one of {', '.join(SERVICE_LATENCIES)}, slo_attainment")
        return self

    @property
    def limits(self) -> dict[str, tuple[float, str]]:
        """metric -> (threshold, "at_most" or "at_least"), in a fixed order."""
        out = {m: (getattr(self, m), "at_most") for m in SERVICE_LATENCIES if getattr(self, m) is not None}
        if self.slo_attainment is not None:
            out["slo_attainment"] = (self.slo_attainment, "at_least")
        return out

    @property
    def metric(self) -> str:  # the first threshold: the one the plan's text leads with
        return next(iter(self.limits))


def _target_kind(value) -> str:
    if isinstance(value, ServiceTargetSpec) or (isinstance(value, dict) and "service" in value):
        return "ServiceTargetSpec"  # the tags are the models' names, which error key paths leave out
    return "TargetSpec"


class OptionSpec(_Spec):
    name: str
    pool: dict[str, Any]  # a pool of the scenario file, without `nodes` (the search sets it)
    max_nodes: int | None = Field(default=None, ge=1)  # a training target: the most nodes to add
    max_replicas: int | None = Field(default=None, ge=1)  # a service target: the most replicas
    layout: dict[str, Any] | None = None  # a service target: the replicas' layout on this device (tp, dtype, ...)

    @field_validator("pool")
    @classmethod
    def _no_nodes(cls, v):
        if "nodes" in v:
            raise ValueError("leave `nodes` out: the search sets it (up to max_nodes)")
        return v


class PurchasePlanSpec(_Spec):
    name: str = "purchase"
    scenario: str | None = None
    base: dict[str, Any] | None = None
    seeds: int = Field(default=3, ge=1, le=10_000)
    target: Annotated[Annotated[TargetSpec, Tag("TargetSpec")] | Annotated[ServiceTargetSpec, Tag("ServiceTargetSpec")],
                      Discriminator(_target_kind)]
    options: list[OptionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.scenario is not None and self.base is not None:
            raise ValueError("give either `scenario` (a file) or `base` (inline), not both")
        names = [o.name for o in self.options]
        if len(set(names)) < len(names):
            raise ValueError(f"option names must be unique, got {names}")
        return self

    @property
    def serving(self) -> bool:
        return isinstance(self.target, ServiceTargetSpec)


@dataclass
class PurchasePlan:
    name: str
    target: TargetSpec
    options: pd.DataFrame  # one row per option: the nodes it needs, its metric and cost, feasible, cheapest
    evaluations: pd.DataFrame  # one row per size tried and seed: the metric judged and the cost
    base_first_miss: float | None  # with a period target: when (s after the first submission) the first
    # period the cluster as it is misses the target starts, in any seed; None if it never does
    warnings: list[str] = field(default_factory=list)  # what makes an option's answer not a real one
    # Every run's table by period (the target's period, else quarters): option, nodes, seed and the
    # period's numbers, for the report's cost per period and when the cluster as it is fails.
    periods: pd.DataFrame | None = None
    period_s: float | None = None
    seeds: list[int] = field(default_factory=list)
    record: dict | None = None  # the base scenario as the report shows it (report.simulated)
    option_specs: list[dict] = field(default_factory=list)
    base_summary: dict = field(default_factory=dict)  # the base scenario's first seed's summary numbers

    @property
    def cheapest(self) -> pd.Series | None:
        best = self.options[self.options["cheapest"]]
        return None if best.empty else best.iloc[0]


def load_purchase_plan(source: str | Path | dict) -> tuple[PurchasePlanSpec, dict, str, Path]:
    """The plan, the base scenario's data, where it came from and the folder its paths are relative to."""
    spec, name, base_dir = load_spec_file(source, PurchasePlanSpec, "plan", "scenario, seeds, target, options")
    if not spec.serving:
        for i, option in enumerate(spec.options):
            if option.max_nodes is None:
                raise CapsimError("give max_nodes (the most nodes the search adds)", source=name,
                                  where=f"options[{i}].max_nodes")
            if option.max_replicas is not None or option.layout is not None:
                key = "max_replicas" if option.max_replicas is not None else "layout"
                raise CapsimError(f"{key} goes with a service target (target: {{service: ...}})", source=name,
                                  where=f"options[{i}].{key}")
    base, base_source, scenario_dir = base_scenario_data(spec, name, base_dir)
    if not isinstance(base, dict) or base.get("cost") is None:
        raise CapsimError("the base scenario needs `cost:` (the search picks the cheapest option)",
                          source=base_source)
    return spec, base, name, scenario_dir


def _with_option(base: dict, option: OptionSpec | None, nodes: int) -> dict:
    data = copy.deepcopy(base)
    if option is not None and nodes > 0:
        data["cluster"]["pools"].append({"name": f"added-{option.name}", **option.pool, "nodes": nodes})
    return data


def cheapest_purchase(source, workers: int = 1, ray_address: str | None = None,
                      progress: bool | None = None) -> PurchasePlan:
    """Search every option of a purchase plan (a YAML file, a dict) and pick the cheapest that meets
    the target."""
    spec, base, name, scenario_dir = load_purchase_plan(source)
    if spec.serving:
        return _cheapest_fleet(spec, base, name, scenario_dir, workers, ray_address, progress)
    search = _Search(spec, base, name, scenario_dir, workers, ray_address)
    for option in spec.options:  # a bad pool fails here, before any run
        search.scenario_of(option, option.max_nodes)
    notes = _below_the_floor(search)  # an impossible target fails here too, before any run
    bar = progress_bar(None, f"plan {spec.name}", "run", progress)
    try:
        search.evaluate([(None, 0)] + [(o, o.max_nodes) for o in spec.options], bar)
        base_meets = search.judged(None, 0)["meets"]
        never = _never_in_service(search)  # option name -> why its pool never enters service
        notes += list(never.values())
        # option -> [most nodes known to miss, fewest known to meet]
        bounds = {o.name: [0, o.max_nodes] for o in spec.options
                  if not base_meets and o.name not in never and search.judged(o, o.max_nodes)["meets"]}
        while any(hi - lo > 1 for lo, hi in bounds.values()):
            mids = [(o, (bounds[o.name][0] + bounds[o.name][1]) // 2) for o in spec.options
                    if o.name in bounds and bounds[o.name][1] - bounds[o.name][0] > 1]
            search.evaluate(mids, bar)
            for option, mid in mids:
                bounds[option.name][1 if search.judged(option, mid)["meets"] else 0] = mid
    finally:
        if bar is not None:
            bar.close()

    target = spec.target
    options = []
    for option in spec.options:
        feasible = base_meets or option.name in bounds
        nodes = 0 if base_meets else bounds[option.name][1] if feasible else option.max_nodes
        result = search.judged(option, nodes)
        verdict = ("no purchase needed" if base_meets else "meets the target" if feasible
                   else "never in service" if option.name in never
                   else f"not enough at max_nodes = {option.max_nodes}")
        options.append({"option": option.name, "device": option.pool.get("device"), "nodes": nodes,
                        "devices": nodes * int(option.pool.get("devices_per_node", 0)), "feasible": feasible,
                        f"{target.metric}_mean": result["mean"], f"{target.metric}_ci95": result["ci95"],
                        "cost_usd_mean": result["cost_mean"], "cost_usd_ci95": result["cost_ci95"],
                        "verdict": verdict, "max_nodes": option.max_nodes})
        if not feasible and option.name not in never:
            notes.append(f"option {option.name}: not enough at max_nodes = {option.max_nodes}: {target.metric} "
                         f"is {format_duration(result['mean'])} with {option.max_nodes} node"
                         f"{'s' if option.max_nodes != 1 else ''} added, against "
                         f"{format_duration(target.at_most)}; this is no answer: raise max_nodes (or add options)")
    table = pd.DataFrame(options)
    feasible_costs = table["cost_usd_mean"].where(table["feasible"])
    table["cheapest"] = False
    if feasible_costs.notna().any():
        table.loc[feasible_costs.idxmin(), "cheapest"] = True
        if not base_meets:
            table.loc[feasible_costs.idxmin(), "verdict"] = "cheapest"
    evaluations = pd.DataFrame(search.rows)
    base_first_miss = None
    if target.period is not None:
        misses = evaluations.loc[evaluations["nodes"] == 0, "first_miss_s"]
        base_first_miss = None if misses.isna().all() else float(misses.min())
    for note in notes:
        warnings.warn(note, stacklevel=2)
    from simulator.report.simulated import scenario_record

    return PurchasePlan(spec.name, target, table, evaluations, base_first_miss, notes,
                        pd.DataFrame(search.period_rows), search.period_s, search.seeds,
                        scenario_record(search.scenario_of(None, 0)), [o.model_dump() for o in spec.options],
                        search.base_summary)


def _never_in_service(search: _Search) -> dict[str, str]:
    """Options whose pool enters service only after the simulated period ends (its `available_from`
    at or beyond the last completion of the base runs, in every seed): whatever their size, the run
    never uses them, so their search could only report "not enough"."""
    makespans = [r["makespan_s"] for r in search.rows if r["option"] is None]
    horizon = max(makespans)
    never = {}
    for option in search.spec.options:
        since = search.scenario_of(option, option.max_nodes).cluster.pools[-1].available_from
        if since > 0 and since >= horizon:
            never[option.name] = (
                f"option {option.name} never enters service: its pool is available_from "
                f"{format_duration(since)} after the first submission, but the simulated period ends at "
                f"{format_duration(horizon)} (the last job's completion); no size of it can meet the target. "
                "Simulate a longer period (a longer workload) or bring the date forward")
    return never


def _below_the_floor(search: _Search) -> list[str]:
    """A completion-time target below what the jobs' own run times give with no wait at all (unlimited
    capacity) cannot be met by any purchase: an error before any run. Waits have a floor of zero. For
    model jobs the run time is the reference device's, which a faster device beats: a warning."""
    target = search.spec.target
    if target.metric not in _JCT_FLOORS:
        return []
    floors, model_jobs = [], False
    for seed in search.seeds:
        jobs = build(search.scenario_of(None, 0), seed, progress=False).context.jobs
        floors.append(_JCT_FLOORS[target.metric](jobs["duration"].to_numpy(dtype=float)))
        model_jobs = model_jobs or ("model" in jobs.columns and jobs["model"].notna().any())
    floor = float(np.mean(floors))
    if floor <= target.at_most:
        return []
    text = (f"the target {target.metric} at most {format_duration(target.at_most)} is below the no-queue floor: "
            f"with no wait at all (unlimited capacity) the jobs' run times alone give {target.metric} "
            f"{format_duration(floor)} (mean over the seeds)")
    if not model_jobs:
        raise CapsimError(text + "; no purchase can meet it", source=search.name, where="target.at_most")
    return [text + " at the reference device's speed; only faster devices could meet it"]


_JCT_FLOORS = {"mean_jct_s": lambda d: float(np.mean(d)) if len(d) else 0.0,
               "p95_jct_s": lambda d: float(np.percentile(d, 95)) if len(d) else 0.0}


class _Search:
    """The runs of a plan: each size of each option, validated once, run once per seed, judged."""

    def __init__(self, spec: PurchasePlanSpec, base: dict, name: str, scenario_dir: Path, workers: int,
                 ray_address: str | None):
        self.spec, self.base, self.name, self.scenario_dir = spec, base, name, scenario_dir
        self.workers, self.ray_address = workers, ray_address
        first_seed = int(base.get("seed", 0) or 0)
        self.seeds = list(range(first_seed, first_seed + spec.seeds))
        self.scenarios: dict[tuple[str, int], Any] = {}
        self.results: dict[tuple[str, int], dict] = {}  # size -> _judge's verdict
        self.rows: list[dict] = []  # one per size and seed
        self.period_rows: list[dict] = []  # one per size, seed and period
        self.period_s = spec.target.period or QUARTER_S  # every run keeps its table by period
        self.base_summary: dict = {}

    @staticmethod
    def key(option: OptionSpec | None, nodes: int) -> tuple[str, int]:
        """Every option with no node added is the base scenario."""
        return ("", 0) if option is None or nodes == 0 else (option.name, nodes)

    def scenario_of(self, option: OptionSpec | None, nodes: int):
        key = self.key(option, nodes)
        if key not in self.scenarios:
            where = "the base scenario" if key == ("", 0) else f"option {option.name} with {nodes} nodes"
            scenario = scenario_from_data(_with_option(self.base, option, nodes), source=f"{self.name}: {where}",
                                          base_dir=self.scenario_dir)
            preflight(scenario)
            self.scenarios[key] = scenario
        return self.scenarios[key]

    def judged(self, option: OptionSpec | None, nodes: int) -> dict:
        return self.results[self.key(option, nodes)]

    def evaluate(self, sizes: list[tuple[OptionSpec | None, int]], bar) -> None:
        """Run every size not yet run, for every seed, all in one batch for the executor."""
        target = self.spec.target
        todo: dict[tuple[str, int], list[RunTask]] = {}
        for option, nodes in sizes:
            key = self.key(option, nodes)
            if key not in self.results and key not in todo:
                scenario = self.scenario_of(option, nodes)
                todo[key] = [RunTask(run_key(scenario, seed, self.period_s), scenario, seed, self.period_s)
                             for seed in self.seeds]
        outputs = {}
        tasks = [t for ts in todo.values() for t in ts]
        with closing(execute(tasks, self.workers, self.ray_address)) as finished:  # closed: no worker outlives it
            for task_key, output in finished:
                outputs[task_key] = output
                if bar is not None:
                    bar.update(1)
        for key, tasks in todo.items():
            values = [_judged_value(outputs[t.key], target) for t in tasks]
            costs = [outputs[t.key]["summary"]["cost_usd"] for t in tasks]
            self.results[key] = _judge(values, costs, target)
            self.rows += [{"option": key[0] or None, "nodes": key[1], "seed": t.seed, target.metric: value,
                           "cost_usd": cost, "first_miss_s": _first_miss(outputs[t.key], target),
                           "makespan_s": float(outputs[t.key]["summary"]["makespan_s"])}
                          for t, value, cost in zip(tasks, values, costs, strict=True)]
            self.period_rows += [{"option": key[0] or None, "nodes": key[1], "seed": t.seed, **row}
                                 for t in tasks for row in outputs[t.key]["periods"] or ()]
            if key == ("", 0):
                self.base_summary = {k: v for k, v in outputs[tasks[0].key]["summary"].items()
                                     if isinstance(v, int | float | str)}


def _judged_value(output: dict, target: TargetSpec) -> float:
    """A run's metric: the summary's, or with a period the worst period's (periods with jobs only)."""
    if target.period is None:
        return float(output["summary"][target.metric])
    values = [p[target.metric] for p in output["periods"] if p.get("jobs_submitted", 0) > 0]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(max(values)) if values else math.nan


def _first_miss(output: dict, target: TargetSpec) -> float | None:
    if target.period is None:
        return None
    for p in output["periods"]:
        value = p.get(target.metric)
        if value is not None and not math.isnan(value) and value > target.at_most:
            return float(p["period"] * target.period)
    return None


def _judge(values: list[float], costs: list[float], target: TargetSpec) -> dict:
    v, c = pd.Series(values, dtype=float), pd.Series(costs, dtype=float)
    n = pd.Series([len(values)])
    ci = float(ci95_half_width(pd.Series([v.std(ddof=1)]), n).iloc[0])
    cost_ci = float(ci95_half_width(pd.Series([c.std(ddof=1)]), n).iloc[0])
    judged = v.mean() + (0.0 if target.judged_on == "mean" or np.isnan(ci) else ci)
    return {"mean": float(v.mean()), "ci95": ci, "cost_mean": float(c.mean()), "cost_ci95": cost_ci,
            "meets": bool(judged <= target.at_most)}


# Serving targets ---------------------------------------------------------------------------------
#
#     target: {service: chat, ttft_p99_s: 1s, tpot_p99_s: 50ms}       # over the busiest hour's requests
#     options:                                                         # a pool per device type
#       - {name: h100, pool: {device: h100-sxm, devices_per_node: 8}, layout: {tp: 4}, max_replicas: 16}
#       - {name: h200, pool: {device: h200-sxm, devices_per_node: 8}, layout: {tp: 2}, max_replicas: 16}
#
# For each option the search finds the fewest replicas of the service that meet every threshold, by
# bisection between none (which serves nothing) and max_replicas, on the same seeds (common random
# numbers: every size sees the same requests). Each size's replicas go in a pool of the option's device
# added to the base cluster, with as many nodes as they need (per node: devices_per_node // tp
# replicas), and the service is moved there. The cheapest is the feasible option whose service costs
# least: its `cost_usd`, the replicas' devices held for the run (replicas x tp x the pool's price per
# device-second, amortised `price_usd` or rented `usd_per_device_hour`) plus their energy.

PEAK_WINDOW_S = 3600.0


def window_metrics(results, service: str, window: str, slo: dict | None) -> dict:
    """A service's latency percentiles and SLO attainment over the requests arriving in its busiest hour
    (window "peak_hour": the hour, counted in whole hours from the run's start, with the most arrivals;
    the earliest on a tie) or over all its requests (window "run", which gives the summary's figures).
    Latencies are over the completed requests, as in the summary; SLO attainment over all of them (but
    closed-loop turns never sent, which did not arrive)."""
    req = results.requests
    req = req[(req["service"] == service) & (req["status"] != "unsent")] if req is not None else None
    if req is None or req.empty:
        return {"window_start_s": math.nan, "window_requests": 0}
    jobs = results.jobs
    t0 = float(jobs["submit_time"].min()) if len(jobs) else 0.0  # the run's start (engine/simulation.py)
    start = math.nan
    if window == "peak_hour":
        hour = np.floor((req["arrival_s"].to_numpy(float) - t0) / PEAK_WINDOW_S).astype(np.int64)
        counts = pd.Series(hour).value_counts()
        busiest = int(counts[counts == counts.max()].index.min())
        req = req[hour == busiest]
        start = busiest * PEAK_WINDOW_S
    out = {"window_start_s": start, "window_requests": int(len(req))}
    done = req[req["status"] == "completed"]
    multi = done[done["output_tokens"] > 1]
    latencies = {"ttft": (done["first_token_s"] - done["arrival_s"]).to_numpy(float),
                 "tpot": ((multi["end_s"] - multi["first_token_s"]) / (multi["output_tokens"] - 1)).to_numpy(float),
                 "e2e": (done["end_s"] - done["arrival_s"]).to_numpy(float)}
    for kind, values in latencies.items():
        for q in (50, 95, 99):
            out[f"{kind}_p{q}_s"] = float(np.percentile(values, q)) if len(values) else math.inf
    if slo:
        met = (req["status"] == "completed").to_numpy().copy()
        gen = req["output_tokens"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = (req["end_s"] - req["first_token_s"]).to_numpy(float) / (gen - 1)
        if slo.get("ttft_s") is not None:
            met &= (req["first_token_s"] - req["arrival_s"]).to_numpy(float) <= slo["ttft_s"]
        if slo.get("tpot_s") is not None:
            met &= (gen == 1) | (tpot <= slo["tpot_s"])
        if slo.get("e2e_s") is not None:
            met &= (req["end_s"] - req["arrival_s"]).to_numpy(float) <= slo["e2e_s"]
        out["slo_attainment"] = float(met.mean())
    return out


def _check_serving_plan(spec: PurchasePlanSpec, base: dict, name: str) -> dict:
    """The service the target names, from the base scenario; every option sized in replicas."""
    target = spec.target
    services = base.get("services") or []
    found = [s for s in services if isinstance(s, dict) and s.get("name") == target.service]
    if not found:
        names = ", ".join(str(s.get("name")) for s in services if isinstance(s, dict)) or "none"
        raise CapsimError(f"the base scenario has no service named {target.service!r} (services: {names})",
                          source=name, where="target.service")
    if target.slo_attainment is not None and not found[0].get("slo"):
        raise CapsimError("slo_attainment needs the service's `slo:` in the base scenario (its thresholds per "
                          "request)", source=name, where="target.slo_attainment")
    for i, option in enumerate(spec.options):
        if option.max_replicas is None:
            raise CapsimError("a service target sizes each option in replicas: give max_replicas", source=name,
                              where=f"options[{i}].max_replicas")
        if option.max_nodes is not None:
            raise CapsimError("a service target sizes each option in replicas: give max_replicas, not max_nodes",
                              source=name, where=f"options[{i}].max_nodes")
    return found[0]


def _tp(service: dict, option: OptionSpec) -> int:
    return int({**(service.get("layout") or {}), **(option.layout or {})}.get("tp", 1))


def _with_replicas(base: dict, target: ServiceTargetSpec, option: OptionSpec, replicas: int) -> tuple[dict, int]:
    """The base scenario with the service's `replicas` on a pool of the option's device added to the
    cluster (as many nodes as they need), and the number of nodes."""
    data = copy.deepcopy(base)
    service = next(s for s in data["services"] if s.get("name") == target.service)
    tp = _tp(service, option)
    per_node = int(option.pool.get("devices_per_node", 0) or 0)
    nodes = math.ceil(replicas / max(1, per_node // tp)) if per_node >= tp else replicas
    pool = option.pool.get("name") or f"serve-{option.name}"
    data["cluster"]["pools"].append({**option.pool, "name": pool, "nodes": nodes})
    service.update(pool=pool, replicas=replicas, layout={**(service.get("layout") or {}), **(option.layout or {})})
    return data, nodes


def _cheapest_fleet(spec: PurchasePlanSpec, base: dict, name: str, scenario_dir: Path, workers: int,
                    ray_address: str | None, progress: bool | None) -> PurchasePlan:
    from functools import partial

    target = spec.target
    service = _check_serving_plan(spec, base, name)
    limits = target.limits
    first_seed = int(base.get("seed", 0) or 0)
    seeds = list(range(first_seed, first_seed + spec.seeds))
    measure = partial(window_metrics, service=target.service, window=target.window, slo=service.get("slo"))
    scenarios: dict[tuple[str, int], tuple[Any, int]] = {}
    results: dict[tuple[str, int], dict] = {}
    rows: list[dict] = []

    def scenario_of(option: OptionSpec, replicas: int):
        key = (option.name, replicas)
        if key not in scenarios:
            data, nodes = _with_replicas(base, target, option, replicas)
            scenario = scenario_from_data(data, source=f"{name}: option {option.name} with {replicas} replicas",
                                          base_dir=scenario_dir)
            preflight(scenario)
            scenarios[key] = (scenario, nodes)
        return scenarios[key]

    def evaluate(sizes: list[tuple[OptionSpec, int]], bar) -> None:
        todo: dict[tuple[str, int], list[RunTask]] = {}
        for option, replicas in sizes:
            key = (option.name, replicas)
            if key not in results and key not in todo:
                scenario, _ = scenario_of(option, replicas)
                todo[key] = [RunTask(run_key(scenario, seed, None), scenario, seed, None, measure) for seed in seeds]
        outputs = {}
        with closing(execute([t for ts in todo.values() for t in ts], workers, ray_address)) as finished:
            for task_key, output in finished:
                outputs[task_key] = output
                if bar is not None:
                    bar.update(1)
        for key, tasks in todo.items():
            runs = []
            for t in tasks:
                out = outputs[t.key]
                svc = out["summary"]["services"][target.service]
                runs.append({"option": key[0], "replicas": key[1], "nodes": scenarios[key][1], "seed": t.seed,
                             **{m: out["measured"].get(m, math.nan) for m in limits},
                             "cost_usd": svc.get("cost_usd", math.nan),
                             "usd_per_million_tokens": svc.get("usd_per_million_tokens", math.nan),
                             "energy_per_token_j": svc.get("energy_per_token_j", math.nan),
                             "window_start_s": out["measured"]["window_start_s"],
                             "window_requests": out["measured"]["window_requests"],
                             "makespan_s": float(out["summary"]["makespan_s"])})
            rows.extend(runs)
            results[key] = _judge_service(pd.DataFrame(runs), limits, target.judged_on)

    for i, option in enumerate(spec.options):  # a bad pool or layout fails here, before any run
        service_tp = _tp(service, option)
        per_node = int(option.pool.get("devices_per_node", 0) or 0)
        if per_node and service_tp > per_node:
            raise CapsimError(f"a replica of tp={service_tp} needs {service_tp} devices of one node; the option's "
                              f"pool has {per_node} per node", source=name, where=f"options[{i}].layout.tp")
        scenario_of(option, option.max_replicas)
    bar = progress_bar(None, f"plan {spec.name}", "run", progress)
    try:
        evaluate([(o, o.max_replicas) for o in spec.options], bar)
        # option -> [most replicas known to miss, fewest known to meet]; none serves nothing
        bounds = {o.name: [0, o.max_replicas] for o in spec.options if results[(o.name, o.max_replicas)]["meets"]}
        while any(hi - lo > 1 for lo, hi in bounds.values()):
            mids = [(o, (bounds[o.name][0] + bounds[o.name][1]) // 2) for o in spec.options
                    if o.name in bounds and bounds[o.name][1] - bounds[o.name][0] > 1]
            evaluate(mids, bar)
            for option, mid in mids:
                bounds[option.name][1 if results[(option.name, mid)]["meets"] else 0] = mid
    finally:
        if bar is not None:
            bar.close()

    notes, table = [], []
    for option in spec.options:
        feasible = option.name in bounds
        replicas = bounds[option.name][1] if feasible else option.max_replicas
        result = results[(option.name, replicas)]
        tp = _tp(service, option)
        row = {"option": option.name, "device": option.pool.get("device"), "replicas": replicas, "tp": tp,
               "devices": replicas * tp, "nodes": scenarios[(option.name, replicas)][1], "feasible": feasible}
        for m in limits:
            row[f"{m}_mean"], row[f"{m}_ci95"] = result[m]
        for m in ("cost_usd", "usd_per_million_tokens", "energy_per_token_j"):
            row[f"{m}_mean"], row[f"{m}_ci95"] = result[m]
        row["verdict"] = "meets the target" if feasible else f"not enough at max_replicas = {option.max_replicas}"
        row["max_replicas"] = option.max_replicas
        table.append(row)
        if not feasible:
            missed = ", ".join(f"{m} {_limit_text(m, result[m][0])}" for m, (v, how) in limits.items()
                               if not result["each"][m])
            notes.append(f"option {option.name}: not enough at max_replicas = {option.max_replicas}: with "
                         f"{option.max_replicas} replicas {missed}, against the target; this is no answer: raise "
                         "max_replicas (or add options)")
    options = pd.DataFrame(table)
    costs = options["cost_usd_mean"].where(options["feasible"])
    options["cheapest"] = False
    if costs.notna().any():
        options.loc[costs.idxmin(), "cheapest"] = True
        options.loc[costs.idxmin(), "verdict"] = "cheapest"
    for note in notes:
        warnings.warn(note, stacklevel=3)
    from simulator.report.simulated import scenario_record

    first = spec.options[0]
    return PurchasePlan(spec.name, target, options, pd.DataFrame(rows), None, notes, None, None, seeds,
                        scenario_record(scenario_of(first, first.max_replicas)[0]),
                        [o.model_dump(exclude_none=True) for o in spec.options], {})


def _limit_text(metric: str, value: float) -> str:
    return f"{value:.1%}" if metric == "slo_attainment" else f"{value * 1e3:,.1f} ms"


def _judge_service(runs: pd.DataFrame, limits: dict, judged_on: str) -> dict:
    """Each metric's mean and 95% half-width over the seeds; meets when every threshold holds (on the
    mean, or on the interval's worse end with ci95_upper)."""
    out, each = {}, {}
    n = pd.Series([len(runs)])
    for m in [*limits, "cost_usd", "usd_per_million_tokens", "energy_per_token_j"]:
        v = runs[m].astype(float)
        ci = float(ci95_half_width(pd.Series([v.std(ddof=1)]), n).iloc[0])
        out[m] = (float(v.mean()), ci)
        if m in limits:
            margin = 0.0 if judged_on == "mean" or np.isnan(ci) else ci
            threshold, how = limits[m]
            each[m] = bool(v.mean() + margin <= threshold if how == "at_most" else v.mean() - margin >= threshold)
    out["each"] = each
    out["meets"] = all(each.values())
    return out
