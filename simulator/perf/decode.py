"""One decode step of a tensor-parallel replica, by part, on a given serving stack.

A decode step generates one token for each of `batch` sequences. Its GEMMs have `batch` rows, so at
small batch they are bound by reading the weights (gemm_time's roofline prices the read at the HBM
bandwidth the profiles measured for decode GEMVs; FP8 weights are read as 1 byte, NVFP4 (fp4) weights as
0.5625: kernels.BYTES). Attention reads
every sequence's whole KV cache (a sliding-window layer's holds only its last `sliding_window` tokens):
once per KV head with a GQA-aware kernel, once per query head (heads / kv_heads times the bytes) with
one that is not (serving_stacks.py). Kernel gaps and host
overheads come from the stack: with CUDA graphs a step pays a small gap per kernel and the stack's
per-iteration scheduler time; without them the host issues every op and the step lasts at least as
long as that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simulator.errors import CapsimError
from simulator.perf.collectives import collective_time
from simulator.perf.kernels import (
    BYTES,
    KERNEL_OVERHEAD_S,
    gemm_curve,
    gemm_time,
    memory_time,
    sustained_fraction,
)
from simulator.perf.model import ModelSpec
from simulator.perf.moe import grouped_gemm_time
from simulator.perf.profile import load_profile
from simulator.perf.serving_stacks import ServingStack, get_stack
from simulator.perf.step import ACT_BYTES, HIDDEN_ELTS_FWD, HIGH_PRECISION, KERNELS_PER_LAYER_FWD, MLP_ELTS


def kv_dtype_of(dtype: str, kv_dtype: str | None = None) -> str:
    """The KV cache's dtype: kv_dtype, else the weights' dtype, except that NVFP4 (fp4) weights default
    to an FP8 cache, as NVIDIA's NVFP4 checkpoints ship (ModelOpt hf_quant_config: kv_cache_quant_algo
    FP8). An FP4 KV cache is not modelled (its attention kernels read it back to FP8 / BF16): refused."""
    kv = kv_dtype or ("fp8" if dtype == "fp4" else dtype)
    if kv == "fp4":
        raise CapsimError("an FP4 KV cache is not modelled; the KV cache is bf16, fp16 or fp8", where="--kv-dtype")
    return kv


def experts_touched(num_experts: int, top_k: int, tokens: float) -> float:
    """Expected distinct experts a decode step of `tokens` tokens reads, each token picking top_k of
    num_experts uniformly: E x (1 - (1 - k/E)^tokens)."""
    if num_experts == 1:
        return 1.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def kv_cache_bytes(m: ModelSpec, tp: int, batch: float, context: float, dtype: str = "bf16") -> float:
    """K and V of every layer for `batch` sequences of `context` tokens, per device (KV heads are split
    over TP, or replicated when there are fewer KV heads than TP ranks). `dtype` is the KV cache's.

    MLA caches one latent per token and layer, kv_lora_rank + qk_rope_head_dim elements shared by all
    heads (DeepSeek-V2 sec. 2.1.2-2.1.3): every TP rank holds all of it, as vLLM and SGLang do under
    tensor parallelism (without data-parallel attention).

    A sliding-window layer holds the last min(sliding_window, context) tokens (vLLM's and SGLang's
    sliding-window KV managers free the blocks that fall out of the window): model.kv_tokens_all_layers."""
    kv_dtype_of(dtype, dtype)  # an fp4 cache is refused
    tokens = m.kv_tokens_all_layers(context)  # summed over layers: layers * context without a window
    if m.is_mla:
        return float(batch * tokens * m.kv_latent_width() * BYTES.get(dtype, 2))
    return 2.0 * batch * tokens * max(m.kv_heads / tp, 1.0) * m.head_dim * BYTES.get(dtype, 2)


def decode_kv_read_bytes(m: ModelSpec, tp: int, batch: float, context: float, kv_dtype: str = "bf16",
                         gqa_aware: bool = True) -> float:
    """KV-cache bytes one decode step reads per device, all layers.

    GQA-aware kernels load each local KV head once for the heads/kv_heads query heads that share it;
    a kernel that is not re-reads the KV head for every local query head. MLA's latent is read once
    whatever the stack: its decode kernels (FlashMLA, vLLM's and SGLang's MLA backends) score every local
    head against the one latent in the same pass (absorbed attention, an MQA over the latent)."""
    stored = kv_cache_bytes(m, tp, batch, context, kv_dtype)
    if gqa_aware or m.is_mla:
        return stored
    kv_local = max(m.kv_heads / tp, 1.0)
    return stored * (m.heads / tp) / kv_local


def decode_proj_shapes(m: ModelSpec, batch: float, tp: int) -> list[tuple]:
    """(m, n, k, batch) of the attention projection GEMMs of one decode step on one of tp ranks.

    MHA/GQA: those of a forward pass (model.attn_proj_shapes). MLA with absorbed weights (DeepSeek-V2
    sec. 2.1.2; vLLM's MLA backend, SGLang): the down projections, whole on every rank (vLLM's fused
    q_a / kv_a projection is replicated), the query up projection, then per local head the key half of
    kv_b folded into the query (head_dim -> kv_lora_rank) and, after attention, its value half
    (kv_lora_rank -> v_head_dim) as batched GEMMs, and the output projection. The cached latents are
    never up-projected."""
    if not m.is_mla:
        return [(*s, 1) for s in m.attn_proj_shapes(batch, tp)]
    *down_and_q_up, _kv_up, out = m.attn_proj_shapes(batch, tp)
    heads = m.heads / tp
    absorbed = [(batch, m.kv_lora_rank, m.head_dim, heads), (batch, m.v_dim, m.kv_lora_rank, heads)]
    return [(*s, 1) for s in down_and_q_up] + absorbed + [(*out, 1)]


def decode_attention_time(device: str, m: ModelSpec, tp: int, batch: float, context: float, kv_dtype: str,
                          gqa_aware: bool = True) -> float:
    """Decode attention of one layer on one device: reading its KV cache at the measured bandwidth. MLA's
    absorbed attention also does heads/tp x decode_attention_flops a token, ~16x what MHA would over the
    same bytes, which FlashMLA runs compute-bound at large head counts (FlashMLA README: 660 TFLOP/s on
    H800 in the compute-bound configuration): the slower of the two, its matmuls at the GEMM efficiency of
    their size and, with an FP8 cache, at the 16-bit rate."""
    if m.is_windowed:  # the mean of the full and the windowed layers, each reading its own span
        full, win = m.full_layers(), m.windowed_layers()
        span = m.kv_span("windowed", context)
        t_full = _layer_attention_time(device, m, tp, batch, context, kv_dtype, gqa_aware) if full else 0.0
        t_win = _layer_attention_time(device, m, tp, batch, span, kv_dtype, gqa_aware)
        return (full * t_full + win * t_win) / m.layers
    return _layer_attention_time(device, m, tp, batch, context, kv_dtype, gqa_aware)


def _layer_attention_time(device: str, m: ModelSpec, tp: int, batch: float, span: float, kv_dtype: str,
                          gqa_aware: bool) -> float:
    """decode_attention_time of a layer whose queries attend to `span` cached tokens (the whole context
    on a full layer, at most the window on a windowed one)."""
    every_layer = replace(m, sliding_window=None, global_every=None) if m.is_windowed else m  # all at this span
    kv_bytes = decode_kv_read_bytes(every_layer, tp, batch, span, kv_dtype, gqa_aware) / m.layers
    memory = memory_time(device, kv_bytes)
    if not m.is_mla:
        return memory
    dt = HIGH_PRECISION.get(kv_dtype, kv_dtype)
    flops = batch * m.decode_attention_flops(span) / tp
    peak = load_profile(device).peak(dt) * gemm_curve(device, dt)(flops) * sustained_fraction(device)
    return max(memory, flops / (peak * 1e12) + KERNEL_OVERHEAD_S)


def decode_mlp_time(device: str, m: ModelSpec, tp: int, batch: float, dtype: str) -> tuple[float, int]:
    """(seconds, kernels) of every layer's MLP in one decode step of `batch` tokens, on one of tp ranks.

    Dense layers: the ffn-wide up (gate and up fused) and down GEMMs. MoE layers, as serving engines run
    them (vLLM's and SGLang's fused_moe, TensorRT-LLM's MoE plugin): the router GEMM, then the routed
    experts the batch touches (experts_touched) as one grouped GEMM for the up projections and one for the
    down projections, each expert expert_ffn wide (moe_ffn) and holding batch * top_k / touched tokens, so
    the step reads the touched experts' weights once, each expert's GEMM at the efficiency of its own size
    (moe.grouped_gemm_time, as training prices them); the always-on shared experts as one dense MLP of
    shared_experts * expert_ffn. Experts are split over the TP ranks like a dense MLP."""
    h = m.hidden
    gated = m.mlp_matrices - 1  # SwiGLU's gate and up projections in one GEMM

    def dense(ffn: float, rows: float) -> float:
        return gemm_time(device, rows, gated * ffn / tp, h, dtype) + gemm_time(device, rows, h, ffn / tp, dtype)

    seconds = m.n_dense_layers * dense(m.ffn, batch)
    kernels = 2 * m.n_dense_layers
    if m.is_moe:
        touched = experts_touched(m.num_experts, m.top_k, batch)
        rows, f = batch * m.top_k / touched, m.expert_ffn / tp
        routed = (grouped_gemm_time(device, touched, rows, gated * f, h, dtype)
                  + grouped_gemm_time(device, touched, rows, h, f, dtype))
        moe = gemm_time(device, batch, m.num_experts, h, dtype) + routed
        if m.shared_experts:
            moe += dense(m.shared_experts * m.expert_ffn, batch)
        seconds += m.n_moe_layers * moe
        kernels += m.n_moe_layers * (3 + (2 if m.shared_experts else 0))
    return seconds, kernels


@dataclass(frozen=True)
class DecodeStep:
    """Seconds of one decode step, by part (the GPU parts include their kernel gaps)."""

    weights_s: float      # projection and MLP GEMMs (weight-read bound at small batch)
    kv_s: float           # attention: reading the KV cache
    elementwise_s: float  # norms, residual adds, activation, rotary
    tp_comm_s: float      # two all-reduces per layer
    head_s: float         # LM head GEMM
    gpu_s: float          # the above, after replacing the eager launch charge with the stack's gap
    host_s: float         # host time to issue the step's ops (eager stacks only)
    overhead_s: float     # the stack's per-iteration scheduler / input-preparation time
    kernels: int

    @property
    def total_s(self) -> float:
        return max(self.gpu_s, self.host_s) + self.overhead_s


def decode_step(device: str, m: ModelSpec, tp: int, batch: float, context: float, dtype: str = "bf16",
                kv_dtype: str | None = None, stack: str | ServingStack | None = None) -> DecodeStep:
    """One decode step: a token for each of `batch` sequences that hold `context` tokens each."""
    st = get_stack(stack)
    kv_dtype = kv_dtype_of(dtype, kv_dtype)
    h, f = m.hidden, m.ffn
    proj = decode_proj_shapes(m, batch, tp)
    attn_proj = sum(gemm_time(device, a, b, c, dtype, n) for a, b, c, n in proj)
    mlp, mlp_kernels = decode_mlp_time(device, m, tp, batch, dtype)
    weights = m.layers * attn_proj + mlp
    kv = m.layers * decode_attention_time(device, m, tp, batch, context, kv_dtype, st.gqa_aware_decode)
    ew_bytes = ACT_BYTES * batch * (HIDDEN_ELTS_FWD * h + MLP_ELTS[m.mlp][0] * f / tp)
    elementwise = m.layers * memory_time(device, ew_bytes, KERNELS_PER_LAYER_FWD)
    tp_comm = 0.0
    if tp > 1:
        tp_comm = m.layers * 2 * collective_time(device, "all_reduce", batch * h * ACT_BYTES, tp, per_domain=tp)
    head = gemm_time(device, batch, m.vocab / tp, h, dtype)
    per_layer = len(proj) + 1 + KERNELS_PER_LAYER_FWD + (2 if tp > 1 else 0)
    kernels = m.layers * per_layer + mlp_kernels + 1
    # gemm_time / memory_time charge KERNEL_OVERHEAD_S per kernel; swap it for the stack's gap (collectives
    # carry their own latency in their alpha and are left alone)
    comm_kernels = m.layers * 2 if tp > 1 else 0
    gpu = weights + kv + elementwise + tp_comm + head + (kernels - comm_kernels) * (st.kernel_gap_s - KERNEL_OVERHEAD_S)
    host = m.layers * st.host_s_per_layer
    return DecodeStep(weights_s=weights, kv_s=kv, elementwise_s=elementwise, tp_comm_s=tp_comm, head_s=head,
                      gpu_s=gpu, host_s=host, overhead_s=st.step_overhead_s, kernels=kernels)
