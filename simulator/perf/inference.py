"""Serving a transformer: prefill (time to first token) and decode (time per output token).

Prefill is a forward pass over the prompt, priced like a training forward (perf/step.py). Decode
generates one token per sequence per step: its GEMMs have as many rows as sequences in the batch,
so they are bound by reading the weights, and `gemm_time`'s roofline prices that read at the HBM
bandwidth measured for such kernels (the profiles' decode-GEMV points). Attention reads each
sequence's KV cache. Kernel launch overheads are counted per kernel (no CUDA graphs), which makes
small-batch decode conservative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from simulator.errors import CapsimError
from simulator.perf.collectives import collective_time
from simulator.perf.kernels import BYTES, gemm_time, memory_time
from simulator.perf.layout import make_layout
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.step import ACT_BYTES, HIDDEN_ELTS_FWD, KERNELS_PER_LAYER_FWD, MLP_ELTS, layer_times

GIB = 2**30


@dataclass(frozen=True)
class InferencePrediction:
    device: str
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


def experts_touched(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts a decode step of `tokens` tokens reads, each token picking top_k of
    num_experts uniformly: E x (1 - (1 - k/E)^tokens)."""
    if num_experts == 1:
        return 1.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def kv_cache_bytes(m: ModelSpec, tp: int, batch: int, context: int, dtype: str = "bf16") -> float:
    """K and V of every layer for `batch` sequences of `context` tokens, per device (KV heads are split
    over TP, or replicated when there are fewer KV heads than TP ranks)."""
    kv_local = max(m.kv_heads / tp, 1.0)
    return 2.0 * m.layers * batch * context * kv_local * m.head_dim * BYTES.get(dtype, 2)


def decode_step_time(device: str, m: ModelSpec, tp: int, batch: int, context: float, dtype: str = "bf16") -> float:
    """One decode step: a token for each of `batch` sequences that hold `context` tokens each."""
    h, hd, f = m.hidden, m.head_dim, m.ffn
    qkv_n = (h + 2 * m.kv_heads * hd) / tp
    up_n = f * (m.mlp_matrices - 1) / tp
    attn = gemm_time(device, batch, qkv_n, h, dtype) + gemm_time(device, batch, h, h / tp, dtype)
    experts = experts_touched(m.num_experts, m.top_k, batch)
    rows = batch * m.top_k / experts  # tokens per touched expert
    mlp = experts * (gemm_time(device, rows, up_n, h, dtype) + gemm_time(device, rows, h, f / tp, dtype))
    kv = memory_time(device, kv_cache_bytes(m, tp, batch, context, dtype) / m.layers)
    elementwise = memory_time(device, ACT_BYTES * batch * (HIDDEN_ELTS_FWD * h + MLP_ELTS[m.mlp][0] * f / tp),
                              KERNELS_PER_LAYER_FWD)
    tp_comm = 2 * collective_time(device, "all_reduce", batch * h * ACT_BYTES, tp, per_domain=tp) if tp > 1 else 0.0
    head = gemm_time(device, batch, m.vocab / tp, h, dtype)
    return m.layers * (attn + mlp + kv + elementwise + tp_comm) + head


def prefill_time(device: str, m: ModelSpec, tp: int, batch: int, prompt_len: int, dtype: str = "bf16") -> float:
    """A forward pass over `batch` prompts, as in training, plus the logits of each prompt's last token."""
    prompt = replace(m, seq_len=prompt_len)
    lay = make_layout(prompt, tp, batch, tp=tp, micro_batch=batch, dtype=dtype, stack="kernels")
    lt = layer_times(device, prompt, lay)
    return m.layers * (lt.fwd_compute + lt.fwd_tp) + gemm_time(device, batch, m.vocab / tp, m.hidden, dtype)


def predict_inference(device: str, model: ModelSpec | dict, *, tp: int = 1, batch: int = 1, prompt_len: int,
                      output_len: int, dtype: str = "bf16") -> InferencePrediction:
    """Latency and throughput of serving `batch` requests of `prompt_len` + `output_len` tokens on one
    tensor-parallel replica of `tp` devices (static batching: the batch starts and ends together)."""
    from simulator.perf.api import _as_model

    m = _as_model(model)
    for name, value in (("--prompt-len", prompt_len), ("--output-len", output_len), ("--batch", batch)):
        if int(value) < 1:
            raise CapsimError(f"must be a positive integer, got {value!r}", where=name)
    prof = load_profile(device)
    ttft = prefill_time(device, m, tp, batch, prompt_len, dtype)
    tpot = decode_step_time(device, m, tp, batch, prompt_len + output_len / 2, dtype)  # KV time is linear in context
    latency = ttft + output_len * tpot
    weights = m.total_params() * BYTES.get(dtype, 2) / tp
    kv = kv_cache_bytes(m, tp, batch, prompt_len + output_len, dtype)
    per_device = (weights + kv) / GIB
    return InferencePrediction(
        device=device, tp=tp, batch=batch, prompt_len=prompt_len, output_len=output_len, ttft_s=ttft,
        tpot_s=tpot, request_latency_s=latency, output_tokens_per_s=batch * output_len / latency,
        output_tokens_per_s_per_gpu=batch * output_len / latency / tp, weights_gib=weights / GIB,
        kv_cache_gib=kv / GIB, memory_per_device_gib=per_device, fits=per_device <= prof.memory_gib)
