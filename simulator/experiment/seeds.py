"""One scenario over several seeds: `capsim run --seeds N` (or the scenario's `seeds:`).

The seeds are the scenario's seed and the next ones (seed, seed+1, ..., seed+N-1), as a sweep's
`seeds: N` takes them. Every number of the summary becomes the mean over the seeds, under its usual
key, with `<key>_ci95`, the half-width of its 95% Student-t interval (stats.ci95_half_width: the
interval is for the mean, not a range of single runs); nested figures (each service's under
`services`) the same way, in place. `seeds` lists the seeds and `per_seed` keeps each seed's summary
numbers (with each service's numbers under `services`). The jobs and timeline are the first seed's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real

import pandas as pd

from simulator.experiment.metric_names import service_columns
from simulator.experiment.stats import ci95_half_width
from simulator.results import RUN_ID_KEY, Results
from simulator.runner import _as_scenario, run

# Not figures of the run: the seed itself, and what names it.
_NOT_FIGURES = ("seed", RUN_ID_KEY)


@dataclass
class SeedResults:
    first: Results  # the first seed's run, its own summary untouched
    runs: pd.DataFrame  # one row per seed: the seed, every top-level number of its summary, and each service's
    # numbers as services.<name>.<key> (the names stats.aggregate / compare and sweeps take)
    summary: dict  # the mean under each key, <key>_ci95, seeds, per_seed

    @property
    def results(self) -> Results:
        """The first seed's jobs and timeline with the summary over the seeds: what `--out` writes."""
        return replace(self.first, summary=self.summary, run_id=None)


def run_seeds(scenario, seeds: int, seed: int | None = None, progress: bool | None = None, **kwargs) -> SeedResults:
    """Run `scenario` (as simulator.run takes it) with seeds seed, seed+1, ..., seed+seeds-1 (`seed`: the
    scenario's when None); other keyword arguments go to simulator.run."""
    scenario = _as_scenario(scenario)
    first_seed = scenario.seed if seed is None else seed
    results = [run(scenario, s, progress, **kwargs) for s in range(first_seed, first_seed + seeds)]
    summaries = [r.summary for r in results]
    summary = aggregate_summaries(summaries)
    numbers = [k for k, v in summaries[0].items() if _is_number(v) and k != RUN_ID_KEY]
    top = pd.DataFrame([{k: s.get(k) for k in numbers} for s in summaries])
    # each service's figures as services.<name>.<key> columns, the names a sweep's metrics take
    runs = pd.concat([top, pd.DataFrame([service_columns(s) for s in summaries])], axis=1)
    summary["seeds"] = list(range(first_seed, first_seed + seeds))
    per_seed = top.drop(columns=["seed"]).assign(seed=summary["seeds"]).to_dict("records")
    if "services" in summaries[0]:
        for row, s in zip(per_seed, summaries, strict=True):
            row["services"] = {name: {k: v for k, v in figures.items() if _is_number(v)}
                               for name, figures in s["services"].items()}
    summary["per_seed"] = per_seed
    return SeedResults(results[0], runs, summary)


def aggregate_summaries(summaries: list[dict]) -> dict:
    """Summaries of the same scenario over seeds as one: numbers become their mean with `<key>_ci95`
    beside them (nested mappings, as serving's `services`, the same way); anything else, and the
    seed, is the first summary's."""
    first = summaries[0]
    out: dict = {}
    for key, value in first.items():
        values = [s.get(key) for s in summaries]
        if key in _NOT_FIGURES or key.endswith("_ci95"):
            out[key] = value
        elif all(_is_number(v) for v in values) and all(v == value for v in values):
            out[key], out[f"{key}_ci95"] = value, 0.0  # the same in every seed (the cluster's size): exact
        elif all(_is_number(v) for v in values):
            series = pd.Series(values, dtype=float)
            out[key] = float(series.mean())
            ci = float(ci95_half_width(pd.Series([series.std(ddof=1)]), pd.Series([len(series)])).iloc[0])
            out[f"{key}_ci95"] = None if math.isnan(ci) else ci
        elif all(isinstance(v, dict) for v in values):
            out[key] = aggregate_summaries(values)
        else:
            out[key] = value
    return out


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
