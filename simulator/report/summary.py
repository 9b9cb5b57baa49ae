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
    for name, v in (s.get("services") or {}).items():
        rows.append((f"service {name}: requests done / all", f"{v['requests_completed']:,} / {v['requests']:,}"))
        rows.append((f"service {name}: TTFT p50 / p99", f"{v['ttft_p50_s'] * 1e3:,.1f} ms / {v['ttft_p99_s'] * 1e3:,.1f} ms"))
        rows.append((f"service {name}: TPOT p50 / p99", f"{v['tpot_p50_s'] * 1e3:,.2f} ms / {v['tpot_p99_s'] * 1e3:,.2f} ms"))
        rows.append((f"service {name}: tokens/s (replica-hours)",
                     f"{v['tokens_per_s']:,.0f} ({v['replica_hours']:,.1f})"))
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
