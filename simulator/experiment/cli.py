"""`capsim sweep` (registered on the main group by simulator/cli.py)."""

from __future__ import annotations

import os

import click
import pandas as pd
import yaml

from simulator.errors import CapsimError
from simulator.report.summary import estimate_text, fit_width, period_flag_text, period_note
from simulator.units import format_duration


@click.command("sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write runs.parquet, points.parquet and one runs/<key>.json per finished run here.")
@click.option("--workers", type=int, default=None, help="Local worker processes (default: the CPU count).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray instead: a cluster address, 'auto', or 'local' to start Ray here.")
@click.option("--resume", is_flag=True, help="Reuse the runs already in --out (same scenario, seed, version).")
@click.option("--baseline", multiple=True, metavar="KEY=VALUE",
              help="Also print each point's paired difference from this one (e.g. scheduler.policy=fifo).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Report this metric instead of the file's `metrics:` (repeatable): a summary key, or a "
                   "service's figure as services.<service>.<key> (e.g. services.chat.ttft_p99_s).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when a terminal).")
def sweep_command(sweep_file, out_dir, workers, ray_address, resume, baseline, metrics, progress):
    """Run SWEEP_FILE: every point (axes x cases) for every seed; print means with 95% intervals."""
    from simulator.experiment.runner import sweep
    from simulator.experiment.sweep import load_sweep

    if resume and out_dir is None:
        raise click.BadParameter("--resume reads the runs kept in --out; give --out too", param_hint="--resume")
    fixed = {}
    for item in baseline:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--baseline")
        fixed[key] = yaml.safe_load(value)  # 64 -> 64, fifo -> 'fifo', as the sweep file reads them
    if out_dir:  # what `capsim: stopped by SIGINT` adds (simulator/cli.py)
        click.get_current_context().meta["capsim.on_interrupt"] = (
            f"the finished runs are kept in {out_dir}/runs: --resume goes on from them")
    try:
        spec = load_sweep(sweep_file, list(metrics))
        unknown = [k for k in fixed if k not in spec.label_columns]
        if unknown:  # checked before hours of runs, not after
            raise click.BadParameter(f"{unknown} are not labels of this sweep; its labels: {spec.label_columns}",
                                     param_hint="--baseline")
        results = sweep(spec, workers=workers or os.cpu_count() or 1, ray_address=ray_address,
                        out_dir=out_dir, resume=resume, progress=progress)
    except CapsimError as exc:
        if metrics and exc.where == "metrics":  # the names came from the command line, not the file
            raise click.BadParameter(exc.detail, param_hint="--metric") from None
        raise click.ClickException(str(exc)) from None
    if resume:
        click.echo(f"reused {results.reused} of {len(results.runs)} runs", err=True)
    click.echo(points_text(results.points, results.label_columns, results.metrics))
    if results.period_points is not None:
        click.echo()
        click.echo(periods_text(results))
    if fixed:
        click.echo()
        click.echo(f"paired differences from {', '.join(f'{k}={v}' for k, v in fixed.items())} (same seeds):")
        try:
            tables = [results.compare(fixed, metric) for metric in results.metrics]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--baseline") from None
        merged = tables[0]
        for table in tables[1:]:
            merged = merged.merge(table, on=[*results.label_columns, "seeds"])
        click.echo(points_text(merged, results.label_columns, [f"{m}_diff" for m in results.metrics]))
    if out_dir:
        extra = ", periods.parquet, period_points.parquet" if results.periods is not None else ""
        click.echo(f"wrote {out_dir}/runs.parquet, points.parquet{extra}", err=True)


def points_text(points: pd.DataFrame, labels: list[str], metrics: list[str]) -> str:
    """Labels, then `mean ± half-width` for each metric, in units a reader takes in at a glance."""
    shown = points[labels].copy() if labels else pd.DataFrame(index=points.index)
    shown["seeds"] = points["seeds"]
    for metric in metrics:
        mean, ci = points[f"{metric}_mean"], points[f"{metric}_ci95"]
        shown[metric] = [estimate_text(metric, m, c) for m, c in zip(mean, ci, strict=True)]
    return fit_width(shown, index=False)


def periods_text(results) -> str:
    """One period metric (the first of the sweep's metrics that periods have), a column per point."""
    from simulator.metrics.periods import PERIOD_METRICS

    table = results.period_points
    metric = next((m for m in results.metrics if m in PERIOD_METRICS), "p95_wait_s")
    labels = results.label_columns
    point = (table[labels].astype(str).agg(" / ".join, axis=1) if labels
             else pd.Series("all", index=table.index))
    cells = [estimate_text(metric, m, c)
             for m, c in zip(table[f"{metric}_mean"], table[f"{metric}_ci95"], strict=True)]
    flags = _period_flags(results)
    starts = [format_duration(k * results.period_s) + (f" ({flags[k]})" if flags.get(k) else "")
              for k in table["period"]]
    wide = pd.DataFrame({"from": starts, "point": point, "cell": cells})
    wide = wide.pivot(index="from", columns="point", values="cell").fillna("–")  # a period some runs lack
    wide = wide.loc[list(dict.fromkeys(starts)), list(dict.fromkeys(point))]
    title = f"{metric} by period of {format_duration(results.period_s)}"
    text = f"{title} (columns: {' / '.join(labels) or 'the base scenario'}):\n" + fit_width(wide)
    return text + ("\n" + period_note(100) if any(flags.values()) else "")


def _period_flags(results) -> dict[int, str]:
    """period -> its label over every run of the sweep: cut by the horizon if any run's is, drain only
    if every run's is (metrics/periods.py)."""
    periods = results.periods
    if periods is None or "partial" not in periods.columns:
        return {}
    grouped = periods.groupby("period")
    return {int(k): period_flag_text(bool(cut), bool(drain))
            for k, cut, drain in zip(grouped.size().index, grouped["partial"].any(), grouped["drain_only"].all(),
                                     strict=True)}
