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
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class OptionSpec(_Spec):
    name: str
    pool: dict[str, Any]  # a pool of the scenario file, without `nodes` (the search sets it)
    max_nodes: int = Field(ge=1)

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
    target: TargetSpec
    options: list[OptionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.scenario is not None and self.base is not None:
            raise ValueError("give either `scenario` (a file) or `base` (inline), not both")
        names = [o.name for o in self.options]
        if len(set(names)) < len(names):
            raise ValueError(f"option names must be unique, got {names}")
        return self


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
