"""Predicted vs published serving measurements (workloads/validation/published_serving.yaml).

Each row names a serving stack, a device, a model (a shape or a zoo name), a layout (TP, weight and
KV-cache dtypes), the serving shape (batch, prompt and output lengths) and one published metric.

Two ways a measurement was taken, set by `serving.mode`:

- static (default): the batch starts and ends together, as in TensorRT-LLM's gptSessionBenchmark
  (v0.5-v0.9 performance tables) or a batch-1 latency run: `predict_inference` as is.
- steady: a max-throughput table of a continuous-batching engine fed every request at once
  (trtllm-bench, vLLM benchmark_throughput). It is priced as a steady state in which the decode batch
  holds `batch` sequences at the average context prompt + output/2, and the prefill of the
  batch/output_len prompts that replace the finished requests each step is amortised over the output
  tokens (inference.steady_output_tokens_per_s). `batch` is then the concurrency the engine sustains:
  published, or assumed (the row says how under `assumed:`). Only throughput metrics and tpot_s are
  defined in this mode. `num_requests` (optional): the run's finite count of identical requests, as
  trtllm-bench's tables publish it per ISL/OSL; the run is then priced as the waves of `batch` requests
  it takes, the last one partly full (inference.steady_output_tokens_per_s).

Metrics (simulator/perf/row_fields.py): output, total (prompt + output) and request throughputs,
TTFT, TPOT (ITL) and request latency, in seconds or `_ms`. A row measured on several replicas gives
`gpus` (or `layout.dp`): the throughputs of the whole deployment are the replica's times gpus / tp;
per-GPU throughputs and latencies are the replica's. `batch` is one replica's.
"""

from __future__ import annotations

import math
import statistics
from functools import cache
from pathlib import Path

from simulator.errors import CapsimError
from simulator.perf.inference import (
    decode_step_time,
    predict_inference,
    steady_output_tokens_per_s,
    steady_times,
)
from simulator.perf.row_fields import (
    PARALLEL_NAMES,
    SERVING_METRICS,
    SYSTEM_METRICS,
    TIME_METRICS,
    expected,
    resolve_metric,
    signed_error,
    speed_ratio,
    whole_number,
)
from simulator.perf.serving_stacks import DEFAULT_STACK, resolve_stack

METRICS = SERVING_METRICS
MODES = ("static", "steady")
SERVING_KEYS = ("batch", "prompt_len", "output_len")
# The names published tables and other tools give the same three quantities.
SYNONYMS = {"batch": ("batch", "batch_size", "concurrency", "max_concurrency", "max_batch_size", "max_num_seqs"),
            "prompt_len": ("prompt_len", "input_len", "isl", "prompt_tokens", "input_tokens", "random_input_len"),
            "output_len": ("output_len", "osl", "output_tokens", "max_tokens", "random_output_len")}
REQUESTS_KEYS = ("num_requests", "num_prompts")
# A replica's layout under engines' launch flags (vLLM's --tensor-parallel-size, --kv-cache-dtype,
# --quantization; trtllm-bench's --tp).
LAYOUT_ALIASES = {**PARALLEL_NAMES, "kv_cache_dtype": "kv_dtype", "quantization": "dtype"}


def default_mode(serving: dict) -> str:
    """A row that gives no mode: steady when it counts concurrency (a continuous-batching benchmark:
    `concurrency`, `max_concurrency`, `max_num_seqs`) or the requests of a run (`num_requests`,
    `num_prompts`), static otherwise (one batch that starts and ends together)."""
    steady_keys = ("concurrency", "max_concurrency", "max_num_seqs", *REQUESTS_KEYS)
    return "steady" if any(serving.get(k) is not None for k in steady_keys) else "static"


def serving_shape(serving: dict, name: str) -> tuple[int, int, int]:
    """(batch, prompt_len, output_len) from a row's `serving:` mapping, under any of their usual names."""
    out = []
    for key in SERVING_KEYS:
        found = next((serving[k] for k in SYNONYMS[key] if serving.get(k) is not None), None)
        if found is None:
            raise CapsimError(f"serving is missing {key} (or {', '.join(SYNONYMS[key][1:])})", where=name)
        out.append(whole_number(found, f"{name}: serving.{key}"))
    return out[0], out[1], out[2]


def run_requests(serving: dict, name: str) -> int | None:
    """A steady row's finite request count (num_requests or num_prompts), or None for an endless stream."""
    found = next((serving[k] for k in REQUESTS_KEYS if serving.get(k) is not None), None)
    return None if found is None else whole_number(found, f"{name}: serving.num_requests")


def default_table() -> Path:
    return Path(__file__).resolve().parents[2] / "workloads" / "validation" / "published_serving.yaml"


def replicas(run: dict, layout: dict, tp: int, name: str) -> int:
    """Tensor-parallel replicas the row measured: gpus / tp (gpus or num_gpus), else layout.dp, else 1."""
    gpus = run.get("gpus", run.get("num_gpus"))
    if gpus is None:
        return whole_number(layout.get("dp", 1), f"{name}: layout.dp")
    gpus = whole_number(gpus, f"{name}: gpus")
    if gpus < tp or gpus % tp:
        raise CapsimError(f"gpus {gpus} is not a whole number of tp={tp} replicas", where=name)
    return gpus // tp


def row_stack(run: dict) -> str:
    """The serving stack profile a row's `stack` names (serving_stacks.resolve_stack); none: recent vLLM."""
    return resolve_stack(run["stack"])[0] if run.get("stack") else DEFAULT_STACK


def predict_serving_row(run: dict) -> float:
    """The predicted value of one row, in the row's metric and unit."""
    name = str(run.get("name", "?"))
    resolved = resolve_metric(run.get("metric"))
    if resolved is None or resolved[0] != "serving":
        raise CapsimError(f"metric must be one of {expected('serving')}, got {run.get('metric')!r}", where=name)
    _, metric, scale = resolved
    stack = row_stack(run)
    serving = run.get("serving") or {k: v for k, v in run.items() if any(k in names for names in SYNONYMS.values())}
    if not isinstance(serving, dict):
        raise CapsimError("serving must be a mapping of batch, prompt_len and output_len", where=name)
    batch, prompt, output = serving_shape(serving, name)
    mode = serving.get("mode") or default_mode(serving)
    if mode not in MODES:
        raise CapsimError(f"serving.mode must be one of {', '.join(MODES)}, got {mode!r}", where=name)
    device = run.get("device")
    if not device:
        raise CapsimError("no device", where=name)
    from simulator.perf.published import resolve_device, resolve_dtype, run_model

    device = resolve_device(device)
    layout = {} if run.get("layout") is None else run["layout"]
    if not isinstance(layout, dict):
        raise CapsimError("layout must be a mapping of tp, dtype, kv_dtype", where=name)
    layout = {**{LAYOUT_ALIASES[k]: v for k, v in layout.items() if k in LAYOUT_ALIASES}, **layout}  # own names win
    tp = whole_number(layout.get("tp", 1), f"{name}: layout.tp")
    if whole_number(layout.get("pp", 1), f"{name}: layout.pp") > 1:
        raise CapsimError("pipeline-parallel serving is not modelled (one tensor-parallel replica per row)", where=name)
    dtype = resolve_dtype(layout.get("dtype", "bf16"))[0]
    # default (and vLLM's `auto`): decode.kv_dtype_of (the weights' dtype; fp8 with fp4 weights)
    kv_dtype = None if layout.get("kv_dtype") == "auto" else resolve_dtype(layout.get("kv_dtype"))[0]
    copies = replicas(run, layout, tp, name)
    try:
        m = run_model(run)
    except CapsimError as exc:
        raise CapsimError(exc.detail, where=name) from None
    try:
        if mode == "steady":
            if metric == "tpot_s":
                return scale * decode_step_time(device, m, tp, batch, prompt + output / 2, dtype, kv_dtype, stack)
            if metric in ("ttft_s", "request_latency_s"):
                ttft, latency = steady_times(device, m, tp, batch, prompt, output, dtype, kv_dtype, stack)
                return scale * (ttft if metric == "ttft_s" else latency)
            requests = run_requests(serving, name)
            out_per_s = steady_output_tokens_per_s(device, m, tp, batch, prompt, output, dtype, kv_dtype, stack,
                                                   requests=requests)
        else:
            pred = predict_inference(device, m, tp=tp, batch=batch, prompt_len=prompt, output_len=output,
                                     dtype=dtype, kv_dtype=kv_dtype, stack=stack)
            if metric in TIME_METRICS:
                return scale * float(getattr(pred, metric))
            out_per_s = pred.output_tokens_per_s
    except CapsimError as exc:
        if exc.where == name:
            raise
        raise CapsimError(str(exc), where=name) from None
    return _throughput(metric, out_per_s, prompt, output, tp, copies)


def _throughput(metric: str, out_per_s: float, prompt: int, output: int, tp: int, copies: int) -> float:
    """A throughput metric from one replica's output tokens/s: prompt tokens count in the totals (each
    request's prompt is processed once), requests finish output_len tokens apart, and the deployment's
    figures add up its replicas."""
    per_replica = {"output_tokens_per_s": out_per_s, "total_tokens_per_s": out_per_s * (prompt + output) / output,
                   "requests_per_s": out_per_s / output}
    if metric.endswith("_per_gpu"):
        return per_replica[metric.removesuffix("_per_gpu")] / tp
    return per_replica[metric] * (copies if metric in SYSTEM_METRICS else 1)


def load_rows(path: str | Path | None = None) -> list[dict]:
    from simulator.perf.published import load_runs

    return load_runs(path or default_table())


def validate_serving(path: str | Path | None = None) -> list[tuple[str, str, str, float, float]]:
    """(name, device, metric, published, predicted) for every row of the table."""
    out = []
    for run in load_rows(path):
        predicted = predict_serving_row(run)
        if not math.isfinite(predicted):
            raise CapsimError(f"prediction is not finite: {predicted!r}", where=run.get("name"))
        out.append((run["name"], run["device"], run["metric"], float(run["value"]), predicted))
    return out


def serving_summary(rows: list[tuple[str, str, str, float, float]]) -> dict:
    """Median and worst |error| and the median signed error (positive = optimistic), relative to published."""
    errs = [signed_error(pub, pred, metric) for _, _, metric, pub, pred in rows]
    return {"rows": len(rows), "median_abs_error": statistics.median(abs(e) for e in errs),
            "worst_abs_error": max(abs(e) for e in errs), "median_signed_error": statistics.median(errs)}


@cache
def row_errors() -> tuple[dict, ...]:
    """Each row of the serving set with its error as a speed ratio minus one (predicted speed over
    measured: throughputs as they are, times inverted), for the error bands of new predictions
    (band.serving_band). Nothing is fitted on these rows, so every error is out of sample."""
    from simulator.perf.published import resolve_device, run_model

    path = default_table()
    if not path.is_file():
        return ()
    out = []
    for run in load_rows(path):
        predicted, published = predict_serving_row(run), float(run["value"])
        ratio = speed_ratio(published, predicted, run["metric"])
        out.append({"name": run["name"], "device": resolve_device(run["device"]),
                    "stack": row_stack(run),
                    "dtype": (run.get("layout") or {}).get("dtype", "bf16"),
                    "params_b": run_model(run).total_params() / 1e9, "speed_error": ratio - 1.0})
    return tuple(out)
