"""What was simulated: the section every report opens with, so a reader can tell what the numbers are
of before reading them. `scenario_record` keeps what that section needs of a validated scenario as
plain JSON (beside a run's files, in a sweep's sweep.json, in a plan's plan.json); `simulated_rows`
turns it, and the run's own counts, into rows and an assumptions list."""

from __future__ import annotations

import math

from simulator.units import format_duration, format_span


def scenario_record(scenario) -> dict:
    """The scenario as the report describes it: pools (device, count, in service from/until, price),
    workload sources, policy, prices and failures, as JSON-able values."""
    from simulator.perf.profile import load_profile

    pools = []
    for p in scenario.cluster.pools:
        list_price = load_profile(p.device).price_usd  # the scenario was validated: the device exists
        pools.append({"name": p.name, "device": p.device, "nodes": p.nodes, "devices": p.nodes * p.devices_per_node,
                      "from_s": float(p.available_from),
                      "until_s": None if p.available_until is None else float(p.available_until),
                      "burst": p.burst_after is not None,
                      "price_usd": p.price_usd if p.price_usd is not None else list_price,
                      "usd_per_device_hour": p.usd_per_device_hour})
    workload = []
    for w in scenario.workload:
        if w.kind == "trace":
            text = f"trace {w.path} ({w.format})"
        elif w.kind == "preset":
            text = f"preset {w.name or w.path}" + (f" at {w.rate_scale:g}x its rate" if w.rate_scale != 1 else "")
        else:
            text = "synthetic generator"
        workload.append(text)
    cost = None if scenario.cost is None else {"usd_per_kwh": scenario.cost.usd_per_kwh,
                                               "amortization_years": scenario.cost.amortization_years}
    failures = None if scenario.failures is None else {"device_mtbf_s": scenario.failures.device_mtbf,
                                                       "repair_s": scenario.failures.repair}
    services = [{"name": v.name, "model": v.model if isinstance(v.model, str) else "a model shape",
                 "pool": v.pool, "tp": v.layout.tp,
                 "replicas": v.replicas if isinstance(v.replicas, int) else v.replicas.model_dump(exclude_none=True),
                 "slo": None if v.slo is None else v.slo.model_dump(exclude_none=True)}
                for v in getattr(scenario, "services", None) or []]
    requests = []
    for r in getattr(scenario, "requests", None) or []:
        if r.kind == "trace":
            requests.append(f"trace {r.path} ({r.format}) to {r.service}")
        else:
            size = f"{r.requests:,} requests" if r.requests is not None else f"until {format_span(r.until)}"
            shape = ", daily profile" if r.arrival.sinusoid is not None or r.arrival.hourly is not None else ""
            requests.append(f"synthetic to {r.service}: {size} at {r.arrival.rate_per_s:g}/s mean ({r.arrival.process}"
                            f"{shape})")
    if not workload:
        workload = ["none (serving only)"] if services else ["a job table given to simulator.run"]
    return {"name": scenario.name, "policy": str(scenario.scheduler.policy), "pools": pools,
            "workload": workload, "cost": cost, "failures": failures,
            "pue": getattr(scenario.power, "pue", None), "services": services, "requests": requests}


def pool_window(pool: dict) -> str:
    if pool.get("burst"):
        return "cloud burst (rented by the hour used)"
    since = "from the start" if not pool.get("from_s") else f"from {format_span(pool['from_s'])}"
    return since + ("" if pool.get("until_s") is None else f" until {format_span(pool['until_s'])}")


def money(usd: float) -> str:
    """Dollars as a budget holder reads them: $1.23M, $456k, $789."""
    if not math.isfinite(usd):
        return "–"
    a = abs(usd)
    if a >= 1e9:
        return f"${usd / 1e9:,.2f}B"
    if a >= 1e6:
        return f"${usd / 1e6:,.2f}M"
    if a >= 1e4:
        return f"${usd / 1e3:,.0f}k"
    return f"${usd:,.0f}"


def offered_load(summary: dict) -> float | None:
    """The demand in GPUs: device-hours asked for per hour of submissions (offered_gpu_hours over the
    arrival span), None where the summary predates these keys or the arrivals take no time."""
    hours, span = summary.get("offered_gpu_hours"), summary.get("arrival_span_s")
    if hours is None or not span:
        return None
    return hours / (span / 3600.0)


def simulated_rows(record: dict | None, summary: dict, seeds: list[int] | None = None,
                   varied: list[str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, text) rows of what was simulated, and the assumptions behind the numbers. `record`: a
    scenario_record (None for a run written before it was kept: the rows say what the summary alone
    tells); `summary`: the run's summary, or a representative one (a sweep's or plan's base point);
    `varied`: what a sweep or plan changes from point to point."""
    rows: list[tuple[str, str]] = []
    if record is not None:
        for p in record["pools"]:
            price = ""
            if record.get("cost") is not None:
                if p.get("usd_per_device_hour") is not None:
                    price = f", {money(p['usd_per_device_hour'])}/device-hour"
                elif p.get("price_usd") is not None:
                    price = f", {money(p['price_usd'])} per device"
            rows.append((f"pool {p['name']}", f"{p['devices']:,} × {p['device']} ({p['nodes']:,} nodes), "
                                              f"{pool_window(p)}{price}"))
        rows.append(("workload", "; ".join(record["workload"])))
        for v in record.get("services") or []:
            slo = ", ".join(f"{k.removesuffix('_s').upper()} ≤ " + (f"{x * 1e3:g} ms" if x < 1 else format_duration(x))
                            for k, x in (v["slo"] or {}).items())
            reps = v["replicas"]
            count = (f"{reps:,} replica{'s' if reps != 1 else ''}" if isinstance(reps, int)
                     else f"{reps['min']:,} to {reps['max']:,} replicas (autoscaled)")
            rows.append((f"service {v['name']}", f"{v['model']}, {count} of {v['tp']} device{'s' if v['tp'] != 1 else ''}"
                         f" on pool {v['pool']}" + (f"; SLO {slo}" if slo else "")))
        if record.get("requests"):
            rows.append(("requests", "; ".join(record["requests"])))
        rows.append(("policy", record["policy"]))
    elif summary.get("policy"):
        rows.append(("policy", str(summary["policy"])))
    jobs = summary.get("jobs_submitted")
    serving_only = not jobs and bool(record and record.get("services"))  # no training: no job rows
    if jobs is not None and not serving_only:
        rows.append(("jobs", f"{jobs:,.0f} submitted over {format_span(summary.get('arrival_span_s', 0.0))}"
                     if "arrival_span_s" in summary else f"{jobs:,.0f} submitted"))
    load, gpus = offered_load(summary), summary.get("gpus_total")
    if load is not None and gpus:
        text = (f"{load:,.1f} GPU-hours per hour of submissions against {gpus:,.0f} GPUs owned at the start "
                f"({load / gpus:.0%} of capacity)")
        horizon = summary.get("makespan_s") or 0.0
        if horizon > 0:
            text += (f"; {summary['offered_gpu_hours']:,.0f} GPU-hours in all, {summary['offered_gpu_hours'] / gpus / (horizon / 3600):.0%} "
                     "of the capacity over the horizon")
        rows.append(("offered load", text))
    if seeds:
        rows.append(("seeds", f"{len(seeds)} ({seeds[0]}–{seeds[-1]})" if len(seeds) > 1 else f"1 ({seeds[0]})"))
    elif summary.get("seed") is not None:
        rows.append(("seeds", f"1 ({summary['seed']})"))
    if summary.get("makespan_s") is not None and not serving_only:
        rows.append(("horizon", f"{format_span(summary['makespan_s'])} from the first submission to the last "
                     "completion"))
    if varied:
        rows.append(("varied", ", ".join(varied)))
    return rows, assumptions(record)


def assumptions(record: dict | None) -> list[str]:
    """What the numbers take for granted, in plain words."""
    out = ["Waits and completion times are of completed jobs; a job's wait runs from its submission to its "
           "first start.",
           "Utilisation is busy device-time over the device-time of the owned pools in service; rented burst "
           "devices are not in it."]
    if record is None:
        out.append("This run was written without its scenario record (scenario.json), so its pools are not "
                   "listed; run it again to have them.")
        return out
    if record.get("failures") is None:
        out.append("No node fails (the scenario sets no `failures:`).")
    else:
        f = record["failures"]
        out.append(f"Each device fails on average once every {format_span(f['device_mtbf_s'])}; a failed node "
                   f"is down for {format_duration(f['repair_s'])}.")
    cost = record.get("cost")
    if cost is None:
        out.append("No prices are set (no `cost:`), so no dollar figure is given.")
    else:
        out.append(f"Bought devices are amortised straight-line over {cost['amortization_years']:g} years and "
                   f"charged for their time in service only; energy costs ${cost['usd_per_kwh']:g} per kWh. "
                   "Device prices only: servers, network and buildings are not counted.")
    if record.get("pue") is not None:
        out.append(f"Power is the IT load times a PUE of {record['pue']:g}.")
    out.append("Jobs with a plain duration run as long on any device; jobs with a `model` are timed by the "
               "performance model on the device they run on.")
    return out
