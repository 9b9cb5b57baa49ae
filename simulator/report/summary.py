"""A run's summary and its table by period as rows in the units a planner reads (hours, %, MWh, dollars):
what the CLI prints and the report shows; and a metric's mean over seeds with its interval, as the
sweep and plan commands print it."""

from __future__ import annotations

import math

import pandas as pd

from simulator.units import format_duration


def summary_rows(s: dict) -> list[tuple[str, str]]:
    """The summary as (label, value) rows in planners' units: the CLI's table and the report's."""
    rows = [
        ("scenario", f"{s.get('scenario')} (seed {s.get('seed')}, policy {s.get('policy')})"),
        ("GPUs", f"{s.get('gpus_total', 0):,}"),
        *([("peak dense compute", peak_text(s))] if "peak_pflops_bf16" in s else []),
        ("jobs submitted / completed", f"{s['jobs_submitted']:,} / {s['jobs_completed']:,}"
         + (f" ({s['jobs_rejected']:,} rejected)" if s.get("jobs_rejected") else "")),
        ("queueing delay mean / p50", f"{format_duration(s['mean_wait_s'])} / {format_duration(s['p50_wait_s'])}"),
        ("queueing delay p95 / p99", f"{format_duration(s['p95_wait_s'])} / {format_duration(s['p99_wait_s'])}"),
        ("mean job completion time", format_duration(s["mean_jct_s"])),
        ("GPU utilisation", f"{s['gpu_utilization']:.1%}"),
        ("makespan", format_duration(s["makespan_s"])),
    ]
    if "energy_kwh" in s:
        rows.append(("energy (mean power)", f"{s['energy_kwh'] / 1000:,.1f} MWh ({s['mean_power_kw']:,.0f} kW)"))
    if "burst_gpu_hours" in s:
        rows.append(("cloud burst (jobs)", f"{s['burst_gpu_hours']:,.0f} GPU-hours ({s['burst_jobs']:,})"
                     + (f", ${s['burst_usd']:,.0f}" if "burst_usd" in s else "")))
    if "cost_usd" in s:
        rows.append(("cost (devices + energy)", f"${s['cost_usd']:,.0f}"))
    if "network_delay_gpu_hours" in s:
        rows.append(("network contention (jobs slowed)",
                     f"{s['network_delay_gpu_hours']:,.0f} GPU-hours lost ({s['network_delayed_jobs']:,})"))
    if "failures" in s:
        rows.append(("node failures (job interruptions)", f"{s['failures']:,} ({s['failure_interruptions']:,})"))
    if s.get("preemptions"):
        rows.append(("preemptions (GPU-hours lost)", f"{s['preemptions']:,} ({s['lost_gpu_hours']:,.1f})"))
    return rows


def flops_text(pflops: float) -> str:
    """An aggregate peak in the unit vendors quote: EFLOP/s from 1,000 PFLOP/s (two decimals), else
    PFLOP/s (three significant digits)."""
    if pflops >= 1000:
        return f"{pflops / 1000:.2f} EFLOP/s"
    return f"{pflops:,.0f} PFLOP/s" if pflops >= 100 else f"{pflops:.3g} PFLOP/s"


def peak_text(s: dict) -> str:
    """`506 PFLOP/s BF16, 1.01 EFLOP/s FP8` from a summary's peak_pflops_* keys."""
    return ", ".join(f"{flops_text(s[f'peak_pflops_{p}'])} {p.upper()}" for p in ("bf16", "fp8")
                     if f"peak_pflops_{p}" in s)


def memory_text(gib: float) -> str:
    return f"{gib / 1024:,.1f} TiB" if gib >= 1024 else f"{gib:,.0f} GiB"


def power_text(kw: float) -> str:
    return f"{kw / 1000:,.2f} MW" if kw >= 1000 else f"{kw:,.0f} kW"


def capacity_rows(pools: list) -> list[dict[str, str]]:
    """Each pool's and the cluster's devices, aggregate dense peak by precision, HBM and power (every
    device idle – every device busy), as `capsim scenario show` prints them. `pools`: the
    models.capacity.PoolCapacity of a scenario. The cluster is the owned pools in service, one row
    from the start and one from each time an expansion enters service or a pool retires."""
    from simulator.models.capacity import total

    fp8 = any("fp8" in p.peak_pflops for p in pools)

    def row(label: str, device: str, window: str, figures: dict) -> dict[str, str]:
        peaks = figures["peak_pflops"]
        out = {"": label, "device": device, "devices": f"{figures['devices']:,}", "in service": window,
               "peak BF16": flops_text(peaks["bf16"])}
        if fp8:
            out["peak FP8"] = flops_text(peaks["fp8"]) if "fp8" in peaks else "–"
        out["HBM"] = memory_text(figures["memory_gib"])
        out["power idle – busy"] = f"{power_text(figures['idle_kw'])} – {power_text(figures['busy_kw'])}"
        return out

    def window(p) -> str:
        if p.burst:
            return "burst (rented, not in the cluster)"
        since = "from the start" if p.available_from <= 0 else f"from {format_duration(p.available_from)}"
        return since + ("" if p.available_until is None else f" until {format_duration(p.available_until)}")

    rows = [row(p.name, p.device, window(p), total([p])) for p in pools]
    owned = [p for p in pools if not p.burst]
    changes = sorted({0.0, *(p.available_from for p in owned),
                      *(p.available_until for p in owned if p.available_until is not None)})
    for t in changes:
        live = [p for p in owned if p.available_from <= t and (p.available_until is None or p.available_until > t)]
        label = "cluster" if len(changes) == 1 else f"cluster from {format_duration(t)}"
        rows.append(row(label, ", ".join(dict.fromkeys(p.device for p in live)) or "–", "", total(live)) if live
                    else {"": label, "device": "–", "devices": "0"})
    return rows


def period_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """A run's table by period (Results.by_period) as rows of column header -> text; a dash where a
    period had no completed job. Cost only for a costed run."""
    def wait(w: float) -> str:
        return format_duration(w) if pd.notna(w) else "–"

    first = table["start_s"].iloc[0] if len(table) else 0.0
    rows = []
    for r in table.itertuples(index=False):
        row = {"period": str(int(r.period)), "from": format_duration(r.start_s - first),
               "jobs submitted": f"{int(r.jobs_submitted):,}", "wait p50": wait(r.p50_wait_s),
               "wait p95": wait(r.p95_wait_s), "GPU utilisation": f"{r.gpu_utilization:.1%}",
               "energy MWh": f"{r.energy_kwh / 1000:,.1f}" if pd.notna(r.energy_kwh) else "–"}
        if "cost_usd" in table.columns:
            row["cost"] = f"${r.cost_usd:,.0f}"
        rows.append(row)
    return rows


def estimate_text(metric: str, mean: float, ci: float) -> str:
    """`mean ± half-width` of a summary metric over seeds; the mean alone from one seed (ci NaN); a dash
    where no run had a value (a period in which no job was submitted)."""
    if math.isnan(mean):
        return "–"
    if math.isnan(ci):
        return metric_text(metric, mean)
    return f"{metric_text(metric, mean)} ± {metric_text(metric, ci)}"


def metric_text(metric: str, value: float) -> str:
    """One value of a summary metric (or of its paired difference, `<metric>_diff`) in a reader's units:
    durations for `*_s`, a percentage for utilisation, else a number."""
    base = metric.removesuffix("_diff")
    if base.endswith("_s"):
        return format_duration(value)
    if base == "gpu_utilization":
        return f"{value:.1%}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
