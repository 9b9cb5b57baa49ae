"""Run a sweep: hand its runs to an executor, keep each summary as it arrives, tabulate at the end.

With an output folder, every finished run is written at once to `runs/<key>.json` (atomically), so
an interrupted sweep loses only the runs in flight, and `resume` skips the runs already there. A
run's key hashes its validated scenario, seed, the capsim version and the contents of every file the
run reads (inputs.py: traces, presets, model files, hardware profiles): a changed point, or a changed
file, reruns. A kept run that cannot be read back (empty, cut short, not its key's) is run again.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from simulator.experiment.executors import RunTask, execute
from simulator.experiment.inputs import input_digests
from simulator.experiment.metric_names import check_columns, metric_value, service_metric
from simulator.experiment.stats import aggregate, compare
from simulator.experiment.sweep import Sweep, cell_value, check_metrics, load_sweep, point_name
from simulator.files import atomic_write, remove_stale, replace_files
from simulator.metrics.periods import PERIOD_METRICS
from simulator.metrics.summary import SUMMARY_METRICS
from simulator.runner import progress_bar

SWEEP_FILE = "sweep.json"  # what the sweep was: name, metrics, labels, seeds, period, its first scenario


@dataclass
class SweepResults:
    name: str
    runs: pd.DataFrame  # one row per point and seed: labels, seed, the run's summary numbers
    points: pd.DataFrame  # one row per point: labels, seeds, <metric>_mean and <metric>_ci95
    metrics: list[str]
    label_columns: list[str]
    periods: pd.DataFrame | None = None  # with `periods:`, one row per point, seed and period
    period_points: pd.DataFrame | None = None  # and per point and period, mean and ci95 over seeds
    period_s: float | None = None
    seeds: list[int] | None = None
    record: dict | None = None  # the first point's scenario as the report shows it (report.simulated)
    reused: int = 0  # runs taken from the store (--resume) rather than run

    def compare(self, baseline: dict, metric: str = "p95_wait_s") -> pd.DataFrame:
        """Each point minus the baseline point (same other labels), seed by seed, with a 95% interval.
        `metric`: a summary key, or a service's figure the sweep named in its metrics."""
        check_columns(self.runs, [metric], " (a service's figure is kept when the sweep's metrics name it)")
        return compare(self.runs, metric, baseline, self.label_columns)

    def write(self, out_dir: str | Path) -> Path:
        """runs.parquet, points.parquet (and with periods periods.parquet, period_points.parquet),
        replaced as a set (files.replace_files)."""
        tables = {"runs": self.runs, "points": self.points, "periods": self.periods,
                  "period_points": self.period_points}
        writers = {f"{name}.parquet": lambda p, t=table: t.to_parquet(p, index=False)
                   for name, table in tables.items() if table is not None}
        about = {"name": self.name, "metrics": self.metrics, "label_columns": self.label_columns,
                 "period_s": self.period_s, "seeds": self.seeds, "scenario": self.record}
        writers[SWEEP_FILE] = lambda p: Path(p).write_text(json.dumps(about, indent=1) + "\n")
        return replace_files(Path(out_dir), writers)


def run_key(task_scenario, seed: int, period_s: float | None) -> str:
    """The run's name in the store: its validated scenario, seed, periods, the capsim version and the
    contents of the files it reads (not where they are: a moved sweep folder keeps its runs)."""
    payload = {"scenario": task_scenario.model_dump(mode="json"), "inputs": input_digests(task_scenario),
               "seed": seed, "periods": period_s, "capsim": version("capsim")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def read_kept_run(path: Path, key: str) -> dict | None:
    """A run kept in the store, or None (run it again) if it is missing, unreadable, empty, cut short
    or not the run its name says."""
    try:
        output = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON (empty, cut short)
        return None
    if (not isinstance(output, dict) or output.get("key") != key or not isinstance(output.get("summary"), dict)
            or not isinstance(output.get("periods"), list | None)):
        return None
    return {k: v for k, v in output.items() if k != "key"}


def sweep(source, workers: int = 1, ray_address: str | None = None, out_dir: str | Path | None = None,
          resume: bool = False, progress: bool | None = None, metrics: list[str] | None = None) -> SweepResults:
    """Run every point of a sweep (a YAML file, a dict or a loaded Sweep) for every seed. `metrics`
    replaces the sweep's own (summary keys or `services.<service>.<key>`)."""
    spec = source if isinstance(source, Sweep) else load_sweep(source, metrics)
    if metrics and isinstance(source, Sweep):
        spec = with_metrics(spec, metrics)
    tasks = [RunTask(run_key(p.scenario, seed, spec.period_s), p.scenario, seed, spec.period_s)
             for p in spec.points for seed in spec.seeds]
    store = Path(out_dir) / "runs" if out_dir is not None else None
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        remove_stale(store)  # temporary files of a sweep that was killed outright (SIGKILL)
    outputs: dict[str, dict] = {}
    if resume and store is not None:
        for task in tasks:
            kept = read_kept_run(store / f"{task.key}.json", task.key)
            if kept is not None:
                outputs[task.key] = kept
    todo = [t for t in tasks if t.key not in outputs]
    bar = progress_bar(len(tasks), f"sweep {spec.name}", "run", progress, initial=len(tasks) - len(todo))
    try:
        with closing(execute(todo, workers, ray_address)) as finished:
            for key, output in finished:
                outputs[key] = output
                if store is not None:
                    text = json.dumps({"key": key, **output}, indent=1) + "\n"
                    atomic_write(store / f"{key}.json", lambda p, text=text: Path(p).write_text(text))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    runs, periods = _tables(spec, tasks, outputs)
    points = aggregate(runs, spec.label_columns, spec.metrics)
    period_points = None
    if periods is not None:
        metrics = [m for m in spec.metrics if m in PERIOD_METRICS] or ["p95_wait_s"]
        period_points = aggregate(periods, [*spec.label_columns, "period"], metrics)
    from simulator.report.simulated import scenario_record

    results = SweepResults(spec.name, runs, points, spec.metrics, spec.label_columns, periods, period_points,
                           spec.period_s, list(spec.seeds), scenario_record(spec.points[0].scenario),
                           len(tasks) - len(todo))
    if out_dir is not None:
        results.write(out_dir)
    return results


def with_metrics(spec: Sweep, metrics: list[str]) -> Sweep:
    """A loaded sweep with other metrics, checked against every point as load_sweep checks them."""
    from dataclasses import replace

    for point in spec.points:
        check_metrics(list(metrics), point.scenario, point_name(point.labels) if point.labels else None, None)
    return replace(spec, metrics=list(metrics))


def _tables(spec: Sweep, tasks: list[RunTask], outputs: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Runs (and periods) in (point, seed) order whatever order the runs finished in: the same sweep
    gives the same tables."""
    rows, period_rows = [], []
    keys = iter(tasks)
    for point in spec.points:
        for seed in spec.seeds:
            output = outputs[next(keys).key]
            labels = {"point": point.index, **{k: cell_value(v) for k, v in point.labels.items()}, "seed": seed}
            summary = output["summary"]
            # services' figures are nested (summary["services"][name][key]): the ones asked for, flat
            served = {m: metric_value(summary, m) for m in spec.metrics if service_metric(m) is not None}
            rows.append({**labels, **{k: summary[k] for k in SUMMARY_METRICS if k in summary}, **served})
            period_rows += [{**labels, **row} for row in output.get("periods") or ()]
    runs = pd.DataFrame(rows)
    periods = pd.DataFrame(period_rows) if spec.period_s else None
    for table in [t for t in (runs, periods) if t is not None]:
        for column in spec.label_columns:
            if table[column].map(type).nunique() > 1:  # an axis mixing types (64 and "auto") is shown as text
                table[column] = table[column].astype(str)
    return runs, periods


@dataclass
class SweepReportData:
    """A sweep folder read back for its report: the tables, every metric aggregated, and the paired
    differences from a baseline point."""

    name: str
    runs: pd.DataFrame
    points: pd.DataFrame  # mean and ci95 of every metric the runs hold
    metrics: list[str]
    label_columns: list[str]
    seeds: list[int]
    record: dict | None
    period_s: float | None
    period_points: pd.DataFrame | None
    period_flags: dict  # (point name, period) -> "cut by the horizon" / "drain only" over the seeds
    baseline: dict
    diffs: pd.DataFrame | None


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / "runs.parquet").is_file() and (Path(path) / "points.parquet").is_file()


def read_sweep(out_dir: str | Path, baseline: dict | None = None) -> SweepReportData:
    """What `sweep(..., out_dir=)` wrote, for the report. `baseline` fixes labels of the point the
    others are compared with (seed by seed); the first point by default."""
    from simulator.errors import CapsimError
    from simulator.report.html import point_names
    from simulator.report.summary import period_flag_text

    out = Path(out_dir)
    try:
        runs = pd.read_parquet(out / "runs.parquet")
        about = json.loads((out / SWEEP_FILE).read_text()) if (out / SWEEP_FILE).is_file() else {}
        periods = pd.read_parquet(out / "periods.parquet") if (out / "periods.parquet").is_file() else None
        period_points = (pd.read_parquet(out / "period_points.parquet")
                         if (out / "period_points.parquet").is_file() else None)
    except (OSError, ValueError) as exc:
        raise CapsimError(f"cannot read the sweep's files: {exc}", source=str(out)) from None
    fixed = {"point", "seed"}
    labels = about.get("label_columns") or [c for c in runs.columns if c not in fixed and c not in SUMMARY_METRICS
                                            and service_metric(c) is None]
    numbers = [m for m in SUMMARY_METRICS if m in runs.columns] + [c for c in runs.columns
                                                                   if service_metric(c) is not None]
    metrics = [m for m in about.get("metrics") or numbers if m in runs.columns]
    points = aggregate(runs, labels, numbers)
    seeds = about.get("seeds") or sorted(runs["seed"].unique().tolist())
    if baseline is None:
        baseline = {k: runs[k].iloc[0] for k in labels}
    diffs = None
    if labels and len(points) > 1:
        try:
            tables = [compare(runs, m, baseline, labels) for m in metrics]
        except ValueError as exc:
            raise CapsimError(str(exc), where="--baseline") from None
        diffs = tables[0]
        for table in tables[1:]:
            diffs = diffs.merge(table, on=[*labels, "seeds"])
    flags = {}
    if periods is not None and "partial" in periods.columns:
        grouped = periods.groupby([*labels, "period"], sort=False)
        keys = grouped.size().reset_index()
        names = point_names(keys, labels)
        for name, p, cut, drain in zip(names, keys["period"], grouped["partial"].any(), grouped["drain_only"].all(),
                                       strict=True):
            flags[(name, int(p))] = period_flag_text(bool(cut), bool(drain))
    return SweepReportData(about.get("name", out.name), runs, points, metrics, labels, seeds, about.get("scenario"),
                           about.get("period_s"), period_points, flags, baseline, diffs)
