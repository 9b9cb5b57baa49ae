"""Fields every published row shares, training or serving: the metric it is compared in (under the names
tables and benchmark tools give it) and its whole-number counts.

A row's `metric` resolves to (kind, canonical metric, scale): training or serving, the metric the model
predicts, and the factor from its unit to the row's (`_ms` times are the `_s` ones x 1000). Errors are
signed so that positive means the model is optimistic: a throughput over-predicted, or a time
under-predicted (`signed_error`)."""

from __future__ import annotations

import math
import re

from simulator.errors import CapsimError

TRAINING_METRICS = ("tokens_per_s_per_gpu", "tokens_per_s", "sequences_per_s", "tflops_per_gpu", "mfu",
                    "step_time_s")
SERVING_METRICS = ("output_tokens_per_s_per_gpu", "output_tokens_per_s", "total_tokens_per_s",
                   "total_tokens_per_s_per_gpu", "requests_per_s", "ttft_s", "tpot_s", "request_latency_s")
TIME_METRICS = frozenset({"step_time_s", "ttft_s", "tpot_s", "request_latency_s"})
# Whole-deployment throughputs: a serving row on several replicas publishes their sum.
SYSTEM_METRICS = frozenset({"output_tokens_per_s", "total_tokens_per_s", "requests_per_s"})
# Other names for the same quantities: per chip / per device (TPU tables), samples for sequences, and
# vLLM / SGLang bench_serving's result keys (ITL is TPOT's per-token form; E2EL the request latency).
ALIASES = {
    "tokens_per_s_per_device": "tokens_per_s_per_gpu", "tokens_per_s_per_chip": "tokens_per_s_per_gpu",
    "tflops_per_device": "tflops_per_gpu", "tflops_per_chip": "tflops_per_gpu",
    "samples_per_s": "sequences_per_s",
    "output_throughput": "output_tokens_per_s", "total_token_throughput": "total_tokens_per_s",
    "request_throughput": "requests_per_s", "itl_s": "tpot_s", "e2el_s": "request_latency_s",
    "e2e_latency_s": "request_latency_s", "s_per_step": "step_time_s", "time_per_step_s": "step_time_s",
    "time_to_first_tokens_s": "ttft_s", "time_per_output_tokens_s": "tpot_s", "inter_tokens_latency_s": "tpot_s",
    "s_per_tokens": "tpot_s", "s_per_output_tokens": "tpot_s",
    # trtllm-bench's and vLLM bench_serving's printed names ("Total Output Throughput (tokens/sec)",
    # "Per GPU Output Throughput (tokens/sec/gpu)", "Request throughput (req/s)")
    "total_output_tokens_per_s": "output_tokens_per_s", "request_per_s": "requests_per_s",
    "per_gpu_output_tokens_per_s_per_gpu": "output_tokens_per_s_per_gpu",
}
# TP, PP and precision under the names training rows (Megatron / NeMo arguments) and serving rows
# (vLLM's --tensor-parallel-size, trtllm-bench's --tp) give them; each kind of row adds its own.
PARALLEL_NAMES = {"tensor_model_parallel_size": "tp", "tensor_parallel_size": "tp", "tensor_parallel": "tp",
                  "tp_size": "tp", "pipeline_model_parallel_size": "pp", "pipeline_parallel_size": "pp",
                  "pipeline_parallel": "pp", "pp_size": "pp", "precision": "dtype"}
# A mean or median over requests is what the model's single figure stands for; tails (p90, p99) are not.
AVERAGE_PREFIXES = ("mean_", "median_", "average_", "avg_")
# Words of the spellings tables print ("Tokens / sec / GPU", "Model TFLOP/s/GPU", "MFU %", "iteration time"),
# as the canonical names spell them; None drops the word.
WORDS = {"sec": "s", "second": "s", "seconds": "s", "tflop": "tflops", "device": "gpu", "chip": "gpu",
         "tok": "tokens", "token": "tokens", "sample": "samples", "iteration": "step", "iter": "step",
         "req": "request", "pct": "percent", "model": None, "throughput": None}


def resolve_metric(metric) -> tuple[str, str, float] | None:
    """(kind, canonical metric, scale) of a row's metric, or None when no model metric matches it."""
    if not isinstance(metric, str):
        return None
    name, scale = _spelled(metric), 1.0
    if name == "mfu_percent":
        return "training", "mfu", 100.0
    for prefix in AVERAGE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith("_ms"):
        name, scale = name[:-3] + "_s", 1000.0
    elif name.startswith("ms_per_"):  # "ms/step"
        name, scale = "s_per_" + name[len("ms_per_"):], 1000.0
    name = ALIASES.get(name, name)
    if scale != 1.0 and name not in TIME_METRICS:
        return None
    for kind, known in (("training", TRAINING_METRICS), ("serving", SERVING_METRICS)):
        if name in known:
            return kind, name, scale
    return None


def _spelled(metric: str) -> str:
    """A metric as the canonical names spell it: lower case, words joined by underscores, "/" read as
    "per", tables' words mapped (WORDS); TFLOP/s is tflops, a step time without its unit is in seconds."""
    text = metric.strip().lower().replace("/", " per ").replace("%", " percent ")
    text = re.sub(r"\[.*?\]", " ", text)  # "time-to-first-token [TTFT]": the abbreviation repeats the words
    words = [w for w in re.split(r"[\s_()-]+", text) if w]  # "TTFT (ms)": the unit is a word
    if "_".join(words) in ALIASES:  # a tool's own key ("output_throughput") before any word is read
        return "_".join(words)
    mapped = [w for w in (WORDS.get(w, w) for w in words) if w]
    # "Output token throughput (tok/s)": a word its unit repeats counts once
    name = "_".join(w for i, w in enumerate(mapped) if i == 0 or w != mapped[i - 1])
    name = name.replace("tflops_per_s", "tflops")
    return "step_time_s" if name in ("step_time", "time_per_step") else name


def name_spellings(key: str) -> list[str]:
    """How tables spell a software stack or engine, most specific first: "NeMo 2.0", "Megatron_LM v0.9",
    "torchtitan (FSDP2)" give the name with its versions and parenthesised remarks dropped, words joined by
    hyphens (nemo, megatron-lm, torchtitan), then each of its words alone (pytorch-fsdp2: pytorch, fsdp2)."""
    words = [w for w in re.split(r"[\s_/-]+", re.sub(r"\(.*?\)", " ", key.strip().lower()))
             if w and not re.fullmatch(r"[vr]?\d+(\.\d+)*[a-z]?", w)]
    return ["-".join(words), *words]


def expected(kind: str) -> str:
    """The metric names a row of this kind may give, for an error message."""
    known = TRAINING_METRICS if kind == "training" else SERVING_METRICS
    return ", ".join(known) + " (also their aliases and, for times, _ms)"


def signed_error(published: float, predicted: float, metric: str) -> float:
    """Relative to published, positive = optimistic: throughput over-predicted or a time under-predicted."""
    resolved = resolve_metric(metric)
    if resolved is not None and resolved[1] in TIME_METRICS:
        return (published - predicted) / published
    return (predicted - published) / published


def speed_ratio(published: float, predicted: float, metric: str) -> float:
    """Predicted speed over published speed (times inverted): > 1 = optimistic."""
    resolved = resolve_metric(metric)
    if resolved is not None and resolved[1] in TIME_METRICS:
        return published / predicted
    return predicted / published


def published_value(value, metric) -> tuple[float, str | None]:
    """(the published figure in the row's metric, a note when it was read as a percentage) from a number
    or the way tables print one ("1,633", "46.2%"). An MFU is a fraction of peak: "46.2%" or a bare 46.2
    under metric `mfu` is 0.462 (no MFU exceeds 1), while under "MFU %" it stays 46.2. CapsimError names
    the key otherwise."""
    text = value.strip().replace(",", "").replace("_", "") if isinstance(value, str) else value
    percent = isinstance(text, str) and text.endswith("%")
    try:
        number = float(text[:-1] if percent else text) if not isinstance(text, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise CapsimError(f"expected a positive published number, got {value!r}", where="value")
    resolved = resolve_metric(metric)
    is_mfu = resolved is not None and resolved[1] == "mfu"
    if percent and not is_mfu:
        raise CapsimError(f"a percentage ({value!r}) is a published figure only for an MFU metric", where="value")
    if is_mfu and resolved[2] == 1.0 and (percent or number > 1.0):
        return number / 100.0, f"MFU {value} read as {number / 100.0:g} of peak"
    return number, None


def whole_number(value, where: str) -> int:
    """A positive integer from a row (1024, 1024.0 or "1024"); CapsimError naming the key otherwise."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not (number >= 1 and number.is_integer() and math.isfinite(number)):
        raise CapsimError(f"expected a positive whole number, got {value!r}", where=where)
    return int(number)
