"""The statistics the trace papers report (Helios SC'21, Philly ATC'19, PAI NSDI'22, Acme NSDI'24).

Run time and queueing figures are over GPU jobs, as in the papers' GPU-job columns. A fractional job
(gpu_fraction) counts its share of a GPU in the mean and in GPU time.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.workload.schema import STATUSES

LARGE_JOB_GPUS = 8  # "large" as in Helios/Acme: a job of at least one 8-GPU node


def trace_stats(jobs: pd.DataFrame) -> dict:
    """A flat dict of JSON-ready figures for a job list in the schema (None where undefined)."""
    gpus = jobs["gpus"].to_numpy(dtype=float)
    gpu_jobs = jobs.loc[gpus >= 1]
    demand = _gpu_demand(gpu_jobs)
    runtime = gpu_jobs["duration"].to_numpy(dtype=float)
    gpu_time = demand * runtime
    stats: dict = {
        "jobs": len(jobs),
        "gpu_jobs": len(gpu_jobs),
        "cpu_only_jobs": int((gpus == 0).sum()),
        "mean_runtime_s": _mean(runtime),
        "median_runtime_s": _quantile(runtime, 0.5),
        "p90_runtime_s": _quantile(runtime, 0.9),
        "mean_gpus": _mean(demand),
        "median_gpus": _quantile(demand, 0.5),
        "single_gpu_share": _share(gpu_jobs["gpus"].to_numpy() == 1),
        "large_job_gpu_time_share": _ratio(gpu_time[gpu_jobs["gpus"].to_numpy() >= LARGE_JOB_GPUS].sum(),
                                           gpu_time.sum()),
        "gpu_hours": float(gpu_time.sum() / 3600.0),
        "span_s": float(np.ptp(jobs["submit_time"].to_numpy(dtype=float))) if len(jobs) else None,
    }
    if "status" in gpu_jobs:
        counts = gpu_jobs["status"].value_counts()
        stats["status_shares"] = {s: _ratio(counts.get(s, 0), len(gpu_jobs)) for s in STATUSES}
    if "recorded_wait" in gpu_jobs:
        waits = gpu_jobs["recorded_wait"].to_numpy(dtype=float)
        waits = waits[np.isfinite(waits)]
        if len(waits):
            stats["mean_wait_s"] = _mean(waits)
            stats["median_wait_s"] = _quantile(waits, 0.5)
    return stats


def load_stats(load) -> dict:
    """trace_stats of a TraceLoad, preceded by what the load read, skipped and dropped."""
    return {
        "source": load.source,
        "format": load.format,
        "records": load.rows,
        "skipped_malformed": load.skipped,
        "skipped_reasons": dict(load.skipped_reasons),
        "cpu_only_dropped": load.cpu_only,
        "dropped": dict(load.dropped),
        **trace_stats(load.jobs),
    }


def _gpu_demand(jobs: pd.DataFrame) -> np.ndarray:
    demand = jobs["gpus"].to_numpy(dtype=float)
    if "gpu_fraction" in jobs:
        fraction = jobs["gpu_fraction"].to_numpy(dtype=float)
        demand = np.where(np.isfinite(fraction), fraction, demand)
    return demand


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _quantile(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def _share(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None


def _ratio(part: float, whole: float) -> float | None:
    return float(part) / float(whole) if whole and math.isfinite(whole) else None
