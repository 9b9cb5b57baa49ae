"""The `capsim` command line."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import click

from simulator.errors import CapsimError
from simulator.units import format_duration, parse_duration

# Commands that live with their concern, imported only when one of them runs, so `capsim --help` and
# `capsim run` do not load the whole stack: name -> (module, attribute, the first paragraph of its help,
# which `capsim --help` lists; tests/test_cli.py checks it is the command's own).
LAZY_COMMANDS = {
    "calibrate": ("simulator.calibrate.cli", "calibrate", "Run GEMM, copy-bandwidth, attention (and all-reduce, "
                  "with several ranks) micro-benchmarks."),
    "gpu-sharing": ("simulator.experiment.gpu_sharing", "gpu_sharing_command", "Inflate a pod list that shares "
                    "GPUs (Alibaba GPU 2023: openb_pod_list_*.csv) on its node list (openb_node_list_*.csv) "
                    "under each placement policy: unallocated and fragmented GPUs when the arrived demand "
                    "reaches the capacity, and the allocation rate."),
    "plan": ("simulator.planning.cli", "plan_command", "Find the cheapest purchase in PLAN_FILE that keeps the "
             "target: the fewest nodes of each option that meet it, and the option whose run costs least."),
    "predict": ("simulator.perf.cli", "predict", "Predict step time, throughput, MFU and memory of one training "
                "configuration, with the error band of the nearest published runs in the calibration set."),
    "predict-inference": ("simulator.perf.cli", "predict_inference_cmd", "Predict time to first token, time per "
                          "output token, throughput and memory of serving a model."),
    "sweep": ("simulator.experiment.cli", "sweep_command", "Run SWEEP_FILE: every point (axes x cases) for every "
              "seed; print means with 95% intervals."),
    "validate-perf": ("simulator.perf.cli", "validate_perf", "Predicted vs published runs, with errors: the "
                      "Megatron A100 tables by default, --runs FILE for any published runs, --cv / --fit for the "
                      "calibration of the software stacks."),
    "workload": ("simulator.workload.cli", "workload", "Inspect workloads and traces."),
}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program was, so that every `finally` runs (temporary files
    are removed, worker processes are ended) on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# The message added to "stopped by SIGINT" by the command that was running (ctx.meta is shared).
ON_INTERRUPT = "capsim.on_interrupt"


@contextlib.contextmanager
def signals_as_interrupts():
    """Within the block, SIGINT and SIGTERM raise `Interrupted`. A repeat within 5 s of the first is
    ignored, so the clean-up it started is not cut short; later ones raise again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first = [None]

    def handler(signum, frame):
        now = time.monotonic()
        if first[0] is not None and now - first[0] < 5.0:
            return
        first[0] = now
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def warnings_as_they_arise():
    """Within the block, every warning prints at once as one `warning: ...` line on stderr (not after
    the command, and without Python's file and line), each distinct message once."""
    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


class CapsimGroup(click.Group):
    """The main group: commands of LAZY_COMMANDS load when they run; warnings print as they arise; a
    command stopped by SIGINT or SIGTERM ends with one line and the shell's exit status for that
    signal (130, 143), not a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[name]
            from importlib import import_module

            self.add_command(getattr(import_module(module), attribute), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter) -> None:
        """The command list as click writes it, the lazy commands' lines from their help paragraph."""
        listed = [(name, self.commands.get(name) or click.Command(name, help=LAZY_COMMANDS[name][2]))
                  for name in self.list_commands(ctx)]
        listed = [(name, command) for name, command in listed if not command.hidden]
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])

    def invoke(self, ctx: click.Context):
        with signals_as_interrupts(), warnings_as_they_arise():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                hint = ctx.meta.get(ON_INTERRUPT)
                click.echo(f"capsim: stopped by {signal.Signals(signum).name}; no file was left half-written"
                           + (f"; {hint}" if hint else ""), err=True)
                ctx.exit(128 + signum)
            except CapsimError as exc:  # bad input a command did not turn into a usage error itself
                if ctx.params.get("debug"):
                    raise
                raise click.ClickException(str(exc)) from None
            except Exception as exc:  # click's own exits and errors are ClickException / Exit, not caught here
                if ctx.params.get("debug") or isinstance(exc, click.exceptions.ClickException | click.exceptions.Exit):
                    raise
                click.echo(f"Error: {type(exc).__name__}: {str(exc)[:300]}\ncapsim: this is a bug or an input capsim "
                           "does not check yet; `capsim --debug ...` shows the traceback to report it", err=True)
                ctx.exit(1)


@click.group(cls=CapsimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capsim")
@click.option("--debug", is_flag=True, help="Show Python's traceback of an unexpected error (to report it).")
def main(debug: bool) -> None:
    """capsim: a capacity-planning simulator for AI compute."""


# A single-seed run of at most this many jobs also runs the next seed, to say how far p95 wait moved
# (measured: about 0.45 s more on the default month's 21,000 jobs, against a ~2.6-2.9 s command). A job
# count, not a time, decides, so the same command prints the same lines on any machine.
QUICK_SECOND_SEED_JOBS = 50_000


@main.command("run")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write jobs.parquet, timeline.parquet and summary.json here (with --seeds: the first "
                   "seed's jobs and timeline, the summary over the seeds).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Override the scenario's seed.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run seeds SEED, SEED+1, ..., SEED+N-1 and report each figure's mean with its 95% interval "
                   "(default: the scenario's `seeds`, 1).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of the table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when a terminal).")
@click.option("--periods", default=None, metavar="DURATION",
              help="Also print waits, utilisation and energy per period (e.g. 90d for quarters; the first seed's).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML report (summary, periods, figures) to this file.")
def run_command(scenario, out_dir, seed, seeds, as_json, progress, periods, report_file):
    """Run SCENARIO (a YAML file; the embedded default when omitted). One seed is one sample: --seeds N
    gives every figure with its 95% interval."""
    from simulator.report.summary import one_sample_note
    from simulator.runner import run
    from simulator.scenario import default_scenario, load_scenario

    note = None
    try:
        validated = load_scenario(scenario) if scenario else default_scenario()
        n_seeds = seeds or validated.seeds
        if n_seeds > 1:
            from simulator.experiment.seeds import run_seeds

            over_seeds = run_seeds(validated, n_seeds, seed=seed, progress=progress)
            results = over_seeds.results
            per_seed = results.summary["per_seed"]
            note = "p95 wait by seed: " + ", ".join(
                f"{row['seed']}: {format_duration(row['p95_wait_s'])}" for row in per_seed)
            for name in results.summary.get("services") or {}:
                note += f"\nservice {name} TTFT p99 by seed: " + ", ".join(
                    f"{row['seed']}: {row['services'][name]['ttft_p99_s'] * 1e3:,.1f} ms" for row in per_seed)
        else:
            results = run(validated, seed=seed, progress=progress)
            second = None
            if len(results.jobs) <= QUICK_SECOND_SEED_JOBS:
                with warnings.catch_warnings():  # the first run said them already
                    warnings.simplefilter("ignore")
                    second = run(validated, seed=results.seed + 1, progress=False).summary
            note = one_sample_note(results.summary, second)
        if out_dir:
            results.write(out_dir)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        import json

        click.echo(json.dumps(results.summary, indent=2))
    else:
        click.echo(summary_table(results.summary))
    click.echo(note, err=as_json)
    if periods:
        click.echo()
        if n_seeds > 1:
            click.echo(f"by period, seed {results.seed} (the first):")
        click.echo(period_text(results, periods))
    if out_dir:
        served = ", requests.parquet" if results.requests is not None else ""
        what = "" if n_seeds == 1 else f" (jobs and timeline of seed {results.seed}; the summary over {n_seeds} seeds)"
        click.echo(f"wrote {out_dir}/jobs.parquet, timeline.parquet{served}, summary.json{what}", err=True)
    if report_file:
        _write_report(results, report_file, periods)


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "report_file", type=click.Path(dir_okay=False), default=None,
              help="The HTML file (default: RUN_DIR/report.html).")
@click.option("--periods", default=None, metavar="DURATION",
              help="A run's table by period (default: weeks, months or quarters by the run's length).")
@click.option("--baseline", multiple=True, metavar="KEY=VALUE",
              help="A sweep's point the others are compared with, seed by seed (default: the first point).")
@click.option("--target", default=None, metavar="VALUE",
              help="A sweep's target for its period metric (e.g. 1h for a wait): the report marks when each "
                   "point first passes it.")
def report_command(run_dir, report_file, periods, baseline, target):
    """Write the HTML report of a run (`capsim run --out`), a sweep (`capsim sweep --out`) or a plan
    (`capsim plan --out`) folder: which one is told by the files in it."""
    from simulator.experiment.runner import is_sweep_dir, read_sweep
    from simulator.planning.cli import is_plan_dir, read_plan
    from simulator.report.html import render_plan_report, render_sweep_report, write_html
    from simulator.results import Results

    target_file = report_file or f"{run_dir}/report.html"
    try:
        if is_sweep_dir(run_dir):
            import yaml

            fixed = {}
            for item in baseline:
                key, sep, value = item.partition("=")
                if not sep:
                    raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--baseline")
                fixed[key] = yaml.safe_load(value)
            try:
                limit = None if target is None else parse_duration(target)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--target") from None
            write_html(render_sweep_report(read_sweep(run_dir, fixed or None), target=limit), target_file)
        elif is_plan_dir(run_dir):
            write_html(render_plan_report(read_plan(run_dir)), target_file)
        else:
            if not (Path(run_dir) / "summary.json").is_file():
                raise CapsimError("not a run, sweep or plan folder: a run has summary.json, a sweep runs.parquet "
                                  "and points.parquet, a plan options.csv, evaluations.parquet and plan.json",
                                  source=str(run_dir))
            results = Results.read(run_dir)
            _write_report(results, target_file, periods)
            return
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {target_file}", err=True)


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

    from simulator.report.summary import fit_width, period_note, period_rows

    rows = period_rows(table)
    text = fit_width(pd.DataFrame(rows), index=False)
    return text + ("\n" + period_note(100) if any(r.get("note") for r in rows) else "")


def summary_table(s: dict) -> str:
    from simulator.report.summary import summary_rows

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
    """The scenario file: its capacity, the embedded default, its key reference and its JSON Schema."""


@scenario_group.command("show-default")
def show_default() -> None:
    """Print the embedded default scenario (a starting point: capsim scenario show-default > my.yaml)."""
    from simulator.scenario import default_scenario_text

    click.echo(default_scenario_text(), nl=False)


@scenario_group.command("show")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
def scenario_show(scenario) -> None:
    """Print SCENARIO's capacity (the embedded default when omitted): each pool's and the cluster's
    devices, aggregate dense peak PFLOP/s (EFLOP/s from 1,000) by precision, HBM and power."""
    from simulator.models.capacity import scenario_capacity
    from simulator.report.summary import capacity_rows
    from simulator.runner import _as_scenario
    from simulator.scenario import default_scenario

    try:
        validated = _as_scenario(scenario) if scenario else default_scenario()
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{validated.name}: peak figures are the profiles' dense spec-sheet peaks; power is every device "
               f"idle – every device at TDP, with the nodes' platform power (PUE {validated.power.pue:g})")
    click.echo(text_table(capacity_rows(scenario_capacity(validated))))


def text_table(rows: list[dict[str, str]]) -> str:
    """Rows of header -> text as left-aligned columns (a row may leave columns out)."""
    headers = list(dict.fromkeys(k for r in rows for k in r))
    widths = {h: max(len(h), *(len(r.get(h, "")) for r in rows)) for h in headers}
    lines = [[h for h in headers], *[[r.get(h, "") for h in headers] for r in rows]]
    return "\n".join("  ".join(f"{cell:<{widths[h]}}" for h, cell in zip(headers, line, strict=True)).rstrip()
                     for line in lines)


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
