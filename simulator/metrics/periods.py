"""A run cut into periods (quarters, months): how waits, utilisation, energy and cost move over time,
as demand grows or capacity changes. Jobs count in the period they were submitted in; utilisation,
energy and cost (when the run was costed) integrate the timeline's step functions over each period
(clipped to the simulated span).

Two flags say which rows are not a whole period of demand: `partial`, a period the simulated span
ends inside (its utilisation, energy and cost cover only the part before the end), and `drain_only`,
a period that starts after the last submission (no demand arrives in it: the queue drains)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.units import format_duration

MAX_PERIODS = 100_000  # rows of one run's table by period

# The numbers of a period row (cost_usd only for a costed run): what a sweep can average over seeds.
PERIOD_METRICS = ("jobs_submitted", "jobs_completed", "mean_wait_s", "p50_wait_s", "p95_wait_s", "gpu_utilization",
                  "energy_kwh", "mean_power_kw", "cost_usd")


def step_integral_at(time: np.ndarray, value: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The integral of the step function (value[i] on [time[i], time[i+1])) from time[0] to each edge."""
    cumulative = np.concatenate([[0.0], np.cumsum(value[:-1] * np.diff(time))])
    edges = np.clip(edges, time[0], time[-1])
    i = np.searchsorted(time, edges, side="right") - 1
    return cumulative[i] + value[i] * (edges - time[i])


def period_table(jobs: pd.DataFrame, timeline: pd.DataFrame, capacity: int, length_s: float) -> pd.DataFrame:
    """One row per period of `length_s` seconds from the first submission."""
    if length_s <= 0:
        raise ValueError(f"a period must be longer than 0 s, got {length_s}")
    if jobs.empty:
        return pd.DataFrame()
    start = float(jobs["submit_time"].min())
    if timeline.empty:  # no job was ever queued (every one rejected): the counts, and nothing in use
        columns = dict.fromkeys([*timeline.columns, "time_s", "busy_gpus"], [0.0])
        timeline = pd.DataFrame({**columns, "time_s": [start]})
    last_submit = float(jobs["submit_time"].max())
    end = float(max(timeline["time_s"].iloc[-1], last_submit))
    periods = np.ceil((end - start) / length_s)
    if periods > MAX_PERIODS:
        raise CapsimError(f"a period of {format_duration(length_s)} cuts the run ({format_duration(end - start)}) "
                          f"into {periods:.3g} periods; at most {MAX_PERIODS:,}", where="periods")
    count = max(1, int(periods))  # the last instant belongs to the last period
    edges = start + length_s * np.arange(count + 1)
    time = timeline["time_s"].to_numpy(dtype=float)
    span = np.diff(np.clip(edges, time[0], time[-1]))
    busy = np.diff(step_integral_at(time, timeline["busy_gpus"].to_numpy(dtype=float), edges))
    installed = (np.diff(step_integral_at(time, timeline["installed_gpus"].to_numpy(dtype=float), edges))
                 if "installed_gpus" in timeline.columns else capacity * span)
    joules = (np.diff(step_integral_at(time, timeline["power_kw"].to_numpy(dtype=float) * 1000, edges))
              if "power_kw" in timeline.columns else np.full(count, np.nan))
    usd = (np.diff(step_integral_at(time, timeline["usd_per_h"].to_numpy(dtype=float) / 3600, edges))
           if "usd_per_h" in timeline.columns else None)
    which = np.clip(((jobs["submit_time"].to_numpy(dtype=float) - start) // length_s).astype(int), 0, count - 1)
    done = (jobs["status"] == "completed").to_numpy()
    wait = jobs["wait_s"].to_numpy(dtype=float)
    rows = []
    for k in range(count):
        w = wait[(which == k) & done]
        rows.append({
            "period": k, "start_s": edges[k], "end_s": edges[k + 1],
            "jobs_submitted": int((which == k).sum()), "jobs_completed": int(len(w)),
            "mean_wait_s": float(w.mean()) if len(w) else np.nan,
            "p50_wait_s": float(np.percentile(w, 50)) if len(w) else np.nan,
            "p95_wait_s": float(np.percentile(w, 95)) if len(w) else np.nan,
            "gpu_utilization": float(busy[k] / installed[k]) if installed[k] > 0 else np.nan,
            "energy_kwh": float(joules[k] / 3.6e6),
            "mean_power_kw": float(joules[k] / span[k] / 1000) if span[k] > 0 else np.nan,
            **({"cost_usd": float(usd[k])} if usd is not None else {}),
            "partial": bool(edges[k + 1] > end), "drain_only": bool(edges[k] > last_submit),
        })
    return pd.DataFrame(rows)
