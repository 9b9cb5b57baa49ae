"""The `capsim` command line."""

from __future__ import annotations

import sys
import warnings

import click

from simulator.calibrate.cli import calibrate
from simulator.errors import CapsimError
from simulator.experiment.cli import sweep_command
from simulator.perf.cli import predict, predict_inference_cmd, validate_perf
from simulator.planning.cli import plan_command
from simulator.report.summary import period_rows, summary_rows
from simulator.workload.cli import workload
from simulator.workload.fit_cli import fit


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capsim")
def main() -> None:
    """capsim: a capacity-planning simulator for AI compute."""


@main.command("run")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write jobs.parquet, timeline.parquet and summary.json here.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Override the scenario's seed.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of the table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when a terminal).")
@click.option("--periods", default=None, metavar="DURATION",
              help="Also print waits, utilisation and energy per period (e.g. 90d for quarters).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML report (summary, periods, figures) to this file.")
def run_command(scenario, out_dir, seed, as_json, progress, periods, report_file):
    """Run SCENARIO (a YAML file; the embedded default when omitted)."""
    from simulator.run import run
    from simulator.scenario import default_scenario

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = run(scenario if scenario else default_scenario(), seed=seed, progress=progress)
            if out_dir:
                results.write(out_dir)
        except CapsimError as exc:
            raise click.ClickException(str(exc)) from None
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if as_json:
        import json

        click.echo(json.dumps(results.summary, indent=2))
    else:
        click.echo(summary_table(results.summary))
    if periods:
        click.echo()
        click.echo(period_text(results, periods))
    if out_dir:
        click.echo(f"wrote {out_dir}/jobs.parquet, timeline.parquet, summary.json", err=True)
    if report_file:
        _write_report(results, report_file, periods)


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "report_file", type=click.Path(dir_okay=False), default=None,
              help="The HTML file (default: RUN_DIR/report.html).")
@click.option("--periods", default=None, metavar="DURATION",
              help="Period of the table (default: weeks, months or quarters by the run's length).")
def report_command(run_dir, report_file, periods):
    """Write the HTML report of a run that `capsim run --out RUN_DIR` wrote."""
    from simulator.results import Results

    try:
        results = Results.read(run_dir)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    _write_report(results, report_file or f"{run_dir}/report.html", periods)


def _write_report(results, target: str, periods: str | None) -> None:
    try:
        results.report(target, periods)
    except (CapsimError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--periods") from None
    click.echo(f"wrote {target}", err=True)


def period_text(results, length: str) -> str:
    try:
        table = results.by_period(length)
    except (CapsimError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--periods") from None
    import pandas as pd

    return pd.DataFrame(period_rows(table)).to_string(index=False)


def summary_table(s: dict) -> str:
    rows = summary_rows(s)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# `capsim init`: a scenario, a sweep and a plan that run as they are, the starting point of the docs.
_INIT_COST = """
# Optional: prices the run (devices amortised over 4 years from the profiles' list prices, energy at
# this rate), which adds cost_usd to the summary; sweeps and plans compare purchases by it.
cost: {usd_per_kwh: 0.08}
"""

_INIT_SWEEP = """\
# Three policies on scenario.yaml, two seeds each (capsim sweep sweep.yaml; ~6 runs, seconds each).
name: policies
scenario: scenario.yaml        # relative to this file; or `base:` inline
seeds: 2                       # the scenario's seed and the next; or a list [3, 8]
axes:                          # every combination of the axes is a point (key paths into the scenario)
  scheduler.policy: [fifo, easy-backfill, tiresias]
metrics: [p95_wait_s, gpu_utilization, cost_usd]   # printed; every summary number is kept
periods: 7d                    # optional: also each run's table by week, averaged over the seeds
"""

_INIT_PLAN = """\
# The cheapest purchase that keeps the p95 wait under an hour in every week (capsim plan plan.yaml):
# for each option, the fewest nodes added to scenario.yaml that meet the target, then the cheapest.
name: keep-p95-under-1h
scenario: scenario.yaml        # needs `cost:`
seeds: 2
target: {metric: p95_wait_s, at_most: 1h, period: 7d}
options:                       # each a pool added to the cluster; the search sets `nodes` (bisection)
  - {name: h100, pool: {device: h100-sxm, devices_per_node: 8}, max_nodes: 16}
  - {name: burst, pool: {device: h100-sxm, devices_per_node: 8, burst_after: 30m, usd_per_device_hour: 4.5},
     max_nodes: 16}
"""


def init_files() -> dict[str, str]:
    """What `capsim init` writes: file name -> text."""
    from simulator.scenario import default_scenario_text

    return {"scenario.yaml": default_scenario_text() + _INIT_COST, "sweep.yaml": _INIT_SWEEP,
            "plan.yaml": _INIT_PLAN}


@main.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_command(directory, force):
    """Write scenario.yaml (the embedded default, with cost), sweep.yaml and plan.yaml into DIRECTORY
    (default: here): a starting point that runs as it is."""
    from pathlib import Path

    from simulator.files import atomic_write

    folder = Path(directory)
    files = init_files()
    existing = [name for name in files if (folder / name).exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise click.ClickException(f"{', '.join(str(folder / n) for n in existing)} already {verb} "
                                   "(--force overwrites)")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write(folder / name, lambda p, text=text: Path(p).write_text(text))
        click.echo(f"wrote {folder / name}")
    cd = "" if folder.resolve() == Path.cwd().resolve() else f"cd {directory}\n  "
    click.echo(f"""
next:
  {cd}capsim run scenario.yaml --out runs/a        # one run: jobs.parquet, timeline.parquet, summary.json
  capsim report runs/a                         # runs/a/report.html
  capsim sweep sweep.yaml --out sweeps/a       # three policies x two seeds, with 95% intervals
  capsim plan plan.yaml --out plans/a          # the cheapest purchase that keeps the target""")


# Commands that live with their own concern: the performance model, calibration, workloads, sweeps.
@main.group("scenario")
def scenario_group() -> None:
    """The scenario file: the embedded default, its key reference and its JSON Schema."""


@scenario_group.command("show-default")
def show_default() -> None:
    """Print the embedded default scenario (a starting point: capsim scenario show-default > my.yaml)."""
    from simulator.scenario import default_scenario_text

    click.echo(default_scenario_text(), nl=False)


@scenario_group.command("schema")
def scenario_schema_command() -> None:
    """Print the JSON Schema of scenario files (for editors; also docs/scenario.schema.json)."""
    from simulator.scenario_reference import schema_text

    click.echo(schema_text(), nl=False)


@scenario_group.command("reference")
def scenario_reference_command() -> None:
    """Print the key reference of scenario files as Markdown (docs/scenario_reference.md)."""
    from simulator.scenario_reference import reference_markdown

    click.echo(reference_markdown())


@main.command("compile")
@click.option("--clean", is_flag=True, help="Remove the compiled engine: back to pure Python.")
@click.option("--force", is_flag=True, help="Recompile every module even if up to date.")
def compile_command(clean, force):
    """Build the engine's hot modules with Cython (1.5-1.9x faster; needs the [fast] extra)."""
    from simulator import compiled

    if clean:
        compiled.clean()
    else:
        compiled.build(force=force)
    for module, state in compiled.status().items():
        click.echo(f"{module:20} {state}")


main.add_command(predict)
main.add_command(predict_inference_cmd)
main.add_command(validate_perf)
main.add_command(calibrate)
main.add_command(workload)
main.add_command(sweep_command)
main.add_command(plan_command)
workload.add_command(fit)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
