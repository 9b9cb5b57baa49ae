"""Sweeps: one base scenario, axes and cases of overrides, and seeds; every combination is one run.

    name: policy-vs-size
    scenario: base.yaml                 # relative to this file; the embedded default when omitted
    seeds: 5                            # the base seed and the next four, or a list
    axes:                               # the cartesian product of every axis
      scheduler.policy: [fifo, easy-backfill, tiresias]
      cluster.pools[0].nodes: [64, 80]
    cases:                              # optional: named sets of overrides that vary together
      - name: h200
        set:                            # (key paths with [ ] need block style or quotes in YAML)
          cluster.pools[0].device: h200-sxm
          cluster.pools[0].nodes: 48
    periods: 90d                        # optional: also each run's table by quarter

Every point uses the same seeds (common random numbers): policies and purchases are compared on
the same arrivals, which is what makes their paired differences tight (stats.compare).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.errors import CapsimError
from simulator.experiment.metric_names import unknown_metrics_text
from simulator.runner import preflight
from simulator.scenario import Scenario, default_scenario_text, scenario_from_data
from simulator.units import parse_duration
from simulator.yaml_file import format_key_path, read_yaml, validation_error

DEFAULT_METRICS = ["mean_wait_s", "p95_wait_s", "gpu_utilization", "mean_jct_s"]
MAX_SEEDS = 10_000
MAX_POINTS = 100_000  # every point's scenario is validated before the first run
# Summary numbers that exist only when the scenario sets up what they measure.
_METRIC_NEEDS = {"cost_usd": "cost", "capex_usd": "cost", "rental_usd": "cost", "energy_usd": "cost",
                 "failures": "failures", "failure_interruptions": "failures", "down_gpu_hours": "failures"}
_TOKEN = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]")


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    set: dict[str, Any] = Field(default_factory=dict)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "sweep"
    scenario: str | None = None  # a scenario file, relative to the sweep file
    base: dict[str, Any] | None = None  # or the base scenario inline
    seeds: int | list[int] = 1
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    cases: list[CaseSpec] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    periods: float | None = Field(default=None, gt=0)  # also keep each run's table by period (e.g. 90d)

    _periods = field_validator("periods", mode="before")(lambda v: None if v is None else parse_duration(v))

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int) and v < 1 or isinstance(v, list) and (not v or min(v) < 0 or len(set(v)) < len(v)):
            raise ValueError("expected a count >= 1 or a list of distinct seeds >= 0")
        if (v if isinstance(v, int) else len(v)) > MAX_SEEDS or isinstance(v, list) and max(v) >= 2**63:
            raise ValueError(f"expected at most {MAX_SEEDS:,} seeds, each below 2^63")
        return v

    @field_validator("axes")
    @classmethod
    def _axes(cls, v):
        for path, values in v.items():
            if not values:
                raise ValueError(f"axis {path!r} has no values")
        return v

    @model_validator(mode="after")
    def _one_base(self):
        if self.scenario is not None and self.base is not None:
            raise ValueError("give either `scenario` (a file) or `base` (inline), not both")
        points = max(1, len(self.cases)) * math.prod(len(values) for values in self.axes.values())
        if points > MAX_POINTS:
            raise ValueError(f"the axes and cases make {points:,} points; at most {MAX_POINTS:,} can be swept")
        return self


@dataclass(frozen=True)
class Point:
    """One combination of overrides: `labels` maps each axis (and `case`) to its value here."""

    index: int
    labels: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class Sweep:
    name: str
    points: list[Point]
    seeds: list[int]
    metrics: list[str]
    label_columns: list[str]
    period_s: float | None = None

    @property
    def runs(self) -> int:
        return len(self.points) * len(self.seeds)


def parse_key_path(path: str) -> list[str | int]:
    """`cluster.pools[0].nodes` -> ['cluster', 'pools', 0, 'nodes']."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or (pos == 0 and m.group(0).startswith(".")):
            raise ValueError(f"cannot read key path {path!r} at character {pos + 1}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"a key path starts with a scenario key, got {path!r}")
    return parts


def set_key_path(data: dict, path: str, value: Any) -> None:
    """Set `path` in nested scenario data. Missing mapping keys are created (the scenario's own
    validation then rejects unknown ones); a list index may be one past the end to append."""
    parts = parse_key_path(path)
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = format_key_path(parts[:depth]) if depth else "the scenario"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"{here} is not a list, so [{part}] does not apply")
            if part > len(node) or (part == len(node) and not last):
                raise ValueError(f"index {part} is out of range: {here} has {len(node)} item(s)")
            if last:
                if part == len(node):
                    node.append(value)
                else:
                    node[part] = value
                return
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"{here} is not a mapping, so .{part} does not apply")
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})


def load_sweep(source: str | Path | dict, metrics: list[str] | None = None) -> Sweep:
    """A sweep from a YAML file or a dict, with every point's scenario validated before any run.
    `metrics` replaces the file's `metrics:` (`capsim sweep --metric`); a metric is a summary key or
    `services.<service>.<key>` (experiment/metric_names.py), checked against every point."""
    spec, name, base_dir = load_spec_file(source, SweepSpec, "sweep", "scenario, seeds, axes, cases, metrics")
    if metrics:
        spec = spec.model_copy(update={"metrics": list(metrics)})
    return _expand(spec, name, base_dir)


def load_spec_file(source: str | Path | dict, model: type[BaseModel], kind: str, keys: str):
    """A YAML file (or a dict) of `kind` validated into `model`: (spec, its name in error messages, the
    folder its relative paths start from)."""
    if isinstance(source, dict):
        data, name, base_dir = source, f"<{kind}>", Path(".")
    else:
        path = Path(source)
        data = read_yaml(path, f"{kind} file")
        name, base_dir = str(path), path.resolve().parent
    if not isinstance(data, dict):
        raise CapsimError(f"expected a mapping of {kind} keys ({keys})", source=name)
    try:
        return model.model_validate(data), name, base_dir
    except ValidationError as exc:
        raise validation_error(exc, name) from None


def base_scenario_data(spec, name: str, base_dir: Path) -> tuple[dict, str, Path]:
    """The base scenario of a sweep or plan file (`base` inline, `scenario` a file, else the default):
    its data, where it came from, and the folder its paths are relative to."""
    if spec.base is not None:
        return spec.base, f"{name} (base)", base_dir
    if spec.scenario is None:
        return yaml.safe_load(default_scenario_text()), "<embedded default scenario>", Path(".")
    path = base_dir / spec.scenario  # an absolute `scenario` stays absolute
    return read_yaml(path, f"the base scenario named in {name}"), str(path), path.resolve().parent


def _expand(spec: SweepSpec, name: str, base_dir: Path) -> Sweep:
    base, base_source, scenario_dir = base_scenario_data(spec, name, base_dir)
    if not isinstance(base, dict):
        raise CapsimError("expected a mapping of scenario keys", source=base_source)
    cases = spec.cases or [None]
    axis_paths = list(spec.axes)
    points = []
    for case, values in itertools.product(cases, itertools.product(*spec.axes.values())):
        data = copy.deepcopy(base)
        labels: dict[str, Any] = {} if case is None else {"case": case.name}
        overrides = [(f"cases[{cases.index(case)}].set.{p}", p, v) for p, v in (case.set.items() if case else ())]
        overrides += [(f"axes.{p}", p, v) for p, v in zip(axis_paths, values, strict=True)]
        for where, path, value in overrides:
            try:
                set_key_path(data, path, value)
            except ValueError as exc:
                raise CapsimError(str(exc), source=name, where=where) from None
        labels.update(zip(axis_paths, values, strict=True))
        here = point_name(labels)
        scenario = scenario_from_data(data, source=f"{name}: point {here}", base_dir=scenario_dir)
        preflight(scenario)
        check_metrics(spec.metrics, scenario, here if labels else None, name)
        points.append(Point(len(points), labels, scenario))
    first_seed = int(base.get("seed", 0) or 0)
    seeds = list(range(first_seed, first_seed + spec.seeds)) if isinstance(spec.seeds, int) else spec.seeds
    label_columns = (["case"] if spec.cases else []) + axis_paths
    return Sweep(spec.name, points, seeds, spec.metrics, label_columns, spec.periods)


def check_metrics(metrics: list[str], scenario: Scenario, at_point: str | None, source: str | None) -> None:
    """Every metric is a figure the point's runs will have (a CapsimError in one line if not). A service's
    figures depend on its settings (an SLO, autoscaling), so every point is asked."""
    bad = unknown_metrics_text(metrics, scenario, f" at point {at_point}" if at_point else "")
    if bad is not None:
        raise CapsimError(bad, source=source, where="metrics")
    for metric in metrics:
        needs = _METRIC_NEEDS.get(metric)
        if needs is not None and getattr(scenario, needs) is None:
            raise CapsimError(f"{metric} needs `{needs}:` in the scenario, which point {at_point or 'the base scenario'}"
                              " lacks", source=source, where="metrics")


def point_name(labels: dict) -> str:
    return ", ".join(f"{k}={cell_value(v)}" for k, v in labels.items()) or "the base scenario"


def cell_value(value: Any) -> Any:
    """An axis value as a table cell: scalars as they are, mappings and lists as compact JSON."""
    return value if isinstance(value, str | int | float | bool) or value is None else json.dumps(
        value, sort_keys=True, separators=(",", ":"))
