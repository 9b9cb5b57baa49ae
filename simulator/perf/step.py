"""Training step time of a transformer on one layout: per-layer kernel times (GEMMs, attention,
memory-bound ops), tensor/context/pipeline/data-parallel communication, the pipeline bubble and
the optimizer, combined the way Megatron-style 1F1B schedules run them."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.perf import moe
from simulator.perf.collectives import collective_time
from simulator.perf.kernels import attention_time, gemm_time, memory_time
from simulator.perf.layout import Layout, bubble_fraction, stage_layers
from simulator.perf.memory import sharded_params_per_device
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.stacks import Stack, load_stack

ACT_BYTES = 2
# Elements moved by the memory-bound ops of one layer, in units of the hidden activation (s*b*h) and
# the MLP activation (s*b*ffn). Forward (Megatron fused kernels): 2 layernorms (read+write, 2 each),
# 2 bias-dropout-residual adds (read 2, write 1, 1-byte mask = 3.5 each): 11. Backward: layernorm
# (read x, dy; write dx: 3 each) + dropout-add (2.5 each): 11.
HIDDEN_ELTS_FWD, HIDDEN_ELTS_BWD = 11.0, 11.0
# bias-GeLU reads and writes the F-wide activation (2), its backward reads 2, writes 1 (3);
# SwiGLU reads gate and up, writes 1 (3) and backward reads 3, writes 2 (5).
MLP_ELTS = {"gelu": (2.0, 3.0), "swiglu": (3.0, 5.0)}
KERNELS_PER_LAYER_FWD = 8  # norms, bias-dropout-adds, activation, softmax/dropout or flash: launch overheads
# FP8 (Transformer Engine recipes) runs only the transformer blocks' linear layers in FP8; dot-product
# attention stays in BF16 unless fp8_dpa is set (TE docs, off by default in NeMo 24.07), and so do the
# embedding and the LM head (Megatron-Core's output layer is not a TE layer). Every FP8 GEMM operand is
# cast first: read 2 B, write 1 B (plus a transposed 1 B copy for the weight-gradient GEMM on Hopper),
# and each cast also updates its tensor's amax (delayed scaling, TE docs): one more small kernel.
# NVFP4 (fp4; TE's NVFP4BlockScaling recipe as NeMo / Megatron-Bridge run it, bf16_with_nvfp4_mixed: every
# linear layer of the blocks in NVFP4, the same layers stay BF16 as under FP8) casts the same operands with
# the same accounting at 0.5625 B per element (kernels.BYTES): forward read 2 B, write 0.5625 B = 2.5625;
# backward read 2 B, write 0.5625 B and a 0.5625 B copy quantized along the other dimension for the
# weight-gradient GEMM (its 16-element blocks run along that GEMM's reduction dimension), plus one more
# read of 2 B of each weight-gradient operand (output gradient and activation), the 16-point random
# Hadamard transform pass that finds the transformed tensor's amax before the cast (arXiv 2509.25149
# sec. 4.2: RHT on the Wgrad inputs only): 2 + 0.5625 + 0.5625 + 2 = 5.125, with one more kernel per
# operand. Stochastic rounding of the gradients (sec. 4.3) happens inside the cast: no bytes.
HIGH_PRECISION = {"fp8": "bf16", "fp4": "bf16"}
FP8_CAST_BYTES_FWD, FP8_CAST_BYTES_BWD = 3.0, 4.0
FP4_CAST_BYTES_FWD, FP4_CAST_BYTES_BWD = 2.0 + 0.5625, 2.0 + 0.5625 + 0.5625 + 2.0
# dtype -> (bytes per element forward, backward; cast kernels per GEMM forward, backward)
CAST = {"fp8": (FP8_CAST_BYTES_FWD, FP8_CAST_BYTES_BWD, 1, 2),
        "fp4": (FP4_CAST_BYTES_FWD, FP4_CAST_BYTES_BWD, 1, 4)}


def cast_times(device: str, dtype: str, shapes, copies: float = 1) -> tuple[float, float]:
    """(forward, backward) seconds of casting the operands of the GEMMs `shapes` ((m, n, k) each,
    `copies` of each) to a low-precision dtype (CAST): the activation operand of each GEMM forward, each
    output gradient and activation again backward; (0, 0) for 16-bit dtypes."""
    if dtype not in CAST:
        return 0.0, 0.0
    fwd_b, bwd_b, fwd_k, bwd_k = CAST[dtype]
    act_in = sum(a * c for a, _, c in shapes) * copies
    grad_out = sum(a * b for a, b, _ in shapes) * copies
    return (memory_time(device, fwd_b * act_in, fwd_k * len(shapes)),
            memory_time(device, bwd_b * (grad_out + act_in), bwd_k * len(shapes)))


@dataclass(frozen=True)
class StepBreakdown:
    """Seconds per training step, by phase (exposed communication = not hidden behind compute)."""

    compute_s: float
    tp_comm_s: float
    cp_comm_s: float
    pp_comm_s: float
    dp_comm_s: float
    bubble_s: float
    optimizer_s: float
    # Data-parallel and pipeline traffic per step at full bandwidth, hidden or not: what crosses the
    # fabric between nodes when the job spans several (network/fabric.py).
    scale_out_comm_s: float = 0.0
    ep_comm_s: float = 0.0  # MoE token dispatch/combine all-to-alls over the EP group (moe.py), exposed

    @property
    def step_time_s(self) -> float:
        return (self.compute_s + self.tp_comm_s + self.cp_comm_s + self.pp_comm_s + self.dp_comm_s
                + self.bubble_s + self.optimizer_s + self.ep_comm_s)

    @property
    def exposed_comm_s(self) -> float:
        return self.tp_comm_s + self.cp_comm_s + self.pp_comm_s + self.dp_comm_s + self.ep_comm_s


@dataclass(frozen=True)
class LayerTimes:
    fwd_compute: float
    bwd_compute: float
    recompute: float
    fwd_tp: float
    bwd_tp: float
    recompute_tp: float
    cp: float
    ep: float = 0.0  # MoE all-to-alls (moe.py)
    # MoE layers: the attention block's share of fwd_compute / bwd_compute, all that an overlapped
    # dispatch or combine can hide under beside it (moe.overlapped_ep_exposure)
    attn_fwd: float = 0.0
    attn_bwd: float = 0.0


def layer_times(device: str, m: ModelSpec, lay: Layout) -> LayerTimes:
    """One transformer layer, one microbatch, on one device, under the layout's software stack: the
    kernels (kernel_times), at the stack's fitted efficiency, and never faster than the stack's host can
    launch them (its host time per layer; backward launches twice as many kernels)."""
    stack = load_stack(lay.stack)
    k = kernel_times(device, m, lay)
    host = stack.host_us_per_layer * 1e-6
    e = stack.efficiency
    moe_host = moe.expert_host_time(m, lay, stack.moe_host_us_per_expert)  # exposed, on top of the kernels
    return LayerTimes(fwd_compute=max(k.fwd_compute / e, host) + moe_host,
                      bwd_compute=max(k.bwd_compute / e, 2.0 * host) + 2.0 * moe_host,
                      recompute=max(k.recompute / e, host) + moe_host if k.recompute else 0.0, fwd_tp=k.fwd_tp,
                      bwd_tp=k.bwd_tp, recompute_tp=k.recompute_tp, cp=k.cp, ep=k.ep,
                      attn_fwd=k.attn_fwd / e, attn_bwd=k.attn_bwd / e)


def kernel_times(device: str, m: ModelSpec, lay: Layout) -> LayerTimes:
    """The kernels of one transformer layer, one microbatch, one device: GEMMs, attention (the stack's
    kernel for this device generation), memory-bound ops and FP8 / NVFP4 casts, and the TP/CP communication
    left exposed."""
    if m.num_experts > 1:  # MoE layers (and the dense layers mixed with them): simulator/perf/moe.py
        return moe.layer_times(device, m, lay, kernel_times)
    stack = load_stack(lay.stack)
    t, dt = lay.tp, lay.dtype
    s_loc = m.seq_len / lay.cp
    tok = lay.micro_batch * s_loc
    h, hd, f = m.hidden, m.attn_core_dim, m.ffn
    kv_loc = max(m.kv_heads / t, 1.0)
    heads_loc = m.heads / t
    # GEMMs: attention projections (model.attn_proj_shapes: QKV and output, or MLA's down, up and output
    # projections), MLP in/out (SwiGLU: gate and up fused into one 2F-wide GEMM)
    up_n = (f * (m.mlp_matrices - 1)) / t
    down_tok = tok / t if lay.sequence_parallel else tok  # MLA down projections: duplicated on the TP ranks
    shapes = m.attn_proj_shapes(tok, t, down_tok) + [(tok, up_n, h), (tok, h, f / t)]
    g_fwd = sum(gemm_time(device, a, b, c, dt) for a, b, c in shapes)
    # backward: data gradient (m,k)=(m,n)@(n,k) and weight gradient (k,n)=(k,m)@(m,n), per shape
    grads = [(gemm_time(device, a, c, b, dt), gemm_time(device, c, b, a, dt)) for a, b, c in shapes]
    g_bwd = sum(d + w for d, w in grads)
    adt = HIGH_PRECISION.get(dt, dt)
    # MLA's core runs QK^T at qk_head_dim (192) and PV at v_head_dim (128): priced at their mean width
    # (attn_core_dim, 160), which gives the exact FLOPs and Q/K/V/O bytes; its efficiency is cuDNN's
    # measured MLA-shape table (head_dim 160) where a profile has one, else the table nearest 160
    kernel = stack.attention_kernel(load_profile(device).arch) if lay.flash else "unfused"
    att_f = attention_time(device, lay.micro_batch, heads_loc, kv_loc, s_loc, m.seq_len, hd, adt, kernel)
    att_b = attention_time(device, lay.micro_batch, heads_loc, kv_loc, s_loc, m.seq_len, hd, adt, kernel,
                           backward=True)
    if m.is_windowed and m.sliding_window < m.seq_len and m.windowed_layers():
        # sliding-window layers score a band of at most w keys a query (kernels.attention_time); the layer
        # this returns is the mean of the model's full and windowed layers (the pipeline stages are taken
        # to hold them in the model's proportion)
        win_f = attention_time(device, lay.micro_batch, heads_loc, kv_loc, s_loc, m.seq_len, hd, adt, kernel,
                               window=m.sliding_window, tile=lay.attention_block)
        win_b = attention_time(device, lay.micro_batch, heads_loc, kv_loc, s_loc, m.seq_len, hd, adt, kernel,
                               backward=True, window=m.sliding_window, tile=lay.attention_block_bwd)
        share = m.windowed_layers() / m.layers
        att_f = (1.0 - share) * att_f + share * win_f
        att_b = (1.0 - share) * att_b + share * win_b
    hid = tok * h / (t if lay.sequence_parallel else 1)
    mlp_f, mlp_b = MLP_ELTS[m.mlp]
    mlp_elts = tok * f / t
    ew_f = memory_time(device, ACT_BYTES * (HIDDEN_ELTS_FWD * hid + mlp_f * mlp_elts), KERNELS_PER_LAYER_FWD)
    ew_b = memory_time(device, ACT_BYTES * (HIDDEN_ELTS_BWD * hid + mlp_b * mlp_elts), KERNELS_PER_LAYER_FWD)
    # FP8 / NVFP4: cast each GEMM's activation operand (fwd), output gradient and input (bwd); none in 16 bits
    cast_f, cast_b = cast_times(device, dt, shapes)
    ew_f += cast_f
    ew_b += cast_b
    fwd = g_fwd + att_f + ew_f
    bwd = g_bwd + att_b + ew_b
    tp_f, tp_b = _tp_comm(device, lay, stack, tok, h, shapes, grads, g_fwd)
    # recompute: full re-runs the forward (with its TP comm); selective what the stack's policy does not save
    if lay.recompute == "full":
        rec, rec_tp = fwd, tp_f
    elif lay.recompute == "selective":
        rec, rec_tp = selective_recompute(device, m, lay, stack.selective_recompute, tok, att_f, ew_f), 0.0
    else:
        rec, rec_tp = 0.0, 0.0
    # CP: ring exchange of K and V (fwd) and their gradients (bwd), overlapped with the attention kernels;
    # MLA exchanges its up-projected K (qk_head_dim) and V (v_head_dim) per head, 2 * attn_core_dim
    cp = 0.0
    if lay.cp > 1:
        kv_bytes = lay.micro_batch * s_loc * 2 * m.kv_heads * hd / t * ACT_BYTES
        comm = collective_time(device, "all_gather", kv_bytes * lay.cp, lay.cp, per_domain=None)
        cp = max(0.0, comm - att_f) + max(0.0, 2 * comm - att_b)
    return LayerTimes(fwd, bwd, rec, tp_f, tp_b, rec_tp, cp)


def alternate_linear_shapes(m: ModelSpec, tok: float, t: int) -> list[tuple]:
    """(m, n, k) of every second linear of a block in forward order, the ones torchtitan's op-level SAC
    re-runs (its policy counts the block's aten.mm calls and saves the odd ones). An MHA/GQA block as
    torchtitan's Llama runs it: wq, wk, wv, wo, then w1, w3, w2 (SwiGLU) or w1, w2, so wk, wo and w3 (or
    w2). MLA (no torchtitan order here): half of every projection, the same FLOPs on average."""
    h, f = m.hidden, m.ffn / t
    if m.is_mla:
        return [(a, b / 2, c) for a, b, c in m.attn_proj_shapes(tok, t) + [(tok, f * (m.mlp_matrices - 1), h),
                                                                             (tok, h, f)]]
    kv = m.kv_heads * m.head_dim / t
    q = m.attn_width / t
    mlp = [(tok, f, h), (tok, f, h), (tok, h, f)] if m.mlp_matrices == 3 else [(tok, f, h), (tok, h, f)]
    return ([(tok, q, h), (tok, kv, h), (tok, kv, h), (tok, h, q)] + mlp)[1::2]


def selective_recompute(device: str, m: ModelSpec, lay: Layout, policy: str, tok: float, att_f: float,
                        ew_f: float) -> float:
    """Forward work `recompute: selective` runs again in the backward pass, by the stack's policy
    (stacks.SELECTIVE_RECOMPUTE): the attention core (`att_f`, fused or not); or every second linear and
    the elementwise ops (`ew_f`, FP8 casts included), the fused attention's output being saved; or the
    attention kernel and the elementwise ops, every projection's output being saved."""
    if policy == "attention":
        return att_f
    if policy == "non_matmul":
        return att_f + ew_f
    linears = sum(gemm_time(device, a, b, c, lay.dtype) for a, b, c in alternate_linear_shapes(m, tok, lay.tp))
    return linears + ew_f + (0.0 if lay.flash else att_f)


def _tp_comm(device: str, lay: Layout, stack: Stack, tok: float, h: int, shapes, grads, g_fwd: float
             ) -> tuple[float, float]:
    """Exposed tensor-parallel communication of one layer, (forward, backward), for its `tok` x `h`
    activation and its GEMMs `shapes` ((m, n, k) on one rank; `grads`: each one's (data-gradient,
    weight-gradient) time; g_fwd: the forward GEMMs' time).

    Each pass runs one collective per parallel linear: with sequence parallelism an all-gather before each
    of the two column-parallel layers (QKV, MLP up) and a reduce-scatter after each of the two row-parallel
    ones (attention output, MLP down), else one all-reduce per row layer forward and per column layer
    backward. Backward with sequence parallelism also re-gathers each column layer's input for its weight
    gradient (Megatron saves only the local shard): 6 collectives.

    overlap_tp (TE userbuffers): all of them behind the pass's GEMMs, the excess exposed. Otherwise the
    forward's are exposed, and a stack with async_tp_backward (Megatron-Core and Transformer Engine
    column-parallel linears, below) hides the column layers' backward collectives: the input all-gather
    behind their data-gradient GEMMs, the gradient reduce-scatter (or all-reduce) behind their
    weight-gradient GEMMs; the row layers' gradient all-gathers stay exposed."""
    t = lay.tp
    if t <= 1:
        return 0.0, 0.0

    def coll(op: str) -> float:
        return collective_time(device, op, tok * h * ACT_BYTES, t, per_domain=t)

    if lay.sequence_parallel:
        ag, rs = coll("all_gather"), coll("reduce_scatter")
        fwd, bwd_row, bwd_col_in, bwd_col_grad = 2 * (ag + rs), 2 * ag, 2 * ag, 2 * rs
    else:
        ar = coll("all_reduce")
        fwd, bwd_row, bwd_col_in, bwd_col_grad = 2 * ar, 0.0, 0.0, 2 * ar
    bwd = bwd_row + bwd_col_in + bwd_col_grad
    if stack.overlap_tp if lay.overlap_tp is None else lay.overlap_tp:
        return max(0.0, fwd - g_fwd), max(0.0, bwd - sum(d + w for d, w in grads))
    if not stack.async_tp_backward:
        return fwd, bwd
    # column-parallel GEMMs: over all the tokens (MLA's duplicated down projections run on a shard of them
    # under sequence parallelism), writing less than the full hidden width (row-parallel ones write it)
    column = [g for (a, b, _), g in zip(shapes, grads, strict=True) if a == tok and b != h]
    dgrad, wgrad = sum(d for d, _ in column), sum(w for _, w in column)
    return fwd, bwd_row + max(0.0, bwd_col_in - dgrad) + max(0.0, bwd_col_grad - wgrad)


def head_times(device: str, m: ModelSpec, lay: Layout) -> float:
    """Output projection to the vocabulary (in BF16 under FP8 and NVFP4 recipes), its backward and the
    cross-entropy on fp32 logits (last stage)."""
    tok = lay.micro_batch * m.seq_len / lay.cp
    v_loc = m.vocab / lay.tp
    dt = HIGH_PRECISION.get(lay.dtype, lay.dtype)
    g = gemm_time(device, tok, v_loc, m.hidden, dt)
    g += gemm_time(device, tok, m.hidden, v_loc, dt) + gemm_time(device, m.hidden, v_loc, tok, dt)
    # softmax cross-entropy: write fp32 logits, read for max/sum, write grad: ~4 passes of 4 B
    return (g + memory_time(device, 16.0 * tok * v_loc, kernels=4)) / load_stack(lay.stack).efficiency


def training_step(device: str, m: ModelSpec, lay: Layout, global_batch: int) -> StepBreakdown:
    """1F1B (optionally interleaved) pipeline: the slowest stage sets the pace. With uneven stages
    (stage_layers) the first and last stages hold fewer blocks and carry the embedding and LM head."""
    stack = load_stack(lay.stack)
    lt = layer_times(device, m, lay)
    micro = global_batch // (lay.dp * lay.micro_batch)
    per_layer = lt.fwd_compute + lt.bwd_compute + lt.recompute
    per_layer_tp = lt.fwd_tp + lt.bwd_tp + lt.recompute_tp
    counts = stage_layers(m.layers, lay.pp)
    head = head_times(device, m, lay)
    # overlapped EP all-to-alls hide under the compute of the microbatch running beside them (a forward
    # beside a backward, moe.overlapped_ep_exposure); what exceeds it stays exposed
    ep_exposed = moe.overlapped_ep_exposure(lt, lay) if moe.overlap_ep_of(lay) else lt.ep
    stages = [n * (per_layer + per_layer_tp + lt.cp + ep_exposed) + (head if i == lay.pp - 1 else 0.0)
              for i, n in enumerate(counts)]
    slowest = max(range(lay.pp), key=lambda i: stages[i])
    layers_slowest = counts[slowest]
    compute_mb = layers_slowest * per_layer + (head if slowest == lay.pp - 1 else 0.0)
    tp_mb = layers_slowest * per_layer_tp
    cp_mb = layers_slowest * lt.cp
    ep_mb = layers_slowest * ep_exposed
    ep_traffic_mb = layers_slowest * lt.ep
    stage_mb = stages[slowest]
    # pipeline: send/recv of the stage boundary activation fwd and its gradient bwd, per virtual stage;
    # Megatron's scatter-gather sends 1/t of it when TP > 1 (Narayanan et al. SC'21, sec. 4.1)
    pp_mb = 0.0
    if lay.pp > 1:
        act = lay.micro_batch * m.seq_len / lay.cp * m.hidden * ACT_BYTES / lay.tp
        stride = lay.tp * lay.cp * lay.dp
        per_domain = 2 if stride * 2 <= load_profile(device).scale_up_domain else 1
        pp_mb = 2 * lay.virtual_stages * collective_time(device, "send_recv", act, 2, per_domain=per_domain)
    bubble = bubble_fraction(lay.pp, lay.virtual_stages, micro) * micro * (stage_mb + pp_mb) if lay.pp > 1 else 0.0
    dp_comm, dp_traffic = _dp_comm(device, m, lay, micro, lt, layers_slowest, stack)
    local = sharded_params_per_device(m, lay, lay.zero >= 1)
    optimizer = memory_time(device, stack.optimizer_bytes_per_param * local, kernels=4) + stack.step_overhead_s
    return StepBreakdown(compute_s=micro * compute_mb, tp_comm_s=micro * tp_mb, cp_comm_s=micro * cp_mb,
                         pp_comm_s=micro * pp_mb, dp_comm_s=dp_comm, bubble_s=bubble, optimizer_s=optimizer,
                         scale_out_comm_s=dp_traffic + micro * (pp_mb + ep_traffic_mb * moe.ep_spans_domains(device, lay)),
                         ep_comm_s=micro * ep_mb)


def _dp_comm(device: str, m: ModelSpec, lay: Layout, micro: int, lt: LayerTimes, layers_stage: int,
             stack: Stack) -> tuple[float, float]:
    """Data-parallel communication per step: (exposed, all of it). Gradients are reduced over the DP x CP
    replicas; with TP fastest in rank order they sit tp apart, so domain/tp of them share a scale-up domain.
    MoE expert gradients are reduced over their own replicas (moe.grad_collective_time). Overlapped
    communication still leaves the stack's exposed share in the open: the last bucket can only start
    after the last backward kernel, and a collective slows the kernels it overlaps."""
    if lay.dp * lay.cp <= 1 and lay.expert_dp <= 1:
        return 0.0, 0.0
    bwd_window = layers_stage * (lt.bwd_compute + lt.recompute)
    exposed = stack.exposed_dp_share
    # hybrid sharding: each rank's gradient shard is all-reduced with the other replica groups once a step
    across = moe.grad_collective_time(device, "all_reduce", m, lay, across_replicas=True)
    if lay.zero >= 3:
        # FSDP: all-gather weights for fwd and bwd and reduce-scatter grads, every microbatch, prefetched
        # behind that microbatch's compute
        ag = moe.grad_collective_time(device, "all_gather", m, lay)
        rs = moe.grad_collective_time(device, "reduce_scatter", m, lay)
        fwd_window = layers_stage * lt.fwd_compute
        if lay.overlap_grad_reduce:
            per_mb = max(0.0, ag - fwd_window) + max(0.0, ag + rs - bwd_window) + exposed * (2 * ag + rs)
            across_exposed = max(across - bwd_window, exposed * across)
        else:
            per_mb, across_exposed = 2 * ag + rs, across
        return micro * per_mb + across_exposed, micro * (2 * ag + rs) + across
    if lay.zero >= 1:  # reduce-scatter grads, all-gather updated weights (same volume as an all-reduce)
        total = moe.grad_collective_time(device, "reduce_scatter", m, lay) + \
            moe.grad_collective_time(device, "all_gather", m, lay) + across
    else:
        total = moe.grad_collective_time(device, "all_reduce", m, lay)
    if lay.overlap_grad_reduce:
        return max(total - bwd_window, exposed * total), total
    return total, total
