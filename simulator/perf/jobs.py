"""Runtimes of model-based jobs: from the performance model for the device a job is placed on.

A model job names a zoo model (workloads/models/) and a budget: `tokens` or `steps` for transformers
(`samples` = sequences also works), `samples` for FLOPs-based models. Its `duration` column holds its
runtime on the reference device (the first pool's device), filled in at build time, so every job table
stays in one schema and duration-based policies (SJF, backfilling) have an estimate. The run hands the
engine `make_runtime(jobs)`, which gives the runtime on the device the engine actually placed the job on.
This bridge between job tables and the performance model is part of perf/ (below the engine and the
workload, which both use it; it imports neither).

FLOPs-based models (`kind: cnn|unet|diffusion`):
    runtime = 3 x forward FLOPs per sample x samples / (devices x dense BF16 peak x efficiency)
(backward ~ 2 x forward; `efficiency` is the entry's stated assumption, default 0.4).

On a contended fabric a transformer job's traffic (`comm_fraction`) also comes from the performance
model, for the devices it got; FLOPs-based jobs have no communication model and use their own column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import pandas as pd

from simulator.errors import CapsimError
from simulator.job import Job, duration_runtime

BUDGETS = ("tokens", "steps", "samples")
LAYOUT_KEYS = ("tp", "pp", "cp")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


@lru_cache(maxsize=65536)
def model_job_seconds(device: str, model: str, gpus: int, tokens: float | None = None, steps: int | None = None,
                      samples: float | None = None, layout: tuple = (), stack: str | None = None) -> float:
    """Seconds to run one model job on `gpus` devices of type `device`; cached per arguments."""
    from simulator.perf.zoo import FlopsModel, load_model

    entry = load_model(model)
    if sum(x is not None for x in (tokens, steps, samples)) != 1:
        raise CapsimError("a model job needs exactly one of tokens, steps or samples", where=f"model {model!r}")
    if isinstance(entry, FlopsModel):
        if samples is None:
            raise CapsimError(f"{model} is FLOPs-based ({entry.kind}): give 'samples', not tokens or steps")
        from simulator.perf import load_profile

        peak = load_profile(device).peak("bf16") * 1e12
        return 3.0 * entry.fwd_flops_per_sample * samples / (gpus * peak * entry.efficiency)
    from simulator.perf import job_runtime

    return float(_on_transformer(job_runtime, device, entry, gpus, tokens, steps, samples, layout, stack))


@lru_cache(maxsize=65536)
def model_job_comm_fraction(device: str, model: str, gpus: int, tokens: float | None = None,
                            steps: int | None = None, samples: float | None = None, layout: tuple = (),
                            stack: str | None = None) -> float | None:
    """The share of a transformer job's run time that its traffic between nodes takes at full bandwidth
    (simulator.perf.job_comm_fraction); None for FLOPs-based models, which have no communication model."""
    from simulator.perf.zoo import FlopsModel, load_model

    entry = load_model(model)
    if isinstance(entry, FlopsModel):
        return None
    from simulator.perf import job_comm_fraction

    return _on_transformer(job_comm_fraction, device, entry, gpus, tokens, steps, samples, layout, stack)


def _on_transformer(predict, device, entry, gpus, tokens, steps, samples, layout, stack=None):
    """`predict` (job_runtime or job_comm_fraction) for a zoo transformer and a job's budget (samples
    are sequences)."""
    spec = entry.model_spec()
    if samples is not None:
        tokens = samples * spec.seq_len
    lay = dict(layout)
    if stack:
        lay["stack"] = stack
    return predict(device, spec, int(gpus), tokens=tokens, steps=None if steps is None else int(steps),
                   layout=lay or None)


def model_columns(row) -> dict | None:
    """The model, budget and layout of one job-table row (a mapping), or None for a duration job."""
    model = row.get("model")
    if not _present(model):
        return None
    budget = {k: float(row[k]) for k in BUDGETS if _present(row.get(k))}
    if "steps" in budget:
        budget["steps"] = int(budget["steps"])
    layout = tuple((k, int(row[k])) for k in LAYOUT_KEYS if _present(row.get(k)) and int(row[k]) > 1)
    stack = str(row["stack"]) if _present(row.get("stack")) else None
    return {"model": str(model), **budget, "layout": layout, "stack": stack}


def fill_reference_durations(jobs: pd.DataFrame, device: str) -> pd.DataFrame:
    """Model jobs get `duration` = runtime on `device` with the GPUs they asked for; others are unchanged."""
    if "model" not in jobs.columns:
        return jobs
    out = jobs.copy()
    if "duration" not in out.columns:
        out["duration"] = math.nan
    cols = [c for c in ("model", *BUDGETS, *LAYOUT_KEYS, "stack") if c in out.columns]
    durations = out["duration"].to_numpy(dtype=float).copy()
    for i, row in enumerate(out[cols + ["gpus"]].to_dict("records")):
        spec = model_columns(row)
        if spec is not None:
            durations[i] = model_job_seconds(device, gpus=int(row["gpus"]), **spec)
    out["duration"] = durations
    return out


def _model_specs(jobs: pd.DataFrame) -> dict[str, dict]:
    """job id -> model, budget and layout, for the model jobs of a job table."""
    if "model" not in jobs.columns:
        return {}
    cols = [c for c in ("job_id", "model", *BUDGETS, *LAYOUT_KEYS, "stack") if c in jobs.columns]
    return {str(row["job_id"]): spec for row in jobs[cols].to_dict("records")
            if (spec := model_columns(row)) is not None}


def make_runtime(jobs: pd.DataFrame) -> Callable[[Job, int, str], float]:
    """runtime_of(job, devices, device) for the engine: the performance model for model jobs (on the
    placed device and device count), `duration_runtime` for every other job."""
    specs = _model_specs(jobs)
    if not specs:
        return duration_runtime

    def runtime_of(job: Job, devices: int, device: str) -> float:
        spec = specs.get(job.id)
        if spec is None:
            return duration_runtime(job, devices, device)
        return model_job_seconds(device, gpus=int(devices), **spec)

    return runtime_of


def make_comm_fraction(jobs: pd.DataFrame) -> Callable[[Job, int, str], float] | None:
    """comm_fraction_of(job, devices, device) for the engine: for a transformer job without a
    `comm_fraction` of its own, the performance model's on the placed device and device count; None
    (every job's own column) when the table has no such job."""
    specs = _model_specs(jobs)
    if specs and "comm_fraction" in jobs.columns:  # (no model job: nothing to filter, and the ids' strings cost)
        given = set(jobs.loc[jobs["comm_fraction"].notna(), "job_id"].astype(str))
        specs = {job_id: spec for job_id, spec in specs.items() if job_id not in given}
    if not specs:
        return None

    def comm_fraction_of(job: Job, devices: int, device: str) -> float:
        spec = specs.get(job.id)
        fraction = None if spec is None else model_job_comm_fraction(device, gpus=int(devices), **spec)
        return job.comm_fraction if fraction is None else fraction

    return comm_fraction_of


def perf_bands(jobs: pd.DataFrame, job_frame: pd.DataFrame) -> tuple[list, list] | None:
    """How sure the performance model is of each transformer job's runtime: (low, high) factors of real
    over predicted runtime, from the cross-validated errors of the nearest published runs (device it ran
    on, stack, model size; simulator/perf/band.py); NaN for other jobs. None when no job has a model."""
    specs = _model_specs(jobs)
    if not specs:
        return None
    from simulator.perf.stacks import DEFAULT_STACK
    from simulator.perf.zoo import TransformerModel, load_model

    low, high = [], []
    for job_id, device in zip(job_frame["job_id"], job_frame["device"], strict=True):
        spec = specs.get(str(job_id))
        entry = load_model(spec["model"]) if spec is not None else None
        band = None
        if isinstance(entry, TransformerModel) and isinstance(device, str):
            band = _band(device, spec["stack"] or DEFAULT_STACK, entry.params / 1e9, entry.num_experts > 1)
        low.append(math.nan if band is None else 1.0 + band.low_error)
        high.append(math.nan if band is None else 1.0 + band.high_error)
    return low, high


@lru_cache(maxsize=1024)
def _band(device: str, stack: str, params_b: float, moe: bool = False):
    """One band per (device, stack, size, MoE or not): a run has thousands of jobs of a few kinds."""
    from simulator.perf.band import error_band

    return error_band(device, stack, params_b, moe=moe)
