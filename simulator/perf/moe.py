"""Mixture-of-experts (MoE) training: where the experts live, what one MoE layer costs on one device,
what it holds in memory, and how its gradients are reduced.

How it is run, and where each rule comes from:

* Megatron-Core MoE (NVIDIA/Megatron-LM, megatron/core/transformer/moe/README.md and
  megatron/core/parallel_state.py). Expert parallelism (EP) shards the routed experts: each device holds
  num_experts / ep of them. With MoE parallel folding (MCore >= 0.10) the expert layers regroup the
  tp*cp*dp devices of a pipeline stage as ETP x EP x EDP in that order (expert rank generator
  `tp=expert_tensor_parallel_size, ep, dp=expert_data_parallel_size, cp=1`, ETP fastest), so
  ep * etp must divide tp*cp*dp, EP ranks sit etp apart and each expert parameter has
  EDP = tp*cp*dp / (ep*etp) data-parallel replicas. ETP defaults to TP (arguments.py); recipes for
  fine-grained MoE set it to 1 ("Prefer EP over TP for the expert layer"). The `alltoall` token
  dispatcher permutes each device's tokens by expert, all-to-alls them over the EP group, all-gathers
  them over the expert-TP group when etp > 1, runs the local experts as one grouped GEMM, and undoes it
  all to combine (reduce-scatter over ETP, all-to-all back, unpermute weighted by the router
  probabilities). Dropless by default; `--moe-expert-capacity-factor` caps each expert at
  tokens * topk * capacity_factor / num_experts (padded to capacity with --moe-pad-expert-input-to-capacity).
  Shared experts "follow the settings of the dense part": a dense TP-sharded MLP on every token.
* DeepSpeed-MoE (Rajbhandari et al., ICML 2022, arXiv 2201.05596), sec. 3-4: expert + data parallelism,
  each all-to-all moves every routed token copy's hidden vector once; expert parameters are data-parallel
  over world / ep replicas while dense parameters are data-parallel over all of them.
* DeepSeek-V3 technical report (arXiv 2412.19437), sec. 2.1.2 and 3.2: one shared expert beside the routed
  ones, the first three layers dense; each MoE layer's forward is attention, all-to-all dispatch, MLP,
  all-to-all combine, and the backward runs the two all-to-alls again on the gradients: four all-to-alls
  per layer and microbatch.
* GShard (Lepikhin et al. 2020) and Switch Transformer (Fedus et al. 2021): the capacity factor.

Modelling choices (stated, not hidden): routing is balanced (every expert gets its share of the token
copies; dropless training early on is less balanced than that), the EP all-to-alls are exposed (Megatron
overlaps them only with --overlap-moe-expert-parallel-comm, DeepSeek with DualPipe), and a capacity
factor means drop-and-pad: every expert processes exactly its capacity, and that many copies travel.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

from simulator.perf.collectives import collective_time, tier_model
from simulator.perf.kernels import KERNEL_OVERHEAD_S, gemm_time, memory_time
from simulator.perf.layout import Layout
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile

ACT_BYTES = 2  # 16-bit activations, as in step.py
ROUTER_PROB_BYTES = 4  # router logits / probabilities in fp32 (Megatron --moe-router-dtype fp32; softmax in fp32)
# Elementwise router work per token and expert: the softmax (or sigmoid) reads the fp32 logits and writes
# the probabilities, top-k reads them again: 3 passes of 4 B forward, and as many backward.
ROUTER_ELT_BYTES = 3 * ROUTER_PROB_BYTES
# Permute (gather the token copies in expert order) and unpermute (scatter back, weighted sum): each
# reads and writes every hidden vector once.
PERMUTE_PASSES = 2
# All-to-alls of one MoE layer and microbatch: dispatch and combine forward, their gradients backward.
ALL_TO_ALLS_FWD, ALL_TO_ALLS_BWD = 2, 2


# ---- where the experts live -------------------------------------------------------------------

def capacity(lay: Layout) -> float:
    """Token copies an expert processes relative to a balanced share: the capacity factor, 1 when dropless."""
    return 1.0 if lay.capacity_factor is None else float(lay.capacity_factor)


def local_experts(m: ModelSpec, lay: Layout) -> int:
    """Routed experts on one device: num_experts / ep."""
    return m.num_experts // lay.ep


def own_tokens(m: ModelSpec, lay: Layout) -> float:
    """Tokens one device routes per layer and microbatch: T = micro_batch * seq_len / (cp * tp). With TP
    Megatron requires sequence parallelism for MoE, so each TP rank holds 1/tp of its group's tokens (in
    the one layout allowed without it, ep = 1 and etp = tp, the TP ranks hold the same tokens and each
    processes a 1/tp slice of every expert, the same work)."""
    return lay.micro_batch * m.seq_len / lay.cp / lay.tp


def routed_tokens(m: ModelSpec, lay: Layout) -> float:
    """Token copies one device sends to the experts per layer and microbatch: T * top_k * capacity factor."""
    return own_tokens(m, lay) * m.top_k * capacity(lay)


def expert_rows(m: ModelSpec, lay: Layout) -> float:
    """Token copies the local experts of one device process: the routed copies of the etp devices of its
    expert-TP group (all-gathered), T * top_k * cf * etp, spread over num_experts / ep experts."""
    return routed_tokens(m, lay) * lay.expert_tp


def all_to_all_bytes(m: ModelSpec, lay: Layout) -> float:
    """Bytes one device sends in one dispatch (or combine) all-to-all: every routed token copy's hidden
    vector, T * top_k * cf * hidden * 2 (DeepSpeed-MoE sec. 4; Megatron alltoall dispatcher)."""
    return routed_tokens(m, lay) * m.hidden * ACT_BYTES


def ep_ranks_per_domain(device: str, lay: Layout) -> int:
    """EP ranks of one group that share a scale-up domain. In Megatron-Core's expert layout (ETP fastest,
    then EP) the members of an EP group are etp ranks apart, so domain / etp of them fit in one domain.
    With etp = tp and cp = 1 this is the classic picture of EP groups made of consecutive DP ranks."""
    return max(1, min(lay.ep, load_profile(device).scale_up_domain // lay.expert_tp))


def ep_spans_domains(device: str, lay: Layout) -> bool:
    """Whether the EP all-to-all leaves the scale-up domain (and crosses the scale-out fabric)."""
    return lay.ep > ep_ranks_per_domain(device, lay)


def remote_domains_per_token(m: ModelSpec, groups: int) -> float:
    """Distinct scale-up domains other than its own that one token's top_k routed copies reach, with the
    experts spread evenly over `groups` domains of the EP group and at most `route_nodes` of them per
    token (DeepSeek-V3's node-limited routing): D = M (1 - (1 - 1/M)^k) domains used of M = min(route_nodes,
    groups), each the token's own with probability 1/groups."""
    reach = min(m.route_nodes or groups, groups)
    used = reach * (1.0 - (1.0 - 1.0 / reach) ** m.top_k)
    return used * (groups - 1) / groups


def dispatcher_of(lay: Layout) -> str:
    """The layout's token dispatcher, else its stack's (layout.DISPATCHERS)."""
    from simulator.perf.stacks import load_stack

    return lay.dispatcher or load_stack(lay.stack).dispatcher


def overlap_ep_of(lay: Layout) -> bool:
    """Whether the layout's EP all-to-alls run under another microbatch's compute: its own say, else its stack's."""
    from simulator.perf.stacks import load_stack

    return load_stack(lay.stack).overlap_ep if lay.overlap_ep is None else lay.overlap_ep


def all_to_all_time(device: str, m: ModelSpec, lay: Layout) -> float:
    """One dispatch (or combine) all-to-all over the EP group, from the fitted collective model.

    `alltoall`: every routed copy travels to its expert's device; the share bound for other domains
    crosses the scale-out fabric. `deepep` and `hybridep`: a token crosses the fabric once per remote domain
    its experts are in (remote_domains_per_token) and is fanned out to the experts inside the domain over
    the scale-up links, which carry every copy (DeepEP; DeepSeek-V3 report sec. 3.2.2; HybridEP's design
    document, deepseek-ai/DeepEP branch hybrid_ep, docs/Hybrid-EP_Implementation.md sec. 4.2: the RDMA
    token buffer of a rank is max_tokens_per_rank x (num_of_nodes - 1) x hidden, num_of_nodes counting
    NVLink domains)."""
    per_domain = ep_ranks_per_domain(device, lay)
    if dispatcher_of(lay) == "alltoall" or per_domain >= lay.ep:
        return collective_time(device, "all_to_all", all_to_all_bytes(m, lay), lay.ep, per_domain=per_domain)
    groups = -(-lay.ep // per_domain)
    up, out = tier_model(device, "scale_up"), tier_model(device, "scale_out")
    crossing = own_tokens(m, lay) * capacity(lay) * remote_domains_per_token(m, groups) * m.hidden * ACT_BYTES
    return up.time("all_to_all", all_to_all_bytes(m, lay), per_domain) + out.alpha_s + crossing / out.bw_Bps


def stage_layer_mix(m: ModelSpec, lay: Layout) -> tuple[float, float]:
    """(MoE layers, dense layers) on the busiest pipeline stage, which holds layers / pp of them. The
    first_dense_layers lead (they sit on the first stage); the other dense layers are interleaved evenly
    with the MoE ones (Llama 4: every other layer), so a stage past the leading ones holds its share of
    MoE layers, rounded up."""
    per_stage = m.layers / lay.pp
    if not m.is_moe:
        return 0.0, per_stage
    rest = m.layers - m.first_dense_layers
    n_moe = min(float(math.ceil(min(per_stage, rest) * m.n_moe_layers / rest - 1e-9)), per_stage)
    return n_moe, per_stage - n_moe


def dense_view(m: ModelSpec, ffn: int) -> ModelSpec:
    """The same transformer as a dense model with an ffn-wide MLP: every field kept (attention width, MLA,
    sliding windows) but the MoE ones, which go back to their dense defaults."""
    return replace(m, ffn=ffn, num_experts=1, top_k=1, moe_ffn=None, shared_experts=0, first_dense_layers=0,
                   moe_layers=None, route_nodes=None)


# ---- parameters -------------------------------------------------------------------------------

def moe_stage_params(m: ModelSpec, lay: Layout) -> tuple[float, float]:
    """(dense, expert) parameters one device of the busiest pipeline stage holds before ZeRO sharding.

    dense = (dense layers + attention, norms and shared experts of the MoE layers + embedding) / tp, plus
            the routers (replicated on the TP ranks);
    expert = MoE layers * num_experts * expert MLP / (ep * etp): each device holds num_experts / ep
            experts, each split etp ways."""
    n_moe, n_dense = stage_layer_mix(m, lay)
    moe_dense_part = m.attn_params() + m.shared_experts * m.expert_params() + 4 * m.hidden
    dense = (n_dense * m.dense_layer_params() + n_moe * moe_dense_part + m.embedding_params()) / lay.tp
    dense += n_moe * m.router_params()
    expert = n_moe * m.num_experts * m.expert_params() / (lay.ep * lay.expert_tp)
    return dense, expert


def grad_collective_time(device: str, op: str, m: ModelSpec, lay: Layout, across_replicas: bool = False) -> float:
    """One data-parallel collective (reduce-scatter, all-gather or all-reduce) on the gradients, or with
    ZeRO-3 the weights, of one stage. Dense parameters are reduced over their dp*cp replicas, which sit tp
    apart in rank order, so domain / tp of them share a scale-up domain; expert parameters over their
    EDP = tp*cp*dp / (ep*etp) replicas, ep*etp apart (DeepSpeed-MoE sec. 4.1; Megatron-Core expert data
    parallel group). A dense model is the first term alone.

    With hybrid sharding (lay.dp_replicate > 1) these span one shard group, a 1/dp_replicate share of the
    replicas; across_replicas: the all-reduce of each rank's shard with its dp_replicate counterparts in the
    other groups, which sit in other scale-up domains (a shard group is kept inside the fast domain, slice
    or node group, and the replicas meet over the network), so every rank drives its own NIC."""
    from simulator.perf.memory import GRAD_BYTES, stage_params, zero_shards

    dense, expert = stage_params(m, lay)
    r = lay.dp_replicate
    if across_replicas:
        if r <= 1:
            return 0.0
        shard, shard_e = zero_shards(lay)
        t = collective_time(device, op, dense * GRAD_BYTES / shard, r, per_domain=1)
        return t + (collective_time(device, op, expert * GRAD_BYTES / shard_e, r, per_domain=1) if expert else 0.0)
    domain = load_profile(device).scale_up_domain
    per_domain = max(1, domain // lay.tp) if lay.tp < domain else 1
    t = collective_time(device, op, dense * GRAD_BYTES, lay.dp * lay.cp // r, per_domain)
    if expert:
        stride = lay.ep * lay.expert_tp
        per_domain_e = max(1, domain // stride) if stride < domain else 1
        t += collective_time(device, op, expert * GRAD_BYTES, lay.expert_dp // r, per_domain_e)
    return t


# ---- time of one MoE layer --------------------------------------------------------------------

def grouped_gemm_time(device: str, experts: int, m: float, n: float, k: float, dtype: str) -> float:
    """A grouped GEMM of `experts` (m,k)@(k,n) problems in one launch (TE GroupedLinear / CUTLASS grouped
    GEMM): each runs at the efficiency the profile measured for its own size, so a small per-expert token
    count costs efficiency; one kernel launch for the group."""
    return experts * gemm_time(device, m, n, k, dtype) - (experts - 1) * KERNEL_OVERHEAD_S


def routed_times(device: str, m: ModelSpec, lay: Layout) -> tuple[float, float]:
    """(forward, backward) compute of the routed part of one MoE layer, one microbatch, one device:

    router GEMM (T, num_experts, hidden) on the device's own T tokens, its softmax / top-k in fp32;
    permute and unpermute of the token copies; the local experts as grouped GEMMs, each expert
    (rows_e, moe_ffn/etp * (1 or 2 for SwiGLU's gate+up), hidden) and (rows_e, hidden, moe_ffn/etp) with
    rows_e = T * top_k * cf * etp * ep / num_experts token copies per expert; the expert activation.
    Backward: data- and weight-gradient GEMMs of each, and the elementwise passes again."""
    from simulator.perf.step import HIGH_PRECISION, MLP_ELTS, cast_times

    dt, h = lay.dtype, m.hidden
    tok, e = own_tokens(m, lay), m.num_experts
    rows, n_loc = expert_rows(m, lay), local_experts(m, lay)
    rows_e = rows / n_loc
    f = m.expert_ffn / lay.expert_tp
    shapes = [(rows_e, f * (m.mlp_matrices - 1), h), (rows_e, h, f)]
    fwd = sum(grouped_gemm_time(device, n_loc, a, b, c, dt) for a, b, c in shapes)
    bwd = sum(grouped_gemm_time(device, n_loc, a, c, b, dt) + grouped_gemm_time(device, n_loc, c, b, a, dt)
              for a, b, c in shapes)
    rdt = HIGH_PRECISION.get(dt, dt)  # the router stays in 16 bits under FP8 and NVFP4 recipes
    fwd += gemm_time(device, tok, e, h, rdt)
    bwd += gemm_time(device, tok, h, e, rdt) + gemm_time(device, h, e, tok, rdt)
    copies = routed_tokens(m, lay)
    sort = rows * h if n_loc > 1 else 0.0  # after the all-to-all the copies are regrouped by local expert
    moved = ACT_BYTES * PERMUTE_PASSES * (tok * h + copies * h + sort) + ROUTER_ELT_BYTES * tok * e
    act_f, act_b = MLP_ELTS[m.mlp]
    fwd += memory_time(device, moved + ACT_BYTES * act_f * rows * f, kernels=5)
    bwd += memory_time(device, moved + ACT_BYTES * act_b * rows * f, kernels=5)
    # FP8 / NVFP4: cast each expert GEMM's activation operand (fwd), its output gradient and input (bwd)
    cast_f, cast_b = cast_times(device, dt, shapes, n_loc)
    return fwd + cast_f, bwd + cast_b


def expert_tp_comm_time(device: str, m: ModelSpec, lay: Layout) -> float:
    """Expert-TP collectives of one pass: all-gather of the dispatched copies over the etp ranks of the
    expert-TP group (consecutive ranks) and reduce-scatter of the expert outputs, each on etp * T * top_k
    * cf * hidden * 2 bytes. None without sequence parallelism (the one layout allowed then, ep = 1 and
    etp = tp, reduces the expert outputs with the layer's TP all-reduce)."""
    etp = lay.expert_tp
    if etp <= 1 or not lay.sequence_parallel:
        return 0.0
    b = expert_rows(m, lay) * m.hidden * ACT_BYTES
    return (collective_time(device, "all_gather", b, etp, per_domain=etp)
            + collective_time(device, "reduce_scatter", b, etp, per_domain=etp))


def _mlp_slot(device: str, dense: ModelSpec, lay: Layout) -> tuple[float, float, float]:
    """(forward compute, backward compute, TP collectives of one pass) of the MLP block that
    step.layer_times prices for `dense`: its two GEMMs and their backward, their FP8 / NVFP4 casts, and with
    sequence parallelism the all-gather + reduce-scatter of the block. It mirrors step.py's dense terms
    for a one-column MLP, so that subtracting it leaves the attention block (see moe_layer_times)."""
    from simulator.perf.step import cast_times

    t, dt, h = lay.tp, lay.dtype, dense.hidden
    tok = lay.micro_batch * dense.seq_len / lay.cp
    shapes = [(tok, dense.ffn * (dense.mlp_matrices - 1) / t, h), (tok, h, dense.ffn / t)]
    fwd = sum(gemm_time(device, a, b, c, dt) for a, b, c in shapes)
    bwd = sum(gemm_time(device, a, c, b, dt) + gemm_time(device, c, b, a, dt) for a, b, c in shapes)
    cast_f, cast_b = cast_times(device, dt, shapes)
    fwd += cast_f
    bwd += cast_b
    comm = 0.0
    if t > 1 and lay.sequence_parallel:
        act = tok * h * ACT_BYTES
        comm = (collective_time(device, "all_gather", act, t, per_domain=t)
                + collective_time(device, "reduce_scatter", act, t, per_domain=t))
    return fwd, bwd, comm


def moe_layer_times(device: str, m: ModelSpec, lay: Layout, dense_layer_times):
    """One MoE layer, one microbatch, one device (a step.LayerTimes, with the EP all-to-alls in `ep`).

    attention block + shared experts: step.layer_times of the same transformer made dense with the shared
      experts as its MLP (shared_experts * moe_ffn wide, TP-sharded like the dense part, as Megatron runs
      them); without shared experts, with a one-column MLP minus that MLP (_mlp_slot): the attention
      block, norms and residuals alone;
    + routed_times (router, permutation, grouped expert GEMMs), the expert-TP gather/scatter with the TP
      collectives;
    + 4 all-to-alls over the EP group (dispatch and combine forward, their gradients backward), 2 more
      when full recompute re-runs the forward."""
    from simulator.perf.step import LayerTimes

    shared_ffn = m.shared_experts * m.expert_ffn
    dense = dense_view(m, shared_ffn or lay.tp)
    base = dense_layer_times(device, dense, lay)
    full = lay.recompute == "full"
    g_f, g_b, comm = _mlp_slot(device, dense, lay)
    # the attention block alone (the shared experts run in the MLP's slot of the overlap schedule)
    attn_f, attn_b = base.fwd_compute - g_f, base.bwd_compute - g_b
    if not shared_ffn:
        base = LayerTimes(fwd_compute=attn_f, bwd_compute=attn_b,
                          recompute=base.recompute - (g_f if full else 0.0),
                          fwd_tp=max(0.0, base.fwd_tp - comm), bwd_tp=max(0.0, base.bwd_tp - comm),
                          recompute_tp=max(0.0, base.recompute_tp - comm) if full else base.recompute_tp,
                          cp=base.cp)
    r_f, r_b = routed_times(device, m, lay)
    etp_comm = expert_tp_comm_time(device, m, lay)
    a2a = all_to_all_time(device, m, lay)
    return LayerTimes(fwd_compute=base.fwd_compute + r_f, bwd_compute=base.bwd_compute + r_b,
                      recompute=base.recompute + (r_f if full else 0.0),
                      fwd_tp=base.fwd_tp + etp_comm, bwd_tp=base.bwd_tp + etp_comm,
                      recompute_tp=base.recompute_tp + (etp_comm if full else 0.0), cp=base.cp,
                      ep=all_to_alls_per_layer(lay) * a2a, attn_fwd=attn_f, attn_bwd=attn_b)


def all_to_alls_per_layer(lay: Layout) -> int:
    """Dispatch and combine forward, their gradients backward, and the forward's two again under full
    recompute."""
    return ALL_TO_ALLS_FWD * (2 if lay.recompute == "full" else 1) + ALL_TO_ALLS_BWD


def overlapped_ep_exposure(lt, lay: Layout) -> float:
    """Exposed all-to-all time of one layer under Megatron-Core's EP overlap (--overlap-moe-expert-
    parallel-comm, Megatron-Bridge moe_a2a_overlap), from the schedule its source documents for a layer
    of one microbatch's forward beside a layer of another's backward
    (megatron/core/models/common/model_chunk_schedule_plan.py, TransformerLayerSchedulePlan.run):

        comm stream: combine_bwd | dispatch_fwd -> dispatch_bwd      | combine_fwd
        comp stream: attn_fwd    | mlp_bwd -> mlp_bwd_dw -> mlp_fwd   | attn_bwd

    Each phase lasts the longer of its two streams, so an all-to-all hides only under the block beside
    it: one under each attention block, two under the two MLP blocks. A full recompute's forward runs
    its all-to-alls exposed ("by design", same file). `lt` is a step.LayerTimes; an MLP block is its
    compute less its attention block (host time included: the stream waits for it as for a kernel)."""
    a2a = lt.ep / all_to_alls_per_layer(lay)
    mlp = lt.fwd_compute - lt.attn_fwd + lt.bwd_compute - lt.attn_bwd
    recomputed = ALL_TO_ALLS_FWD * a2a if lay.recompute == "full" else 0.0
    return (max(0.0, a2a - lt.attn_fwd) + max(0.0, 2.0 * a2a - mlp) + max(0.0, a2a - lt.attn_bwd)
            + recomputed)


def expert_host_time(m: ModelSpec, lay: Layout, us_per_expert: float) -> float:
    """Exposed host time of one layer's forward on the busiest stage, averaged over its MoE and dense
    layers as layer_times is: us_per_expert for each local expert of an MoE layer (the stack's fitted
    `moe_host_us_per_expert`; stacks.py says why it is exposed). Backward takes twice this."""
    if not m.is_moe or us_per_expert <= 0:
        return 0.0
    n_moe, n_dense = stage_layer_mix(m, lay)
    return us_per_expert * 1e-6 * local_experts(m, lay) * n_moe / (n_moe + n_dense)


def layer_times(device: str, m: ModelSpec, lay: Layout, dense_layer_times):
    """A layer of an MoE model on the busiest pipeline stage, averaged over that stage's MoE and dense
    layers (stage_layer_mix), so that layers/pp times it is the stage's time. `dense_layer_times` is
    step.layer_times, which prices every dense part."""
    n_moe, n_dense = stage_layer_mix(m, lay)
    moe = moe_layer_times(device, m, lay, dense_layer_times)
    if not n_dense:
        return moe
    dense = dense_layer_times(device, dense_view(m, m.ffn), lay)
    mixed = {f.name: (n_moe * getattr(moe, f.name) + n_dense * getattr(dense, f.name)) / (n_moe + n_dense)
             for f in fields(moe)}
    return type(moe)(**mixed)


# ---- activation memory ------------------------------------------------------------------------

def moe_block_activation_bytes(m: ModelSpec, lay: Layout) -> float:
    """Bytes one device keeps for the backward of one MoE block (16-bit activations, one microbatch):

    block input (layer-norm output, for the router's weight gradient and the permutation): 2 * t_h * h
    residual dropout mask, as Korthikanti counts it for the MLP block:                    1 * t_h * h
    router probabilities, fp32:                                                         4 * T * E
    per expert row (rows = T * top_k * cf * etp token copies): its input 2 * h, the first GEMM's output
      2 * (1 or 2 for SwiGLU) * moe_ffn/etp, the activation output 2 * moe_ffn/etp
    expert outputs of the device's own copies, for the probability-weighted combine:     2 * T*top_k*cf * h
    shared experts (their input is the block input): per token of the TP group 2 * (1 or 2) * F_s/tp
      + 2 * F_s/tp with F_s = shared_experts * moe_ffn
    t_h = the block's tokens per device (mb * s / cp, / tp with sequence parallelism), T = own_tokens."""
    h, t = m.hidden, lay.tp
    tok = lay.micro_batch * m.seq_len / lay.cp
    t_h = tok / t if lay.sequence_parallel else tok
    f = m.expert_ffn / lay.expert_tp
    per_row = ACT_BYTES * (h + (m.mlp_matrices - 1) * f + f)
    shared = m.shared_experts * m.expert_ffn / t
    return ((ACT_BYTES + 1) * t_h * h + ROUTER_PROB_BYTES * own_tokens(m, lay) * m.num_experts
            + expert_rows(m, lay) * per_row + ACT_BYTES * routed_tokens(m, lay) * h
            + ACT_BYTES * tok * m.mlp_matrices * shared)


def dense_mlp_activation_bytes(m: ModelSpec, lay: Layout) -> float:
    """The MLP block's share of Korthikanti et al. 2022's per-layer count (the 4h GeLU MLP: input 2, GeLU
    input 8, GeLU output 8, dropout mask 1, in units of s*b*h bytes): 19 s*b*h / t with sequence
    parallelism, (3 + 16 / t) s*b*h without."""
    sbh = lay.micro_batch * m.seq_len / lay.cp * m.hidden
    if lay.sequence_parallel:
        return 19.0 * sbh / lay.tp
    return sbh * (3.0 + 16.0 / lay.tp)


def moe_layer_activation_bytes(m: ModelSpec, lay: Layout, dense_bytes: float, recompute: str) -> float:
    """One MoE layer: the dense layer's count (`dense_bytes`, memory.activation_bytes_per_layer) with its
    MLP block replaced by the MoE block. Full recompute keeps only the layer input either way."""
    if recompute == "full":
        return dense_bytes
    return dense_bytes - dense_mlp_activation_bytes(m, lay) + moe_block_activation_bytes(m, lay)


def mean_layer_activation_bytes(m: ModelSpec, lay: Layout, dense_bytes: float) -> float:
    """Per layer of the busiest stage, averaged over its MoE and dense layers."""
    n_moe, n_dense = stage_layer_mix(m, lay)
    moe = moe_layer_activation_bytes(m, lay, dense_bytes, lay.recompute)
    return (n_moe * moe + n_dense * dense_bytes) / (n_moe + n_dense)
