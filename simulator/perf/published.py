"""Predicted vs published training runs on other hardware and software stacks (H100, TPU v4, A100),
read from workloads/validation/published_runs.yaml. Each row is predicted with its published layout and
compared in its own metric: tokens/s per device as is, TFLOP/s or MFU after counting the predicted
throughput with the run's own FLOP convention (see the YAML header)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.validate import eq3_flops

METRICS = ("tokens_per_s_per_gpu", "tflops_per_gpu", "mfu")


@dataclass(frozen=True)
class PublishedRow:
    name: str
    device: str
    metric: str
    published: float
    predicted: float
    confidence: str
    in_summary: bool

    @property
    def error(self) -> float:
        return (self.predicted - self.published) / self.published


def default_table() -> Path:
    return Path(__file__).resolve().parents[2] / "workloads" / "validation" / "published_runs.yaml"


def flops_per_seq(m: ModelSpec, convention: str) -> float:
    """Model FLOPs of one sequence under a run's published convention."""
    if convention == "6n_attn":
        return m.training_flops_per_seq()
    if convention == "megatron_eq3":
        return eq3_flops(1, m.seq_len, m.layers, m.hidden, m.vocab)
    raise CapsimError(f"unknown FLOP convention {convention!r}; expected 6n_attn or megatron_eq3", where="flops")


def predict_run(run: dict) -> PublishedRow:
    name = run.get("name", "?")
    metric = run.get("metric")
    if metric not in METRICS:
        raise CapsimError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}", where=name)
    model = ModelSpec(name=name, **run["model"])
    # the step is timed on a proxy whose layers/pp is the LM-head stage's block count (see the YAML)
    timed = replace(model, layers=int(run["pipeline_layers"])) if run.get("pipeline_layers") else model
    gpus, batch = int(run["gpus"]), int(run["global_batch"])
    pred = predict_training(run["device"], timed, gpus, batch, **run.get("layout", {}))
    if metric == "tokens_per_s_per_gpu":
        value = pred.tokens_per_s_per_gpu
    else:
        tflops = batch * flops_per_seq(model, run.get("flops", "6n_attn")) / pred.step_time_s / gpus / 1e12
        value = tflops if metric == "tflops_per_gpu" else tflops / load_profile(run["device"]).peak("bf16")
    return PublishedRow(name, run["device"], metric, float(run["value"]), value,
                        str(run.get("confidence", "")), bool(run.get("in_summary", True)))


def validate_published(table: str | Path | None = None) -> list[PublishedRow]:
    path = Path(table) if table else default_table()
    if not path.is_file():
        raise CapsimError("published-runs table not found", source=str(path))
    runs = (yaml.safe_load(path.read_text()) or {}).get("runs") or []
    return [predict_run(r) for r in runs]


def published_summary(rows: list[PublishedRow]) -> dict:
    """Median and worst |error| over the rows kept in the summary, and the median signed error (bias)."""
    kept = [r for r in rows if r.in_summary]
    errs = [abs(r.error) for r in kept]
    return {"summary_rows": len(kept), "median_abs_error": statistics.median(errs), "worst_abs_error": max(errs),
            "median_error": statistics.median(r.error for r in kept)}
