"""Synthetic jobs: arrivals from a process, sizes and durations from distributions, all vectorised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from simulator.workload.arrivals import arrival_times
from simulator.workload.spec import SyntheticWorkload


def generate(spec: SyntheticWorkload, rng: np.random.Generator) -> pd.DataFrame:
    """The job table of one synthetic source. Model jobs get `duration` NaN here; build.py fills in their
    runtime on the reference device once the cluster is known."""
    submit = arrival_times(spec.arrival, rng, spec.start, until=spec.until, jobs=spec.jobs, growth=spec.growth)
    n = len(submit)
    which = None
    if spec.classes is not None:
        gpus, duration, which = _sample_classes(spec, rng, n)
    else:
        gpus = _sample_gpus(spec.gpus, rng, n)
        duration = np.full(n, np.nan) if spec.model is not None else np.maximum(spec.duration.sample(rng, n), 0.0)
    if spec.growth is not None:
        gpus = spec.growth.grow_sizes(gpus, submit, rng)
    jobs = pd.DataFrame({
        "job_id": numbered_ids(f"{spec.name}-", n),
        "submit_time": submit,
        "gpus": gpus.astype(np.int64),
        "duration": duration,
    })
    if spec.model is not None:
        _add_model_columns(jobs, spec)
    if which is not None and any(c.slice_shape is not None for c in spec.classes):
        shapes = np.array([c.slice_shape for c in spec.classes], dtype=object)
        jobs["slice_shape"] = pd.Series(shapes[which], dtype=object)
    if spec.users > 1:
        jobs["user"] = pd.array([f"user{u}" for u in rng.integers(0, spec.users, n)], dtype="string")
    if spec.comm_fraction is not None:
        jobs["comm_fraction"] = spec.comm_fraction
    if spec.home_site is not None:
        jobs["home_site"] = spec.home_site
    if spec.input_gb is not None:
        jobs["input_gb"] = spec.input_gb
    if spec.gpu_fraction is not None:  # drawn last, so the other columns' draws stay as they were without it
        share = np.full(n, float(spec.gpu_fraction)) if isinstance(spec.gpu_fraction, float) else \
            spec.gpu_fraction.sample(rng, n)
        jobs["gpu_fraction"] = np.where((jobs["gpus"].to_numpy() == 1) & (share < 1), share, np.nan)
    return jobs


def numbered_ids(prefix: str, n: int) -> pd.Series:
    """prefix0, prefix1, ...: built in Arrow, since a million Python strings take half a second."""
    numbers = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(pc.binary_join_element_wise(prefix, numbers, "")), dtype=str)


def _sample_gpus(gpus, rng, n) -> np.ndarray:
    return np.full(n, gpus, dtype=np.int64) if isinstance(gpus, int) else gpus.sample(rng, n)


def _sample_classes(spec: SyntheticWorkload, rng, n) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = np.asarray([c.weight for c in spec.classes], float)
    which = rng.choice(len(weights), size=n, p=weights / weights.sum())
    gpus, duration = np.empty(n, np.int64), np.empty(n)
    for i, cls in enumerate(spec.classes):
        mask = which == i
        k = int(mask.sum())
        gpus[mask] = _sample_gpus(cls.gpus, rng, k)
        duration[mask] = np.maximum(cls.duration.sample(rng, k), 0.0)
    return gpus, duration, which


def _add_model_columns(jobs: pd.DataFrame, spec: SyntheticWorkload) -> None:
    jobs["model"] = pd.array([spec.model] * len(jobs), dtype="string")
    for key in ("tokens", "steps", "samples"):
        if getattr(spec, key) is not None:
            jobs[key] = float(getattr(spec, key))
    if spec.layout is not None:
        for key in ("tp", "pp", "cp"):
            jobs[key] = getattr(spec.layout, key)
    if spec.stack is not None:
        jobs["stack"] = pd.array([spec.stack] * len(jobs), dtype="string")
