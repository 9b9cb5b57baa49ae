"""`capsim plan` (registered on the main group by simulator/cli.py)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import click
import pandas as pd

from simulator.errors import CapsimError
from simulator.report.summary import estimate_text, fit_width, target_text
from simulator.units import format_duration


@click.command("plan")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write options.csv, evaluations.parquet and plan.json here.")
@click.option("--workers", type=int, default=None, help="Local worker processes (default: the CPU count).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray instead: a cluster address, 'auto', or 'local' to start Ray here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when a terminal).")
def plan_command(plan_file, out_dir, workers, ray_address, progress):
    """Find the cheapest purchase in PLAN_FILE that keeps the target: the fewest nodes of each option
    that meet it, and the option whose run costs least."""
    from simulator.planning.purchase import cheapest_purchase

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            plan = cheapest_purchase(plan_file, workers=workers or os.cpu_count() or 1, ray_address=ray_address,
                                     progress=progress)
        except CapsimError as exc:
            raise click.ClickException(str(exc)) from None
    for w in caught:
        if str(w.message) not in plan.warnings:  # the plan's own are in its text
            click.echo(f"warning: {w.message}", err=True)
    click.echo(plan_text(plan))
    if out_dir:
        write_plan(plan, Path(out_dir))
        click.echo(f"wrote {out_dir}/options.csv, evaluations.parquet, plan.json", err=True)


def plan_text(plan) -> str:
    if hasattr(plan.target, "service"):
        return serving_plan_text(plan)
    target = plan.target
    metric = target.metric
    within = f" in every period of {format_duration(target.period)}" if target.period else ""
    lines = [f"plan {plan.name}: {metric} at most {format_duration(target.at_most)}{within}, judged on the "
             f"{'mean' if target.judged_on == 'mean' else 'upper 95% bound'} over the seeds"]
    if target.period is not None:
        lines.append("the cluster as it is: " + ("meets it throughout" if plan.base_first_miss is None else
                     f"misses it from the period starting at {format_duration(plan.base_first_miss)}"))
    options = plan.options
    answer = options["feasible"].to_numpy()
    label = metric if target.period is None else f"{metric} (worst {format_duration(target.period)})"
    # An option that is no answer shows no size and no cost: "> max_nodes" and how far it got there, or
    # nothing at all for a pool that never enters service.
    short = options["verdict"].str.startswith("not enough").to_numpy()
    per_node = (options["devices"] // options["nodes"].where(options["nodes"] > 0)).fillna(0).astype(int)
    shown = pd.DataFrame({
        "option": options["option"], "device": options["device"],
        "nodes": [str(n) if ok else f"> {m}" if low else "–"
                  for n, m, ok, low in zip(options["nodes"], options["max_nodes"], answer, short, strict=True)],
        "devices": [str(d) if ok else f"> {m * k}" if low else "–"
                    for d, m, k, ok, low in zip(options["devices"], options["max_nodes"], per_node, answer, short,
                                                strict=True)],
        label: [estimate_text(metric, m, c) if ok or low else "–"
                for m, c, ok, low in zip(options[f"{metric}_mean"], options[f"{metric}_ci95"], answer, short,
                                         strict=True)],
        "cost_usd": [estimate_text("cost_usd", m, c) if ok else "–"
                     for m, c, ok in zip(options["cost_usd_mean"], options["cost_usd_ci95"], answer, strict=True)],
        "verdict": ["" if v in ("meets the target", "no purchase needed") else v for v in options["verdict"]],
    })
    lines.append(shown.to_string(index=False))
    lines += [f"WARNING: {note}" for note in plan.warnings]
    best = plan.cheapest
    if best is None:
        lines.append("NO ANSWER: no option meets the target within its max_nodes (see the warnings above)")
    elif best["nodes"] == 0:
        lines.append("no purchase needed: the cluster as it is meets the target")
    else:
        lines.append(f"cheapest: {best['nodes']} nodes of {best['device']} ({best['option']}), "
                     f"{best['devices']} devices: ${estimate_text('cost_usd', best['cost_usd_mean'], math.nan)} "
                     "over the simulated period (devices, rentals and energy)")
    return "\n".join(lines)


def serving_plan_text(plan) -> str:
    target = plan.target
    limits = list(target.limits)
    lines = [f"plan {plan.name}: {target_text(target.model_dump())}, judged on the "
             f"{'mean' if target.judged_on == 'mean' else 'worse end of the 95% interval'} over the seeds"]
    options = plan.options
    ok = options["feasible"].to_numpy()
    shown = pd.DataFrame({
        "option": options["option"], "device": options["device"],
        "replicas": [str(r) if f else f"> {m}" for r, m, f in zip(options["replicas"], options["max_replicas"], ok,
                                                                  strict=True)],
        "devices": [str(d) if f else "–" for d, f in zip(options["devices"], ok, strict=True)],
        **{m: [estimate_text(m, a, c) for a, c in zip(options[f"{m}_mean"], options[f"{m}_ci95"], strict=True)]
           for m in limits},
        "cost_usd": [estimate_text("cost_usd", a, c) if f else "–"
                     for a, c, f in zip(options["cost_usd_mean"], options["cost_usd_ci95"], ok, strict=True)],
        "$/Mtok": [f"{a:,.2f}" if f else "–" for a, f in zip(options["usd_per_million_tokens_mean"], ok,
                                                                strict=True)],
        "verdict": ["" if v == "meets the target" else v for v in options["verdict"]],
    })
    lines += [line.rstrip() for line in fit_width(shown, index=False).splitlines()]
    lines += [f"WARNING: {note}" for note in plan.warnings]
    best = plan.cheapest
    if best is None:
        lines.append("NO ANSWER: no option meets the target within its max_replicas (see the warnings above)")
    else:
        lines.append(f"cheapest: {best['replicas']} replica{'s' if best['replicas'] != 1 else ''} of {target.service} on {best['device']} "
                     f"({best['option']}, tp {best['tp']}), {best['devices']} devices: "
                     f"${estimate_text('cost_usd', best['cost_usd_mean'], math.nan)} over the simulated period "
                     f"(devices and energy), ${best['usd_per_million_tokens_mean']:,.2f} per million output tokens")
    return "\n".join(lines)


def write_plan(plan, out: Path) -> None:
    """options.csv, evaluations.parquet and plan.json, replaced as a set (files.replace_files)."""
    from simulator.files import replace_files

    best = plan.cheapest
    summary = {"name": plan.name, "target": plan.target.model_dump(), "base_first_miss_s": plan.base_first_miss,
               "warnings": plan.warnings, "seeds": plan.seeds, "period_s": plan.period_s, "options": plan.option_specs,
               "scenario": plan.record, "base_summary": plan.base_summary,
               "cheapest": None if best is None else {k: (v.item() if hasattr(v, "item") else v)
                                                       for k, v in best.items()}}
    text = json.dumps(summary, indent=1, default=float) + "\n"
    writers = {"options.csv": lambda p: plan.options.to_csv(p, index=False),
               "evaluations.parquet": lambda p: plan.evaluations.to_parquet(p, index=False)}
    if plan.periods is not None and len(plan.periods):
        writers["periods.parquet"] = lambda p: plan.periods.to_parquet(p, index=False)
    writers["plan.json"] = lambda p: Path(p).write_text(text)
    replace_files(out, writers)


def is_plan_dir(path) -> bool:
    return all((Path(path) / name).is_file() for name in ("options.csv", "evaluations.parquet", "plan.json"))


def read_plan(out):
    """What write_plan wrote, for the report: a namespace with the plan's tables and what it was."""
    from types import SimpleNamespace

    out = Path(out)
    try:
        about = json.loads((out / "plan.json").read_text(encoding="utf-8"))
        options = pd.read_csv(out / "options.csv")
        evaluations = pd.read_parquet(out / "evaluations.parquet")
        periods = pd.read_parquet(out / "periods.parquet") if (out / "periods.parquet").is_file() else None
    except (OSError, ValueError) as exc:
        raise CapsimError(f"cannot read the plan's files: {exc}", source=str(out)) from None
    specs = about.get("options") or [{"name": n, "pool": {"device": d}, "max_nodes": m}
                                     for n, d, m in zip(options["option"], options["device"], options["max_nodes"],
                                                        strict=True)]
    return SimpleNamespace(name=about.get("name", out.name), target=about["target"], options=options,
                           evaluations=evaluations, base_first_miss=about.get("base_first_miss_s"),
                           warnings=about.get("warnings", []), seeds=about.get("seeds"), period_s=about.get("period_s"),
                           option_specs=specs, record=about.get("scenario"), periods=periods,
                           base_summary=about.get("base_summary") or {})
