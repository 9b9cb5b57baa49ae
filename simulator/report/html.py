"""One self-contained HTML file per run, sweep or plan, for whoever holds the budget: what was
simulated, the answer, the tables and the figures, inlined as PNG so the file can be forwarded on its
own. Every figure is followed by a line saying what it shows. The same input gives the same bytes:
PNGs carry no software stamp or date, and nothing in the page depends on the clock or the machine.

report/ sits below results/, experiment/ and planning/ (tests/test_import_graph.py): the run report
takes a Results, the sweep and plan reports take the tables their commands wrote (read by the CLI)."""

from __future__ import annotations

from importlib.metadata import version

import jinja2
import numpy as np
import pandas as pd

from simulator.files import atomic_write
from simulator.report.blocks import figure_block as _figure
from simulator.report.blocks import png
from simulator.report.blocks import table_block as _table
from simulator.report.diagnose import diagnose
from simulator.report.figures import (
    bars_figure,
    cost_periods_figure,
    frontier,
    frontier_figure,
    period_lines_figure,
    power_figure,
    search_figure,
    serving_bin_s,
    serving_bins,
    serving_figure,
    utilization_figure,
    wait_figure,
)
from simulator.report.sections import fragmentation_section, has_network, network_sections, site_sections
from simulator.report.simulated import money, simulated_rows
from simulator.report.summary import estimate_text, period_note, period_rows, summary_rows, target_text
from simulator.units import format_duration

_TEMPLATE = jinja2.Environment(loader=jinja2.PackageLoader("simulator.report", "templates"),
                               autoescape=True).get_template("page.html.j2")


def default_period(timeline: pd.DataFrame) -> str:
    """Weeks for a run of up to two months, months up to two years, else quarters."""
    span_days = (timeline["time_s"].iloc[-1] - timeline["time_s"].iloc[0]) / 86400 if len(timeline) else 0
    return "7d" if span_days <= 62 else ("30d" if span_days <= 730 else "90d")


def _page(kind: str, title: str, sections: list[dict]) -> str:
    return _TEMPLATE.render(kind=kind, title=title, sections=sections, version=version("capsim"))


def _simulated_section(record, summary, seeds=None, varied=None) -> list[dict]:
    rows, assumed = simulated_rows(record, summary, seeds, varied)
    return [{"heading": "What was simulated", "rows": rows},
            {"heading": "Assumptions", "list": assumed}]


def render_report(results, period: str | None = None) -> str:
    """The report of a Results as HTML text."""
    period = period or default_period(results.timeline)
    s = results.summary
    seeds = s.get("seeds") or None
    table = results.by_period(period)
    rows = period_rows(table)
    costed = "cost" in (rows[0] if rows else {})
    finding = diagnose(results.jobs, results.timeline, s)
    partial = [r for r in rows if r.get("note")]
    sections = [
        *_simulated_section(results.scenario, s, seeds),
        {"heading": "Why jobs waited", "verdict": finding.headline, "list": finding.evidence,
         "note": "The rule (simulator/report/diagnose.py): head-of-line blocking when the cluster was under 70% "
                 "busy while jobs queued and one job headed the queue for a quarter of that time asking for more "
                 "than stood idle; failures when 10% of devices were down; a burst when a tenth of the arrival "
                 "span holds half the waiting; capacity when the cluster was 85% busy while jobs queued."},
        {"heading": "Summary", "rows": summary_rows(s)},
        {"heading": f"By period ({period})", "table": _table(rows, flag_last=bool(partial)),
         "note": "Waits count in the period the job was submitted in; utilisation, energy"
                 + (" and cost (devices in service plus energy)" if costed else "") + " are integrated over each "
                 "period." + (" " + period_note() if partial else "")},
        {"heading": "Usage by pool", "table": _table(_pool_rows(results.jobs)),
         "note": "A job counts in the pool it last ran in; its wait is from submission to its first start."},
        _figure("Utilisation and queue", utilization_figure(results.timeline),
                "Top: the share of GPUs busy, averaged over short bins; bottom: how many jobs waited. A long queue "
                "while utilisation is low points at blocking, not at too few GPUs."),
        *([fragmentation_section(s, results.timeline)] if "fragmented_chips" in results.timeline else []),
        _figure("Queueing delay of completed jobs", wait_figure(results.jobs),
                "The share of jobs that waited at least as long as each delay (log scales, so the rare long waits "
                "show); the dotted, dashed and dash-dot lines are the median, p95 and p99."),
        _figure("Power drawn (IT load × PUE)", power_figure(results.timeline),
                "The site's power draw over time, averaged over short bins: what the energy bill and the power "
                "envelope see."),
    ]
    if has_network(s):
        sections += network_sections(s, results.jobs, results.timeline)
    if s.get("sites"):
        sections += site_sections(s, results.jobs, results.timeline)
    if s.get("services"):
        sections += serving_sections(s, results.requests, run_start(results.jobs))
    return _page("run", s.get("scenario", results.scenario_name), sections)


def run_start(jobs: pd.DataFrame) -> float:
    """The run's clock origin: the first submission, or 0 without jobs (engine/simulation.py)."""
    return float(jobs["submit_time"].min()) if len(jobs) else 0.0


def usd_text(usd: float) -> str:
    """Small dollar amounts to the cent (per million tokens), larger ones as money() gives them."""
    return money(usd) if not np.isfinite(usd) or abs(usd) >= 1000 else f"${usd:,.2f}"


def service_rows(v: dict) -> list[tuple[str, str]]:
    """One service's figures (summary.json's services.<name>) in a reader's units."""
    def ms(key: str) -> str:
        return " / ".join(f"{v[f'{key}_p{q}_s'] * 1e3:,.1f}" for q in (50, 95, 99)) + " ms"

    rows = [("requests completed / all", f"{v['requests_completed']:,.0f} / {v['requests']:,.0f}"
             + (f" ({v['requests_rejected']:,.0f} rejected)" if v.get("requests_rejected") else "")),
            ("time to first token p50 / p95 / p99", ms("ttft")),
            ("time per output token p50 / p95 / p99", ms("tpot")),
            ("end-to-end latency p50 / p95 / p99", ms("e2e")),
            ("output tokens per second", f"{v['tokens_per_s']:,.1f} ({v['output_tokens']:,.0f} tokens)")]
    if "slo_attainment" in v:
        rows.append(("SLO attainment", f"{v['slo_attainment']:.2%} ({v['slo_met']:,.0f} requests met every threshold)"))
        rows.append(("goodput", f"{v['goodput_requests_per_s']:,.2f} requests/s, {v['goodput_tokens_per_s']:,.1f} "
                                "tokens/s"))
    rows.append(("replicas (replica-hours, GPU-hours)", f"{v['replicas']:,.0f} ({v['replica_hours']:,.1f}, "
                 f"{v['gpu_hours']:,.1f})"))
    rows.append(("busy share of the replicas' time", f"{v['busy_fraction']:.1%}"))
    rows.append(("KV cache: peak / mean reserved", f"{v['kv_peak_fraction']:.1%} / {v['kv_mean_fraction']:.1%} of "
                 f"{v['kv_capacity_tokens']:,.0f} tokens per replica"))
    if v.get("energy_per_token_j"):
        rows.append(("energy per output token (mean power)", f"{v['energy_per_token_j']:,.2f} J "
                     f"({v['mean_power_kw']:,.2f} kW, {v['energy_kwh']:,.1f} kWh)"))
    if "usd_per_million_tokens" in v:
        rows.append(("cost per million output tokens", f"{usd_text(v['usd_per_million_tokens'])} "
                     f"({usd_text(v['cost_usd'])} in all: devices held and energy)"))
    return rows


def serving_sections(s: dict, requests: pd.DataFrame | None, t0: float) -> list[dict]:
    """A table per service and one figure of the requests and their latency over time."""
    sections = [{"heading": f"Service {name}", "rows": service_rows(v),
                 "note": "Latencies are of completed requests (TTFT: first token minus arrival; TPOT: the time per "
                         "output token after the first); SLO attainment counts every request, a rejected one as a "
                         "miss. Throughput, goodput, busy share, energy and cost are over the time the replicas "
                         "were held: from the run's start to the service's last request leaving."}
                for name, v in s["services"].items()]
    if requests is not None and len(requests):
        bins = serving_bins(requests, t0)
        width = format_duration(float(bins["bin_start_s"].diff().dropna().min()) if len(bins) > 1 else
                                serving_bin_s(0.0))
        busiest = bins.loc[bins["requests"].idxmax()]
        sections.append(_figure("Requests and latency over time", serving_figure(bins),
                                ("Seed " + str(s["seeds"][0]) + "'s requests (requests.parquet keeps the first seed's). "
                                 if s.get("seeds") else "")
                                + f"Per {width} of arrival time: how many requests arrived (per second), and the p99 time "
                                "to first token and time per output token of those requests. Latency that climbs with "
                                "the arrivals means the replicas are short at the peak; the busiest "
                                f"{width} ({busiest['service']}, from {format_duration(busiest['bin_start_s'])}) had "
                                f"{int(busiest['requests']):,} requests."))
    return sections


def write_report(results, target, period: str | None = None):
    return write_html(render_report(results, period), target)


def write_html(text: str, target):
    from pathlib import Path

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return target


_png = png  # the earlier name


def _pool_rows(jobs: pd.DataFrame) -> list[dict]:
    ran = jobs[jobs["pool"].notna()]
    table = ran.groupby(["pool", "device"], observed=True, sort=True)["wait_s"].agg(
        jobs="size", mean_wait="mean", p95_wait=lambda w: w.quantile(0.95))
    return [{"pool": pool, "device": device, "jobs run": f"{int(r.jobs):,}", "mean wait": format_duration(r.mean_wait),
             "wait p95": format_duration(r.p95_wait)} for (pool, device), r in table.iterrows()]


# Sweeps ------------------------------------------------------------------------------------------

def point_names(table: pd.DataFrame, labels: list[str]) -> list[str]:
    if not labels:
        return ["the base scenario"] * len(table)
    if len(labels) == 1:
        return table[labels[0]].astype(str).tolist()
    return table[labels].astype(str).agg(" / ".join, axis=1).tolist()


def render_sweep_report(sweep, baseline: dict | None = None, target: float | None = None) -> str:
    """`sweep`: what experiment.runner.read_sweep returns (runs, points over every metric, diffs,
    periods, record). `target`: a value of the period metric (seconds for a wait) to mark and to find
    the period each point first passes."""
    labels, metrics = sweep.label_columns, sweep.metrics
    points = sweep.points
    names = point_names(points, labels)
    first = sweep.runs.iloc[0].to_dict()
    varied = [f"{k}: {', '.join(dict.fromkeys(str(v) for v in points[k]))}" for k in labels]
    sections = [*_simulated_section(sweep.record, first, sweep.seeds, varied)]
    if sweep.record is not None:
        sections[0]["note"] = ("The rows above are of the first point (its first seed); every point runs the same "
                               "seeds (common random numbers).")
    headers = [*labels, "seeds", *metrics] if labels else ["seeds", *metrics]
    rows = [[*(str(points[k].iloc[i]) for k in labels), str(int(points["seeds"].iloc[i])),
             *(estimate_text(m, points[f"{m}_mean"].iloc[i], points[f"{m}_ci95"].iloc[i]) for m in metrics)]
            for i in range(len(points))]
    sections.append({"heading": "Each point: mean ± 95% interval", "table": {"headers": headers, "rows": rows},
                     "note": "The interval is Student-t over the seeds, for the mean; one seed gives no interval."})
    shown = [m for m in metrics if points[f"{m}_mean"].notna().any()]
    sections.append(_figure("Metrics per point", bars_figure(
        names, shown, {m: points[f"{m}_mean"] for m in shown}, {m: points[f"{m}_ci95"] for m in shown}),
        "Each bar is a point's mean over the seeds; the whisker is its 95% interval. Bars whose whiskers overlap "
        "may still differ: the paired differences below say."))
    if sweep.diffs is not None:
        base_name = ", ".join(f"{k}={v}" for k, v in sweep.baseline.items())
        d = sweep.diffs
        dnames = point_names(d, labels)
        rows = [[n, *(estimate_text(f"{m}_diff", d[f"{m}_diff_mean"].iloc[i], d[f"{m}_diff_ci95"].iloc[i])
                      for m in shown)] for i, n in enumerate(dnames)]
        sections.append({"heading": f"Paired differences from {base_name}",
                         "table": {"headers": ["point", *shown], "rows": rows},
                         "note": "Each point minus the baseline, seed by seed (the same arrivals), then the mean and "
                                 "its 95% interval: an interval that excludes 0 is a real difference."})
        sections.append(_figure("Differences from the baseline", bars_figure(
            dnames, shown, {m: d[f"{m}_diff_mean"] for m in shown}, {m: d[f"{m}_diff_ci95"] for m in shown},
            zero_line=True),
            f"Each bar is a point's mean difference from {base_name} on the same seeds; a whisker that does not "
            "cross the zero line is a difference the seeds cannot explain away."))
    if sweep.period_points is not None and sweep.period_s:
        sections += _sweep_period_sections(sweep, labels, target)
    if "cost_usd" in sweep.runs.columns and sweep.runs["cost_usd"].notna().all():
        service = next((m for m in metrics if m.endswith("_wait_s") or m.endswith("_jct_s")), "p95_wait_s")
        x, y = points["cost_usd_mean"].to_numpy(float), points[f"{service}_mean"].to_numpy(float)
        best = [names[i] for i in frontier(x, y)]
        sections.append(_figure("Cost against service", frontier_figure(
            names, (points["cost_usd_mean"], points["cost_usd_ci95"]),
            (points[f"{service}_mean"], points[f"{service}_ci95"]), service),
            f"Each point's cost over the simulated period against its {service}, with 95% intervals both ways. "
            f"The red line joins the points no other beats on both: {', '.join(best)}. Anything off it pays more "
            "for the same or a worse service."))
    return _page("sweep", f"sweep {sweep.name}", sections)


def _sweep_period_sections(sweep, labels: list[str], target: float | None) -> list[dict]:
    from simulator.metrics.periods import PERIOD_METRICS

    table = sweep.period_points
    metric = next((m for m in sweep.metrics if m in PERIOD_METRICS and f"{m}_mean" in table), "p95_wait_s")
    names = point_names(table, labels)
    flags = sweep.period_flags  # (point name, period) -> note, over the seeds
    series, crossings, rows = [], {}, []
    for name in dict.fromkeys(names):
        part = table[[n == name for n in names]]
        days = part["period"].to_numpy(float) * sweep.period_s / 86400
        mean, ci = part[f"{metric}_mean"].to_numpy(float), part[f"{metric}_ci95"].to_numpy(float)
        series.append((name, days, mean, ci))
        cross = None
        if target is not None:
            above = np.flatnonzero(mean > target)
            if len(above):
                cross = (float(days[above[0]]), float(mean[above[0]]))
        crossings[name] = cross
        for k, p in enumerate(part["period"].astype(int)):
            rows.append([name, format_duration(p * sweep.period_s), estimate_text(metric, mean[k], ci[k]),
                         flags.get((name, p), "")])
    note = period_note()
    sections = []
    if target is not None:
        lines = [f"{n}: first above the target in the period starting at {format_duration(c[0] * 86400)}"
                 if c else f"{n}: never above the target" for n, c in crossings.items()]
        sections.append({"heading": f"When each point passes {metric} = {_target_text(metric, target)}",
                         "list": lines})
    caption = (f"{metric} per period of {format_duration(sweep.period_s)}, a line per point, the shaded band its 95% "
               "interval over the seeds")
    caption += ("; the dashed line is the target and a cross marks the first period above it." if target is not None
                else ".")
    sections.append(_figure(f"{metric} by period", period_lines_figure(series, metric, target, crossings), caption))
    sections.append({"heading": f"{metric} by period of {format_duration(sweep.period_s)}",
                     "table": {"headers": ["point", "from", metric, "note"], "rows": rows, "flag_last": True},
                     "note": note})
    return sections


def _target_text(metric: str, value: float) -> str:
    return format_duration(value) if metric.endswith("_s") else f"{value:g}"


# Plans -------------------------------------------------------------------------------------------

def render_plan_report(plan) -> str:
    """`plan`: what planning.cli.read_plan returns (options, evaluations, target, record, periods)."""
    if plan.target.get("service") is not None:
        return _render_serving_plan(plan)
    target = plan.target
    metric = target["metric"]
    ev = plan.evaluations
    base_summary = plan.base_summary
    within = f" in every period of {format_duration(target['period'])}" if target.get("period") else ""
    options = plan.options
    sections = [*_simulated_section(plan.record, base_summary, plan.seeds,
                                    [f"option {o['name']}: {o['pool'].get('device')}, 0–{o['max_nodes']} nodes of "
                                     f"{o['pool'].get('devices_per_node')}" for o in plan.option_specs])]
    best = options[options["cheapest"]]
    if best.empty:
        answer = "No option meets the target within its max_nodes: there is no answer to buy."
    elif int(best.iloc[0]["nodes"]) == 0:
        answer = "No purchase needed: the cluster as it is meets the target."
    else:
        b = best.iloc[0]
        answer = (f"Buy {int(b['nodes'])} nodes of {b['device']} ({b['option']}), {int(b['devices'])} devices: "
                  f"{money(b['cost_usd_mean'])} over the simulated period (devices, rentals and energy), the "
                  "cheapest option that meets the target.")
    first_miss = plan.base_first_miss
    fails = ("" if not target.get("period") else
             " The cluster as it is meets the target throughout." if first_miss is None else
             f" The cluster as it is first misses it in the period starting at {format_duration(first_miss)} "
             f"(period {int(first_miss // target['period']) + 1}).")
    sections.append({"heading": "The answer", "verdict": answer,
                     "paragraphs": [f"Target: {metric} at most {format_duration(target['at_most'])}{within}, judged "
                                    f"on the {'mean' if target.get('judged_on', 'mean') == 'mean' else 'upper 95% bound'}"
                                    f" over the seeds.{fails}"],
                     "list": [f"WARNING: {w}" for w in plan.warnings] or None})
    rows = [[o["option"], str(o["device"]), str(int(o["nodes"])) if o["feasible"] else "–",
             estimate_text(metric, o[f"{metric}_mean"], o[f"{metric}_ci95"]),
             money(o["cost_usd_mean"]) if o["feasible"] else "–", str(o["verdict"])]
            for _, o in options.iterrows()]
    sections.append({"heading": "Options", "table": {"headers": ["option", "device", "nodes", metric, "cost",
                                                                 "verdict"], "rows": rows}})
    curves = []
    base = ev[ev["option"].isna()]
    for o in plan.option_specs:
        tried = pd.concat([base, ev[ev["option"] == o["name"]]])
        g = tried.groupby("nodes", sort=True)[metric]
        n = g.count()
        ci = g.std(ddof=1) * _t975(n) / np.sqrt(n)
        curves.append((o["name"], g.mean().index.to_numpy(float), g.mean().to_numpy(float), ci.to_numpy(float)))
    chosen = None
    if not best.empty and int(best.iloc[0]["nodes"]) > 0:
        chosen = (best.iloc[0]["option"], int(best.iloc[0]["nodes"]), float(best.iloc[0][f"{metric}_mean"]))
    sections.append(_figure("Each option's search", search_figure(curves, metric, target["at_most"], chosen),
                            f"For each option, every size the search tried: {metric}"
                            + (" (its worst period)" if target.get("period") else "") + " with its 95% interval over "
                            "the seeds, against the nodes added. The search keeps the fewest nodes under the dashed "
                            "target line; the circle is the purchase chosen."))
    if plan.periods is not None and len(plan.periods):
        sections += _plan_period_sections(plan, chosen)
    return _page("plan", f"plan {plan.name}", sections)


def _search_curves(ev: pd.DataFrame, names: list[str], metric: str, size: str) -> list[tuple]:
    curves = []
    for name in names:
        g = ev[ev["option"] == name].groupby(size, sort=True)[metric]
        n = g.count()
        ci = g.std(ddof=1) * _t975(n) / np.sqrt(n)
        curves.append((name, g.mean().index.to_numpy(float), g.mean().to_numpy(float), ci.to_numpy(float)))
    return curves


def _render_serving_plan(plan) -> str:
    """A plan with a service target: the fleet to run, each option's replicas, and the search per threshold."""
    target, options, ev = plan.target, plan.options, plan.evaluations
    limits = [m for m in target if m not in ("service", "window", "judged_on") and target[m] is not None]
    names = [o["name"] for o in plan.option_specs]
    varied = [f"option {o['name']}: {o['pool'].get('device')}, 1–{o['max_replicas']} replicas"
              + (f", layout {o['layout']}" if o.get("layout") else "") for o in plan.option_specs]
    sections = [*_simulated_section(plan.record, plan.base_summary, plan.seeds, varied)]
    sections[0]["note"] = (f"The pools above are the first option's at its max_replicas; each size of each option "
                           f"moves service {target['service']} to a pool of the option's device with as many nodes "
                           "as its replicas need. Every size runs the same seeds (common random numbers).")
    best = options[options["cheapest"]]
    if best.empty:
        answer = "No option meets the target within its max_replicas: there is no answer to buy."
    else:
        b = best.iloc[0]
        answer = (f"Run {int(b['replicas'])} replica{'s' if int(b['replicas']) != 1 else ''} of {target['service']} on {b['device']} ({b['option']}, tp "
                  f"{int(b['tp'])}), {int(b['devices'])} devices: {usd_text(b['cost_usd_mean'])} over the simulated "
                  f"period (devices and energy), {usd_text(b['usd_per_million_tokens_mean'])} per million output tokens; "
                  "the cheapest option that meets the target.")
    peak = ""
    if target.get("window", "peak_hour") == "peak_hour" and "window_start_s" in ev:
        starts = sorted({float(x) for x in ev["window_start_s"].dropna()})
        counts = ev.groupby("seed")["window_requests"].first()
        peak = (" The busiest hour (the whole hour from the run's start with the most arrivals, per seed) starts at "
                + ", ".join(format_duration(x) for x in starts)
                + f", with {int(counts.min()):,}–{int(counts.max()):,} requests." if starts else "")
    sections.append({"heading": "The answer", "verdict": answer,
                     "paragraphs": [f"Target: {target_text(target)}; judged on the "
                                    f"{'mean' if target.get('judged_on', 'mean') == 'mean' else 'worse end of the 95% interval'}"
                                    f" over the seeds.{peak}"],
                     "list": [f"WARNING: {w}" for w in plan.warnings] or None})
    rows = [[o["option"], str(o["device"]), str(int(o["replicas"])) if o["feasible"] else f"> {int(o['max_replicas'])}",
             str(int(o["tp"])), str(int(o["devices"])) if o["feasible"] else "–",
             *(estimate_text(m, o[f"{m}_mean"], o[f"{m}_ci95"]) for m in limits),
             usd_text(o["cost_usd_mean"]) if o["feasible"] else "–",
             usd_text(o["usd_per_million_tokens_mean"]) if o["feasible"] else "–",
             f"{o['energy_per_token_j_mean']:,.2f} J", str(o["verdict"])]
            for _, o in options.iterrows()]
    sections.append({"heading": "Options", "table": {
        "headers": ["option", "device", "replicas", "tp", "devices", *limits, "cost", "per million tokens",
                    "energy per token", "verdict"], "rows": rows},
        "note": "Each option's row is at the fewest replicas that meet every threshold (or at max_replicas when none "
                "does); cost is the service's devices for the time they are held, at the pool's price, plus their "
                "energy."})
    chosen_row = None if best.empty else best.iloc[0]
    for m in limits:
        chosen = None if chosen_row is None else (chosen_row["option"], int(chosen_row["replicas"]),
                                                  float(chosen_row[f"{m}_mean"]))
        how = "at least" if m == "slo_attainment" else "at most"
        sections.append(_figure(f"Each option's search: {m}", search_figure(
            _search_curves(ev, names, m, "replicas"), m, target[m], chosen, unit="replicas"),
            f"For each option, every replica count the search tried: {m} over the "
            + ("busiest hour's requests" if target.get("window", "peak_hour") == "peak_hour" else "run's requests")
            + f", the mean with its 95% interval over the seeds. The dashed line is the target ({how}); the search "
            "keeps the fewest replicas that meet every threshold; the circle is the fleet chosen."))
    return _page("plan", f"plan {plan.name}", sections)


def _plan_period_sections(plan, chosen) -> list[dict]:
    per = plan.periods
    period_s = plan.period_s
    cases = [("the cluster as it is", per[per["nodes"] == 0])]
    if chosen is not None:
        cases.append((f"+ {chosen[1]} nodes ({chosen[0]})", per[(per["option"] == chosen[0])
                                                                  & (per["nodes"] == chosen[1])]))
    metric = plan.target["metric"]
    series, rows, costs = [], [], []
    for name, part in cases:
        g = part.groupby("period", sort=True)
        days = g.size().index.to_numpy(float) * period_s / 86400
        if metric in part:
            n = g[metric].count()
            series.append((name, days, g[metric].mean().to_numpy(float),
                           (g[metric].std(ddof=1) * _t975(n) / np.sqrt(n)).to_numpy(float)))
        cost = g["cost_usd"].mean() if "cost_usd" in part else None
        if cost is not None:
            costs.append((name, cost))
        flags = _flags(part)
        for p in g.size().index.astype(int):
            rows.append([name, format_duration(p * period_s), money(cost[p]) if cost is not None else "–",
                         flags.get(p, "")])
    if costs:  # the cases may run for different numbers of periods: one axis of every period
        every = sorted(set().union(*(c.index for _, c in costs)))
        cost_days = np.asarray(every, dtype=float) * period_s / 86400
        costs = [(name, c.reindex(every).fillna(0.0).to_numpy(float)) for name, c in costs]
    sections = []
    if plan.target.get("period"):
        crossings = {}
        for name, days, mean, _ in series:
            above = np.flatnonzero(mean > plan.target["at_most"])
            crossings[name] = (float(days[above[0]]), float(mean[above[0]])) if len(above) else None
        sections.append(_figure(f"{metric} by period", period_lines_figure(series, metric, plan.target["at_most"],
                                                                           crossings),
                                f"{metric} per period of {format_duration(period_s)} for the cluster as it is and with "
                                "the chosen purchase (mean over the seeds, shaded 95% band); the dashed line is the "
                                "target, a cross the first period above it: when the current cluster fails."))
    if costs:
        sections.append(_figure(f"Cost per period of {format_duration(period_s)}",
                                cost_periods_figure(cost_days, costs, period_s / 86400),
                                "What each period costs (devices in service amortised, rentals, burst hours and "
                                "energy), the cluster as it is beside the chosen purchase: the purchase costs from the "
                                "period it enters service."))
        sections.append({"heading": "Cost per period", "table": {"headers": ["case", "from", "cost", "note"],
                                                                 "rows": rows, "flag_last": True},
                         "note": period_note()})
    return sections


def _flags(part: pd.DataFrame) -> dict:
    """period -> its note over the seeds: cut if any seed's is, drain only if every seed's is."""
    if "partial" not in part or "drain_only" not in part:
        return {}
    g = part.groupby("period")
    return {int(p): period_note_of(bool(cut), bool(drain))
            for p, cut, drain in zip(g.size().index, g["partial"].any(), g["drain_only"].all(), strict=True)}


def period_note_of(partial: bool, drain_only: bool) -> str:
    from simulator.report.summary import period_flag_text

    return period_flag_text(partial, drain_only)


def _t975(n: pd.Series) -> np.ndarray:
    from scipy import stats

    n = np.asarray(n, dtype=float)
    return np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
