"""Serving a transformer: prefill (time to first token) and decode (time per output token).

Prefill is a forward pass over the prompt, priced like a training forward (perf/step.py). Decode
generates one token per sequence per step (perf/decode.py): its GEMMs have as many rows as sequences
in the batch, so they are bound by reading the weights, and attention reads each sequence's KV cache,
once per KV head or once per query head depending on the serving stack's kernel. The serving stack
(perf/serving_stacks.py) also sets the kernel gaps (CUDA graphs or eager launches) and the host time
per engine iteration. FP8 weights (dtype fp8) halve the bytes decode reads, NVFP4 weights (dtype fp4:
0.5 B per weight and one E4M3 scale per 16, kernels.BYTES) read 0.5625 B each and run their GEMMs at the
FP4 peak where the device has one (Blackwell), else at its FP8 or 16-bit peak (profile.PEAK_CHAIN); an
FP8 KV cache (kv_dtype fp8) halves the KV bytes read and stored; the KV cache is never FP4. A
sliding-window layer (ModelSpec.sliding_window) stores and reads at most its window of tokens; its
prefill attention is a training forward's band (perf/kernels.py attention_time).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from simulator.errors import CapsimError
from simulator.perf.decode import (
    decode_kv_read_bytes,
    decode_step,
    experts_touched,
    kv_cache_bytes,
    kv_dtype_of,
)
from simulator.perf.kernels import BYTES, gemm_time
from simulator.perf.layout import make_layout
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.serving_stacks import ServingStack, get_stack
from simulator.perf.step import layer_times

__all__ = ["InferencePrediction", "decode_kv_read_bytes", "decode_step_time", "experts_touched", "kv_cache_bytes",
           "predict_inference", "prefill_time", "steady_output_tokens_per_s", "weight_bytes"]
# Tokens one prefill iteration of a continuous-batching engine processes (prompts batched together up
# to this budget): vLLM's default max_num_batched_tokens for chunked prefill and trtllm-bench's lower
# bound on max_num_tokens are 2048-8192; 8192 assumed.
PREFILL_TOKEN_BUDGET = 8192

GIB = 2**30


@dataclass(frozen=True)
class InferencePrediction:
    device: str
    stack: str
    dtype: str
    kv_dtype: str
    tp: int
    batch: int
    prompt_len: int
    output_len: int
    ttft_s: float  # prefill of the whole batch: the first token of every sequence
    tpot_s: float  # one decode step (a token for every sequence), averaged over the output
    request_latency_s: float
    output_tokens_per_s: float  # the replica's (tp devices) generated tokens per second
    output_tokens_per_s_per_gpu: float
    weights_gib: float
    kv_cache_gib: float
    memory_per_device_gib: float
    fits: bool

    def as_dict(self) -> dict:
        return asdict(self)


def weight_bytes(m: ModelSpec, tp: int, dtype: str = "bf16") -> float:
    """Weights held per device: every layer (all experts) and the vocab x hidden matrices (two when
    the output head is not tied to the input embedding), at the weights' dtype."""
    return m.total_params() * BYTES.get(dtype, 2) / tp


def decode_step_time(device: str, m: ModelSpec, tp: int, batch: float, context: float, dtype: str = "bf16",
                     kv_dtype: str | None = None, stack: str | ServingStack | None = None) -> float:
    """One decode step: a token for each of `batch` sequences that hold `context` tokens each."""
    return decode_step(device, m, tp, batch, context, dtype, kv_dtype, stack).total_s


def prefill_time(device: str, m: ModelSpec, tp: int, batch: int, prompt_len: int, dtype: str = "bf16",
                 stack: str | ServingStack | None = None) -> float:
    """A forward pass over `batch` prompts, as in training, plus the logits of each prompt's last token
    and the stack's per-iteration host time (or its eager op issue time, when that is longer)."""
    st = get_stack(stack)
    prompt = replace(m, seq_len=prompt_len)
    lay = make_layout(prompt, tp, batch, tp=tp, micro_batch=batch, dtype=dtype, stack="kernels")
    lt = layer_times(device, prompt, lay)
    gpu = m.layers * (lt.fwd_compute + lt.fwd_tp) + gemm_time(device, batch, m.vocab / tp, m.hidden, dtype)
    host = m.layers * st.host_s_per_layer
    return max(gpu, host) + st.step_overhead_s


def steady_output_tokens_per_s(device: str, m: ModelSpec, tp: int, batch: int, prompt_len: int, output_len: int,
                               dtype: str = "bf16", kv_dtype: str | None = None,
                               stack: str | ServingStack | None = None, requests: int | None = None) -> float:
    """Output tokens per second of a replica that keeps `batch` requests in flight (continuous batching
    at a steady state, as in max-throughput benchmarks that queue every request at once).

    Each decode step serves `batch` sequences at the average context prompt + output/2; for every
    output_len steps, `batch` new prompts are prefilled, batched together up to PREFILL_TOKEN_BUDGET
    tokens (`_wave_time`).

    `requests` (a finite run of identical requests, as trtllm-bench's tables: exactly ISL/OSL tokens
    each, all queued at once): the engine admits `batch` of them, and since they all generate the same
    number of tokens they finish together and the next `batch` take their place, so the run is
    requests // batch full waves and one last wave of the remainder, which decodes just as many steps
    at a smaller batch. Without it (or with a multiple of batch) the run is the steady state."""
    if requests is None:
        return batch * output_len / _wave_time(device, m, tp, batch, prompt_len, output_len, dtype, kv_dtype, stack)
    full, rest = divmod(requests, batch)
    total = full * _wave_time(device, m, tp, batch, prompt_len, output_len, dtype, kv_dtype, stack)
    if rest:
        total += _wave_time(device, m, tp, rest, prompt_len, output_len, dtype, kv_dtype, stack)
    return requests * output_len / total


def _wave_time(device: str, m: ModelSpec, tp: int, batch: int, prompt_len: int, output_len: int, dtype: str,
               kv_dtype: str | None, stack) -> float:
    """Seconds for `batch` requests to go through the replica together: their prompts prefilled in groups
    of up to PREFILL_TOKEN_BUDGET tokens, then output_len decode steps at the average context."""
    step = decode_step_time(device, m, tp, batch, prompt_len + output_len / 2, dtype, kv_dtype, stack)
    group = max(1, min(batch, math.ceil(PREFILL_TOKEN_BUDGET / prompt_len)))
    per_prompt = prefill_time(device, m, tp, group, prompt_len, dtype, stack) / group
    return output_len * step + batch * per_prompt


def steady_times(device: str, m: ModelSpec, tp: int, batch: int, prompt_len: int, output_len: int,
                 dtype: str = "bf16", kv_dtype: str | None = None,
                 stack: str | ServingStack | None = None) -> tuple[float, float]:
    """(TTFT, request latency) of one request in a replica kept at `batch` requests in flight: at a steady
    state requests finish at different times (lengths vary; a run of strictly identical requests would
    instead move in waves, `_wave_time`), so a request arrives alone, its prompt is prefilled, riding
    along with the others' decode steps, and it waits about one decode step of the other batch - 1 for its
    first token (none when it is alone); then it decodes output_len steps at the batch's average context. Checked against vLLM's FP8 KV-cache post,
    Table 4 (median TTFT of ~20K-token prompts, lengths +-15%, at concurrency 8): 9-11% under the published
    figure, where the wave form (eight prompts prefilled in turn, 3.0 s on average) is 3.9x it."""
    context = prompt_len + output_len / 2
    step = decode_step_time(device, m, tp, batch, context, dtype, kv_dtype, stack)
    others = decode_step_time(device, m, tp, batch - 1, context, dtype, kv_dtype, stack) if batch > 1 else 0.0
    ttft = prefill_time(device, m, tp, 1, prompt_len, dtype, stack) + others
    return ttft, ttft + output_len * step


def predict_inference(device: str, model: ModelSpec | dict, *, tp: int = 1, batch: int = 1, prompt_len: int,
                      output_len: int, dtype: str = "bf16", kv_dtype: str | None = None,
                      stack: str | ServingStack | None = None) -> InferencePrediction:
    """Latency and throughput of serving `batch` requests of `prompt_len` + `output_len` tokens on one
    tensor-parallel replica of `tp` devices (static batching: the batch starts and ends together).

    dtype: the weights' (and GEMMs') type; kv_dtype: the KV cache's (default: dtype, fp8 under fp4);
    stack: a serving stack of perf/serving_stacks.py (default: recent vLLM)."""
    from simulator.perf.api import _as_model

    m = _as_model(model)
    for name, value in (("--prompt-len", prompt_len), ("--output-len", output_len), ("--batch", batch)):
        if int(value) < 1:
            raise CapsimError(f"must be a positive integer, got {value!r}", where=name)
    kv_dtype = kv_dtype_of(dtype, kv_dtype)  # default: dtype (fp8 with fp4 weights); fp4 refused
    for name, value in (("--dtype", dtype), ("--kv-dtype", kv_dtype)):
        if value not in BYTES:
            raise CapsimError(f"unknown dtype {value!r}; expected one of {', '.join(BYTES)}", where=name)
    st = get_stack(stack)
    prof = load_profile(device)
    ttft = prefill_time(device, m, tp, batch, prompt_len, dtype, st)
    # KV time is linear in context: the step at the average context is the average step (with a sliding
    # window it is only where the window lies outside prompt..prompt+output: approximate in between)
    tpot = decode_step_time(device, m, tp, batch, prompt_len + output_len / 2, dtype, kv_dtype, st)
    latency = ttft + output_len * tpot
    weights = weight_bytes(m, tp, dtype)
    kv = kv_cache_bytes(m, tp, batch, prompt_len + output_len, kv_dtype)
    per_device = (weights + kv) / GIB
    return InferencePrediction(
        device=device, stack=st.name, dtype=dtype, kv_dtype=kv_dtype, tp=tp, batch=batch, prompt_len=prompt_len,
        output_len=output_len, ttft_s=ttft, tpot_s=tpot, request_latency_s=latency, output_tokens_per_s=batch * output_len / latency,
        output_tokens_per_s_per_gpu=batch * output_len / latency / tp, weights_gib=weights / GIB,
        kv_cache_gib=kv / GIB, memory_per_device_gib=per_device, fits=per_device <= prof.memory_gib)
