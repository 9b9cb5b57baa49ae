"""Run a sweep: hand its runs to an executor, keep each summary as it arrives, tabulate at the end.

With an output folder, every finished run is written at once to `runs/<key>.json` (atomically), so
an interrupted sweep loses only the runs in flight, and `resume` skips the runs already there. A
run's key hashes its validated scenario, seed and the capsim version: a changed point reruns.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from simulator.experiment.executors import RunTask, execute
from simulator.experiment.stats import aggregate, compare
from simulator.experiment.sweep import Sweep, cell_value, load_sweep
from simulator.results import SUMMARY_METRICS, _atomic_write


@dataclass
class SweepResults:
    name: str
    runs: pd.DataFrame  # one row per point and seed: labels, seed, the run's summary numbers
    points: pd.DataFrame  # one row per point: labels, seeds, <metric>_mean and <metric>_ci95
    metrics: list[str]
    label_columns: list[str]

    def compare(self, baseline: dict, metric: str = "p95_wait_s") -> pd.DataFrame:
        """Each point minus the baseline point (same other labels), seed by seed, with a 95% interval."""
        return compare(self.runs, metric, baseline, self.label_columns)

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "runs.parquet", lambda p: self.runs.to_parquet(p, index=False))
        _atomic_write(out / "points.parquet", lambda p: self.points.to_parquet(p, index=False))
        return out


def run_key(task_scenario, seed: int) -> str:
    payload = {"scenario": task_scenario.model_dump(mode="json"), "base_dir": str(task_scenario.base_dir),
               "seed": seed, "capsim": version("capsim")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def sweep(source, workers: int = 1, ray_address: str | None = None, out_dir: str | Path | None = None,
          resume: bool = False, progress: bool | None = None) -> SweepResults:
    """Run every point of a sweep (a YAML file, a dict or a loaded Sweep) for every seed."""
    spec = source if isinstance(source, Sweep) else load_sweep(source)
    tasks = [RunTask(run_key(p.scenario, seed), p.scenario, seed) for p in spec.points for seed in spec.seeds]
    store = Path(out_dir) / "runs" if out_dir is not None else None
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict] = {}
    if resume and store is not None:
        for task in tasks:
            kept = store / f"{task.key}.json"
            if kept.exists():
                summaries[task.key] = json.loads(kept.read_text())["summary"]
    todo = [t for t in tasks if t.key not in summaries]
    bar = _bar(len(tasks), len(tasks) - len(todo), spec.name, progress)
    try:
        for key, summary in execute(todo, workers, ray_address):
            summaries[key] = summary
            if store is not None:
                text = json.dumps({"key": key, "summary": summary}, indent=1) + "\n"
                _atomic_write(store / f"{key}.json", lambda p, text=text: Path(p).write_text(text))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    runs = _runs_table(spec, tasks, summaries)
    results = SweepResults(spec.name, runs, aggregate(runs, spec.label_columns, spec.metrics), spec.metrics,
                           spec.label_columns)
    if out_dir is not None:
        results.write(out_dir)
    return results


def _runs_table(spec: Sweep, tasks: list[RunTask], summaries: dict[str, dict]) -> pd.DataFrame:
    """Rows in (point, seed) order whatever order the runs finished in: the same sweep gives the same table."""
    rows = []
    keys = iter(tasks)
    for point in spec.points:
        for seed in spec.seeds:
            summary = summaries[next(keys).key]
            row = {"point": point.index, **{k: cell_value(v) for k, v in point.labels.items()}, "seed": seed}
            row.update({k: summary[k] for k in SUMMARY_METRICS if k in summary})
            rows.append(row)
    runs = pd.DataFrame(rows)
    for column in spec.label_columns:  # an axis mixing types (64 and "auto") is shown as text
        if runs[column].map(type).nunique() > 1:
            runs[column] = runs[column].astype(str)
    return runs


def _bar(total: int, done: int, name: str, enabled: bool | None):
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {name}", unit="run", leave=False)
