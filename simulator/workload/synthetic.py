"""Synthetic jobs: arrivals from a process, sizes and durations from distributions, all vectorised."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.workload.spec import SyntheticWorkload


def arrival_times(spec: SyntheticWorkload, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals: exponential gaps from `start`, either `jobs` of them or all before `until`."""
    mean_gap = 3600.0 / spec.arrival.rate_per_hour
    if spec.jobs is not None:
        return spec.start + np.cumsum(rng.exponential(mean_gap, spec.jobs))
    horizon = spec.until - spec.start
    chunks, t = [], spec.start
    while True:
        # Draw in chunks of the expected count (plus slack) so one call usually suffices.
        n = int(horizon / mean_gap * 1.1) + 64
        times = t + np.cumsum(rng.exponential(mean_gap, n))
        chunks.append(times[times < spec.until])
        if times[-1] >= spec.until:
            return np.concatenate(chunks)
        t = times[-1]


def generate(spec: SyntheticWorkload, rng: np.random.Generator) -> pd.DataFrame:
    submit = arrival_times(spec, rng)
    n = len(submit)
    gpus = np.full(n, spec.gpus, dtype=np.int64) if isinstance(spec.gpus, int) else spec.gpus.sample(rng, n)
    duration = np.maximum(spec.duration.sample(rng, n), 0.0)
    jobs = pd.DataFrame({
        "job_id": [f"{spec.name}-{i}" for i in range(n)],
        "submit_time": submit,
        "gpus": gpus.astype(np.int64),
        "duration": duration,
    })
    if spec.users > 1:
        jobs["user"] = pd.array([f"user{u}" for u in rng.integers(0, spec.users, n)], dtype="string")
    return jobs
