"""`capsim workload ...`: commands about workloads (the lead registers the group on the main CLI)."""

from __future__ import annotations

import json

import click

from simulator.errors import CapsimError
from simulator.units import format_duration
from simulator.workload.stats import LARGE_JOB_GPUS, load_stats
from simulator.workload.traces import FORMATS, load_trace


@click.group("workload")
def workload() -> None:
    """Inspect workloads and traces."""


@workload.command("stats")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default=None,
              help="Trace format; guessed from the file name or first line when left out.")
@click.option("--lenient", is_flag=True, help="Skip and count malformed rows instead of stopping at the first.")
@click.option("--keep-cpu-only", is_flag=True, help="Keep zero-GPU jobs (dropped and counted by default).")
@click.option("--task-table", type=click.Path(dir_okay=False), default=None,
              help="pai: the pai_task_table.csv (default: beside the job table).")
@click.option("--gpus-per-proc", type=float, default=None, help="swf: GPUs per processor (default 1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def stats(file: str, fmt: str | None, lenient: bool, keep_cpu_only: bool, task_table: str | None,
          gpus_per_proc: float | None, as_json: bool) -> None:
    """Print the statistics trace papers report for FILE: jobs, run times, GPUs per job, status, waits."""
    options = {"keep_cpu_only": keep_cpu_only}
    if task_table is not None:
        options["task_table"] = task_table
    if gpus_per_proc is not None:
        options["gpus_per_proc"] = gpus_per_proc
    try:
        figures = load_stats(load_trace(file, fmt, strict=not lenient, **options))
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(figures, indent=2) if as_json else format_table(figures))


def format_table(figures: dict) -> str:
    """Human-readable rows: counts with thousands separators, durations with units, shares in percent."""
    rows = [
        ("file", figures["source"]),
        ("format", figures["format"]),
        ("records read", _count(figures["records"])),
        ("skipped malformed rows", _count(figures["skipped_malformed"])),
        ("CPU-only jobs dropped", _count(figures["cpu_only_dropped"])),
    ]
    rows += [(f"dropped: {reason.replace('_', ' ')}", _count(n))
             for reason, n in figures["dropped"].items() if reason != "cpu_only"]
    rows += [
        ("jobs", _count(figures["jobs"])),
        ("GPU jobs", _count(figures["gpu_jobs"])),
        ("run time mean / median / p90", " / ".join(_duration(figures[k]) for k in
                                                    ("mean_runtime_s", "median_runtime_s", "p90_runtime_s"))),
        ("GPUs per job mean / median", f"{_number(figures['mean_gpus'])} / {_number(figures['median_gpus'])}"),
        ("single-GPU jobs", _percent(figures["single_gpu_share"])),
        (f"GPU time in jobs >= {LARGE_JOB_GPUS} GPUs", _percent(figures["large_job_gpu_time_share"])),
        ("GPU hours", _number(figures["gpu_hours"])),
    ]
    if "status_shares" in figures:
        rows += [(f"status {status}", _percent(share)) for status, share in figures["status_shares"].items()]
    if "mean_wait_s" in figures:
        rows.append(("queueing delay mean / median",
                     f"{_duration(figures['mean_wait_s'])} / {_duration(figures['median_wait_s'])}"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    if figures["skipped_reasons"]:
        lines.append("skipped, by what was wrong:")
        lines += [f"  {_count(n):>9}  {reason}" for reason, n in
                  sorted(figures["skipped_reasons"].items(), key=lambda item: -item[1])]
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n:,}"


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _register_fit() -> None:
    from simulator.workload.fit_cli import fit

    workload.add_command(fit)


_register_fit()
