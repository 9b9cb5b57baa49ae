"""Memory per device: weights, gradients and optimizer state (ZeRO stages), activations after
Korthikanti et al. 2022 (Reducing Activation Recomputation in Large Transformer Models)."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.perf import moe
from simulator.perf.layout import Layout, stage_layers
from simulator.perf.model import ModelSpec

GIB = 2**30
# Mixed-precision Adam (ZeRO paper, Rajbhandari et al. 2020): 2 B weights + 2 B grads + 12 B fp32 master,
# momentum and variance per parameter.
WEIGHT_BYTES, GRAD_BYTES, OPTIM_BYTES = 2, 2, 12
# CUDA context, NCCL buffers, allocator fragmentation: a fixed reserve (typ. 1-3 GiB on a Megatron rank).
RESERVED_GIB = 2.0


def activation_bytes_per_layer(s: float, b: float, h: float, a: float, t: int = 1, sp: bool = False,
                               recompute: str = "none", flash: bool = False) -> float:
    """Korthikanti et al. 2022, eq. 1-6 (16-bit activations, dropout masks).

    none:      s*b*h*(34 + 5*a*s/h) at t=1; with TP s*b*h*(10 + 24/t + 5*a*s/(h*t)); with TP+SP all / t.
    selective: the 5*a*s^2*b attention term is recomputed (also what fused attention never stores).
    full:      only the layer input is kept: 2*s*b*h (/t with SP)."""
    if recompute == "full":
        return 2.0 * s * b * h / (t if sp else 1)
    attn = 0.0 if (recompute == "selective" or flash) else 5.0 * a * s * s * b / t
    if sp:
        return 34.0 * s * b * h / t + attn
    return s * b * h * (10.0 + 24.0 / t) + attn


def mla_extra_activation_bytes(model: ModelSpec, layout: Layout, recompute: str) -> float:
    """What MLA's attention block keeps beyond Korthikanti's MHA count (16-bit, one layer, one microbatch).

    Korthikanti's 8*s*b*h/t for Q, K, V and the output projection's input becomes 2 B x (2 * heads *
    qk_head_dim + 2 * heads * v_head_dim) = 8 * attn_core_width; and the up projections keep their latent
    inputs and the latent RMSNorms theirs, 2 x 2 B x (q_lora_rank + kv_lora_rank) a token, whole on every TP
    rank without sequence parallelism (the down projections are duplicated), 1/t with it. Approximated:
    the RoPE key (64 of 576) and TE's FP8 copies are not counted. Full recompute keeps the layer input only."""
    if not model.is_mla or recompute == "full":
        return 0.0
    t = layout.tp
    tokens = layout.micro_batch * model.seq_len / layout.cp
    latents = 4.0 * ((model.q_lora_rank or 0) + model.kv_lora_rank) / (t if layout.sequence_parallel else 1)
    return tokens * (8.0 * (model.attn_core_width - model.hidden) / t + latents)


@dataclass(frozen=True)
class MemoryBreakdown:
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    reserved_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.grads_gib + self.optimizer_gib + self.activations_gib + self.reserved_gib


def stage_params(model: ModelSpec, layout: Layout) -> tuple[float, float]:
    """(dense, expert) parameters one device of the busiest pipeline stage holds before ZeRO sharding
    (embedding on the first stage). Dense parameters are split over TP; MoE expert parameters over EP
    and expert TP (moe.moe_stage_params); a dense model has no expert part."""
    if model.is_moe:
        return moe.moe_stage_params(model, layout)
    per_stage_layers = max(stage_layers(model.layers, layout.pp))
    # untied: the input embedding sits on the first stage and the LM head on the last (both without PP)
    matrices = model.embedding_matrices() if layout.pp == 1 else 1
    return (per_stage_layers * model.layer_params() + matrices * model.embedding_params()) / layout.tp, 0.0


def params_per_device(model: ModelSpec, layout: Layout) -> float:
    """Parameters held by one device of the busiest pipeline stage before ZeRO sharding."""
    dense, expert = stage_params(model, layout)
    return dense + expert


def zero_shards(layout: Layout) -> tuple[int, int]:
    """(dense, expert) ranks one parameter is sharded over by ZeRO: a dense one over its dp*cp replicas, an
    expert one over its tp*cp*dp/(ep*etp) (layout.expert_dp); with hybrid sharding, over one replica group's
    share of them (layout.dp_replicate)."""
    return layout.shard_dp * layout.cp, layout.expert_dp // layout.dp_replicate


def sharded_params_per_device(model: ModelSpec, layout: Layout, sharded: bool) -> float:
    """Parameters per device after sharding over the data-parallel replicas (`sharded`, ZeRO; zero_shards)."""
    dense, expert = stage_params(model, layout)
    if not sharded:
        return dense + expert
    shard, shard_e = zero_shards(layout)
    return dense / shard + expert / shard_e


def memory_per_device(model: ModelSpec, layout: Layout) -> MemoryBreakdown:
    dense, expert = stage_params(model, layout)
    shard, shard_e = zero_shards(layout)

    def held(per_param: float, zero_stage: int) -> float:
        on = layout.zero >= zero_stage
        return dense * per_param / (shard if on else 1) + expert * per_param / (shard_e if on else 1)

    w, g, o = held(WEIGHT_BYTES, 3), held(GRAD_BYTES, 2), held(OPTIM_BYTES, 1)
    s = model.seq_len / layout.cp
    per_layer = activation_bytes_per_layer(s, layout.micro_batch, model.hidden, model.heads, layout.tp,
                                           layout.sequence_parallel, layout.recompute, layout.flash)
    per_layer += mla_extra_activation_bytes(model, layout, layout.recompute)
    if model.is_moe:  # MoE layers keep the routed token copies' expert activations instead of a dense MLP's
        per_layer = moe.mean_layer_activation_bytes(model, layout, per_layer)
    # 1F1B: the first stage holds p microbatches of its L/p layers = L layers' worth; interleaving adds
    # (p-1)/(p*v) (Korthikanti 2022, sec. 4.2.3). Without PP one microbatch's activations are live.
    inflight_layers = float(model.layers)
    if layout.pp > 1 and layout.virtual_stages > 1:
        inflight_layers *= 1.0 + (layout.pp - 1) / (layout.pp * layout.virtual_stages)
    act = per_layer * inflight_layers
    if layout.recompute == "full":  # one layer's full activations are rebuilt at a time during backward
        rebuilt = activation_bytes_per_layer(s, layout.micro_batch, model.hidden, model.heads, layout.tp,
                                             layout.sequence_parallel, "none", layout.flash)
        rebuilt += mla_extra_activation_bytes(model, layout, "none")
        act += moe.moe_layer_activation_bytes(model, layout, rebuilt, "none") if model.is_moe else rebuilt
    # output layer: fp32 logits for the loss on the last stage (4 B x s x b x V / t), one chunk's at a time
    # when the loss is computed in chunks of the tokens
    act += 4.0 * s * layout.micro_batch * model.vocab / layout.tp / layout.loss_chunks
    return MemoryBreakdown(w / GIB, g / GIB, o / GIB, act / GIB, RESERVED_GIB)
