"""A run's summary (summary.json): waits, completion times, utilisation and energy from the job table
and the timeline; what a sweep can aggregate across seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.metrics.periods import step_integral_at

SUMMARY_KEYS = ("jobs_submitted", "jobs_completed", "mean_wait_s", "p50_wait_s", "p95_wait_s", "p99_wait_s",
                "mean_jct_s", "gpu_utilization", "makespan_s")
# Every number a summary may hold (the optional ones only when energy, cost or failures are set up):
# what a sweep can aggregate across seeds.
SUMMARY_METRICS = (*SUMMARY_KEYS, "jobs_rejected", "max_wait_s", "p95_jct_s", "busy_gpu_hours", "preemptions",
                   "lost_gpu_hours", "gpus_total", "energy_kwh", "mean_power_kw", "cost_usd", "capex_usd",
                   "rental_usd", "energy_usd", "failures", "failure_interruptions", "down_gpu_hours",
                   "burst_gpu_hours", "burst_jobs", "burst_usd", "network_delay_gpu_hours", "network_delayed_jobs",
                   "peak_pflops_bf16", "peak_pflops_fp8", "offered_gpu_hours", "arrival_span_s")


def timeline_span(timeline: pd.DataFrame) -> float:
    """Seconds from the timeline's first change to its last: the period energy and cost cover."""
    return float(timeline["time_s"].iloc[-1] - timeline["time_s"].iloc[0]) if len(timeline) else 0.0


def summarize(jobs: pd.DataFrame, busy_device_seconds: float, capacity: int, timeline: pd.DataFrame | None = None,
              extra: dict | None = None) -> dict:
    """The summary.json contract. Waits and JCTs are over completed jobs; utilisation is busy
    device-time over available device-time from the first submission to the last completion; energy
    is the timeline's power integrated over its span (the first arrival to the last change)."""
    done = jobs[jobs["status"] == "completed"]
    wait = done["wait_s"].to_numpy(dtype=float)
    jct = done["jct_s"].to_numpy(dtype=float)
    if len(jobs):
        first = float(jobs["submit_time"].min())
        last = float(np.nanmax(jobs["end_time"].to_numpy(dtype=float))) if len(done) else first
    else:
        first = last = 0.0
    makespan = last - first
    available = capacity * makespan
    if timeline is not None and "installed_gpus" in timeline.columns and len(timeline):
        # Expansions count from their installation: devices not yet there were not available.
        time = timeline["time_s"].to_numpy(dtype=float)
        area = step_integral_at(time, timeline["installed_gpus"].to_numpy(dtype=float), np.array([first, last]))
        available = float(area[1] - area[0])

    def pct(q: float) -> float:
        return float(np.percentile(wait, q)) if len(wait) else 0.0

    summary = {
        "jobs_submitted": int(len(jobs)),
        "jobs_completed": int(len(done)),
        "jobs_rejected": int((jobs["status"] == "rejected").sum()),
        "mean_wait_s": float(wait.mean()) if len(wait) else 0.0,
        "p50_wait_s": pct(50),
        "p95_wait_s": pct(95),
        "p99_wait_s": pct(99),
        "max_wait_s": float(wait.max()) if len(wait) else 0.0,
        "mean_jct_s": float(jct.mean()) if len(jct) else 0.0,
        "p95_jct_s": float(np.percentile(jct, 95)) if len(jct) else 0.0,
        "gpu_utilization": float(busy_device_seconds / available) if available > 0 else 0.0,
        "makespan_s": float(makespan),
        "busy_gpu_hours": float(busy_device_seconds / 3600.0),
        "preemptions": int(jobs["preemptions"].sum()),
        "lost_gpu_hours": float(jobs["lost_gpu_s"].sum() / 3600.0),
        # The demand: device-hours asked for (each job's devices x its run time at the reference speed)
        # and the span its submissions cover; their ratio is the offered load in GPUs, beside gpus_total.
        "offered_gpu_hours": float((jobs["gpus"].to_numpy(dtype=float) * jobs["duration"].to_numpy(dtype=float)).sum()
                                   / 3600.0) if len(jobs) else 0.0,
        "arrival_span_s": float(jobs["submit_time"].max() - jobs["submit_time"].min()) if len(jobs) else 0.0,
    }
    if timeline is not None and "power_kw" in timeline.columns:
        time, kw = timeline["time_s"].to_numpy(dtype=float), timeline["power_kw"].to_numpy(dtype=float)
        kwh = float((kw[:-1] * np.diff(time)).sum() / 3600.0)
        span = timeline_span(timeline)
        summary["energy_kwh"] = kwh
        summary["mean_power_kw"] = kwh * 3600.0 / span if span > 0 else 0.0
    summary.update(extra or {})
    return summary
