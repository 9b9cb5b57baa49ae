"""How a training job is laid out on its devices, and the checks that make a layout valid."""

from __future__ import annotations

from dataclasses import dataclass, replace

from simulator.errors import CapsimError
from simulator.perf.model import ModelSpec

RECOMPUTE = ("none", "selective", "full")
# MoE token dispatch: `alltoall` sends every routed copy of a token to its expert's device (Megatron-Core's
# alltoall dispatcher); `deepep` sends a token once to each remote scale-up domain its experts are in and
# fans it out inside the domain (DeepEP; DeepSeek-V3 report sec. 3.2.2); `hybridep` is NVIDIA's HybridEP
# (Megatron-Core >= 0.15 flex dispatcher), which does the same: its RDMA buffer holds each token once per
# remote NVLink domain. simulator/perf/moe.py.
DISPATCHERS = ("alltoall", "deepep", "hybridep")


@dataclass(frozen=True)
class Layout:
    """Parallelism and training options. Rank order is TP (fastest), CP, DP, PP (Megatron's default)."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    dp: int = 1
    micro_batch: int = 1
    virtual_stages: int = 1
    zero: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"
    dtype: str = "bf16"
    flash: bool = True              # fused FlashAttention-style kernels (not in Megatron 2021-22)
    overlap_grad_reduce: bool = True  # DP/ZeRO gradient communication overlapped with backward
    overlap_tp: bool | None = None  # TP collectives overlapped with GEMMs (TE userbuffers); None: the stack's default
    stack: str = "megatron-core"    # software stack profile (hardware_profiles/stacks/)
    # MoE (simulator/perf/moe.py): expert-parallel degree, expert tensor parallelism (None = tp, Megatron-Core's
    # default) and the expert capacity factor (None = dropless). Experts are laid out over each pipeline
    # stage's tp*cp*dp devices as ETP (fastest) x EP x EDP (Megatron-Core MoE parallel folding).
    ep: int = 1
    etp: int | None = None
    capacity_factor: float | None = None
    # The EP all-to-alls of one microbatch run under another microbatch's compute (Megatron-Core
    # --overlap-moe-expert-parallel-comm, Megatron-Bridge moe_a2a_overlap; DeepSeek's DualPipe); None: the stack's.
    overlap_ep: bool | None = None
    # How routed tokens cross the scale-out fabric (DISPATCHERS above); None: the stack's.
    dispatcher: str | None = None
    # Hybrid sharding: ZeRO shards over dp/dp_replicate ranks (a shard group inside a scale-up domain, slice or
    # node group) and the dp_replicate groups all-reduce their shards of the gradients (PyTorch HSDP, torchtitan
    # data_parallel_replicate_degree; MaxText FSDP inside a slice with dcn_data_parallelism across slices;
    # Megatron-Core num_distributed_optimizer_instances). 1: one shard group over every data-parallel rank.
    dp_replicate: int = 1
    # Tile (queries, keys) of a block-sparse attention kernel, forward and backward (MaxText's splash:
    # sa_block_q x sa_block_kv, sa_block_q_dkv x sa_block_kv_dkv), which computes every tile a sliding window
    # touches in full (kernels.block_band_pairs); None: the kernel's default, and the backward the forward's.
    attention_block: tuple[int, int] | None = None
    attention_block_bwd: tuple[int, int] | None = None
    # The loss computed over this many chunks of the tokens, so one chunk's fp32 logits are live at a time
    # (MaxText num_vocab_tiling: "logits tiled along the batch-sequence axis"; memory.memory_per_device).
    loss_chunks: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    @property
    def shard_dp(self) -> int:
        """Data-parallel ranks one ZeRO shard group spans: dp / dp_replicate."""
        return self.dp // self.dp_replicate

    @property
    def expert_tp(self) -> int:
        """Expert tensor-parallel degree: etp, else tp."""
        return self.tp if self.etp is None else self.etp

    @property
    def expert_dp(self) -> int:
        """Replicas of each expert parameter (expert data parallelism): tp*cp*dp / (ep*etp)."""
        return self.tp * self.cp * self.dp // (self.ep * self.expert_tp)

    def with_(self, **kw) -> Layout:
        return replace(self, **kw)


def make_layout(model: ModelSpec, gpus: int, global_batch: int, *, tp: int = 1, pp: int = 1, cp: int = 1,
                micro_batch: int = 1, virtual_stages: int = 1, zero: int = 1, sequence_parallel: bool = False,
                recompute: str = "none", dtype: str = "bf16", flash: bool = True,
                overlap_grad_reduce: bool = True, overlap_tp: bool | None = None, stack: str | None = None,
                ep: int = 1, etp: int | None = None, capacity_factor: float | None = None,
                overlap_ep: bool | None = None, dispatcher: str | None = None, dp_replicate: int = 1,
                attention_block=None, attention_block_bwd=None, loss_chunks: int = 1) -> Layout:
    """Derive DP = gpus / (tp*pp*cp) and check every divisibility rule; errors name the argument."""
    for name, value in (("--gpus", gpus), ("--tp", tp), ("--pp", pp), ("--cp", cp), ("--micro-batch", micro_batch),
                        ("--virtual-stages", virtual_stages), ("--global-batch", global_batch), ("--ep", ep),
                        ("--etp", 1 if etp is None else etp), ("--dp-replicate", dp_replicate),
                        ("--loss-chunks", loss_chunks)):
        if int(value) < 1:
            raise CapsimError(f"must be a positive integer, got {value!r}", where=name)
    if gpus % (tp * pp * cp):
        raise CapsimError(f"{gpus} GPUs are not divisible by tp*pp*cp = {tp}*{pp}*{cp} = {tp * pp * cp}", where="--gpus")
    dp = gpus // (tp * pp * cp)
    if model.heads % tp:
        raise CapsimError(f"heads {model.heads} are not divisible by tp {tp}", where="--tp")
    if model.kv_heads % tp and tp % model.kv_heads:
        raise CapsimError(f"kv-heads {model.kv_heads} and tp {tp} do not divide one another", where="--tp")
    if model.ffn % tp:
        raise CapsimError(f"ffn {model.ffn} is not divisible by tp {tp}", where="--tp")
    # Megatron's account_for_embedding/loss_in_pipeline_split count the embedding and the loss as one
    # layer each, so a layout may have two more (virtual) stages than transformer blocks (Llama 3.1 405B:
    # 126 blocks on PP16 x VP8 = 128, NeMo 26.04)
    if model.layers + 2 < pp * virtual_stages:
        raise CapsimError(f"{model.layers} layers (+ embedding and loss) cannot fill pp*virtual-stages = "
                          f"{pp * virtual_stages} stages", where="--pp" if virtual_stages == 1 else "--virtual-stages")
    if virtual_stages > 1 and pp == 1:
        raise CapsimError("interleaved virtual stages need pp > 1", where="--virtual-stages")
    if model.seq_len % cp:
        raise CapsimError(f"seq-len {model.seq_len} is not divisible by cp {cp}", where="--cp")
    if global_batch % (dp * micro_batch):
        raise CapsimError(f"global batch {global_batch} is not divisible by dp*micro-batch = {dp}*{micro_batch}",
                          where="--global-batch")
    if zero not in (0, 1, 2, 3):
        raise CapsimError(f"expected 0, 1, 2 or 3, got {zero!r}", where="--zero")
    if recompute not in RECOMPUTE:
        raise CapsimError(f"expected one of {', '.join(RECOMPUTE)}, got {recompute!r}", where="--recompute")
    if dtype not in ("bf16", "fp16", "fp8", "fp4"):  # fp4: NVFP4 (step.py, kernels.BYTES)
        raise CapsimError(f"expected bf16, fp16, fp8 or fp4, got {dtype!r}", where="--dtype")
    _check_experts(model, tp, cp, dp, ep, etp, capacity_factor, sequence_parallel)
    attention_block = _tile(attention_block, "--attention-block")
    attention_block_bwd = _tile(attention_block_bwd, "--attention-block-bwd") or attention_block
    if overlap_ep and ep == 1:
        raise CapsimError("overlapping the EP all-to-alls needs expert parallelism (ep > 1)", where="--overlap-ep")
    if dispatcher is not None and dispatcher not in DISPATCHERS:
        raise CapsimError(f"unknown dispatcher {dispatcher!r}; expected one of {', '.join(DISPATCHERS)}",
                          where="--dispatcher")
    from simulator.perf.stacks import DEFAULT_STACK, load_stack

    stack = stack or DEFAULT_STACK
    load_stack(stack)  # an unknown name is an error here, naming the known stacks
    layout = Layout(tp=tp, pp=pp, cp=cp, dp=dp, micro_batch=micro_batch, virtual_stages=virtual_stages, zero=zero,
                    sequence_parallel=sequence_parallel and tp > 1, recompute=recompute, dtype=dtype, flash=flash,
                    overlap_grad_reduce=overlap_grad_reduce, overlap_tp=overlap_tp, stack=stack, ep=ep, etp=etp,
                    capacity_factor=capacity_factor, overlap_ep=None if overlap_ep is None else bool(overlap_ep),
                    dispatcher=dispatcher, dp_replicate=dp_replicate, attention_block=attention_block,
                    attention_block_bwd=attention_block_bwd, loss_chunks=loss_chunks)
    _check_replicas(model, layout)
    return layout


def _tile(value, where: str) -> tuple[int, int] | None:
    """An attention tile as (queries, keys): one size for both, or a pair; None stays None."""
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise CapsimError(f"expected a tile size in tokens or [queries, keys], positive integers, got {value!r}",
                          where=where)
    return pair


def stage_layers(layers: int, pp: int) -> tuple[int, ...]:
    """Transformer blocks per pipeline stage. Even when pp divides the layers; otherwise every stage
    holds ceil(layers/pp) and the missing blocks come off the last and first stages first, which also
    carry the LM head and the embedding (Llama 3 405B: 126 layers on 16 stages = 7, 8 x 14, 7; The
    Llama 3 Herd of Models, 2024, Sec. 3.3.2; BLOOM: 70 on 12 = 5, 6 x 10, 5)."""
    base = -(-layers // pp)
    counts = [base] * pp
    deficit = base * pp - layers
    order = [i for pair in zip(range(pp - 1, -1, -1), range(pp), strict=True) for i in pair]
    for i in order:
        if deficit == 0:
            break
        # a middle stage keeps a block; the end stages may hold none, only the embedding or the LM head
        if counts[i] == base and (counts[i] > 1 or i in (0, pp - 1)):
            counts[i] -= 1
            deficit -= 1
    return tuple(counts)


def _check_experts(model: ModelSpec, tp: int, cp: int, dp: int, ep: int, etp: int | None,
                   capacity_factor: float | None, sequence_parallel: bool) -> None:
    """Megatron-Core's rules for the expert layers (MoE parallel folding, MCore >= 0.10): per pipeline stage
    the tp*cp*dp devices of the dense layers are regrouped as ETP x EP x EDP, so ep*etp must divide
    tp*cp*dp (parallel_state.initialize_model_parallel: expert_data_parallel_size = world / (ETP*EP*PP));
    num_experts % ep == 0 (arguments.py); etp defaults to tp (arguments.py: expert_tensor_parallel_size =
    tensor_model_parallel_size when unset) and must divide the expert width; with TP > 1, expert parallelism
    and expert TP other than TP need sequence parallelism (TransformerConfig: "When using expert parallelism
    and tensor parallelism, sequence parallelism must be used")."""
    if not model.is_moe:
        for name, value, default in (("--ep", ep, 1), ("--etp", etp, None), ("--capacity-factor", capacity_factor, None)):
            if value != default:
                raise CapsimError("needs an MoE model (--experts > 1)", where=name)
        return
    etp_ = tp if etp is None else etp
    if model.num_experts % ep:
        raise CapsimError(f"experts {model.num_experts} are not divisible by ep {ep}", where="--ep")
    if model.expert_ffn % etp_:
        raise CapsimError(f"expert ffn {model.expert_ffn} is not divisible by expert TP {etp_}",
                          where="--etp" if etp is not None else "--tp")
    if model.shared_experts and (model.shared_experts * model.expert_ffn) % tp:
        raise CapsimError(f"shared-expert ffn {model.shared_experts * model.expert_ffn} is not divisible by tp {tp}",
                          where="--tp")
    if (tp * cp * dp) % (ep * etp_):
        hint = "; --etp defaults to --tp" if etp is None and tp > 1 else ""
        raise CapsimError(f"ep*etp = {ep}*{etp_} must divide tp*cp*dp = {tp}*{cp}*{dp} = {tp * cp * dp} (the devices of "
                          f"a pipeline stage are regrouped as expert TP x EP x expert DP{hint})", where="--ep")
    if tp > 1 and (ep > 1 or etp_ != tp) and not sequence_parallel:
        raise CapsimError("MoE with tp > 1 and expert parallelism (or expert TP other than tp) needs sequence "
                          "parallelism", where="--sequence-parallel")
    if capacity_factor is not None and not capacity_factor > 0:
        raise CapsimError(f"must be positive, got {capacity_factor!r}", where="--capacity-factor")


def _check_replicas(model: ModelSpec, lay: Layout) -> None:
    """Hybrid sharding splits the data-parallel ranks into dp_replicate equal shard groups, and so the
    replicas of each expert parameter (layout.expert_dp) too; it needs a ZeRO stage to shard anything."""
    r = lay.dp_replicate
    if r == 1:
        return
    if lay.dp % r:
        raise CapsimError(f"dp = {lay.dp} is not divisible by dp-replicate {r}", where="--dp-replicate")
    if lay.zero == 0:
        raise CapsimError("replica groups need ZeRO sharding inside each (zero >= 1); with zero 0 every rank "
                          "already holds a full replica", where="--dp-replicate")
    if model.is_moe and lay.expert_dp % r:
        raise CapsimError(f"the {lay.expert_dp} replicas of each expert (tp*cp*dp / (ep*etp)) are not divisible by "
                          f"dp-replicate {r}", where="--dp-replicate")


def bubble_fraction(pp: int, virtual_stages: int, microbatches: int) -> float:
    """Pipeline bubble relative to the ideal time (Narayanan et al. SC'21): (p-1)/(v*m)."""
    return (pp - 1) / (virtual_stages * microbatches)
