"""Software stacks as named profiles (hardware_profiles/stacks/<name>.yaml).

The same model on the same GPUs trains at different speeds under Megatron-Core, PyTorch FSDP or JAX:
they launch different attention kernels, hide a different share of their communication, pay a
different host cost per kernel and run different optimizers. A stack profile holds those
documented parameters, each with its source, and one fitted number, `efficiency`: the share of the
modelled kernel time that the stack achieves end to end (allocator, stragglers, synchronisation,
kernels the model does not list). `efficiency` is fitted only on the named calibration set
(workloads/validation/published_runs.yaml) by `capsim validate-perf --fit`, which writes it with the
cross-validated error beside it to workloads/validation/calibration_fit.yaml (simulator/perf/calibration.py);
a stack with no calibration rows takes the efficiency pooled over all of them. The fit also sets one
number shared by the eager stacks, `moe_host_us_per_expert` (below)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache, lru_cache

from simulator.errors import CapsimError
from simulator.profiles import profiles_dir, workloads_dir
from simulator.yaml_file import load_data_yaml

DEFAULT_STACK = "megatron-core"
ATTENTION_KERNELS = ("unfused", "fa2", "fa3", "cudnn", "splash", "triton")


@dataclass(frozen=True)
class Stack:
    name: str
    # attention kernel generation by device generation ("default" for the rest): fa2, fa3, cudnn, splash, unfused
    attention: tuple[tuple[str, str], ...]
    # host (CPU) time to launch one layer's kernels, forward, in microseconds: a layer never runs faster
    # than its launches (backward launches twice as many)
    host_us_per_layer: float
    # share of the data-parallel / FSDP traffic that stays exposed even when it overlaps the backward
    exposed_dp_share: float
    # whether tensor-parallel collectives overlap their neighbouring GEMMs by default (TE userbuffers)
    overlap_tp: bool
    # memory traffic of the optimizer step per local parameter (bytes)
    optimizer_bytes_per_param: float
    # fixed time per step outside the layers (data loading, logging, loss sync), seconds
    step_overhead_s: float
    efficiency: float = 1.0
    # a stack whose efficiency is stated, not fitted (megatron-lm-2021: the kernel model's own reference)
    efficiency_fixed: bool = False
    # MoE defaults a layout may override: EP all-to-alls overlapped with another microbatch's compute, and
    # how routed tokens cross the scale-out fabric (layout.DISPATCHERS)
    overlap_ep: bool = False
    dispatcher: str = "alltoall"
    # host time per local expert of an MoE layer's forward (backward: twice) that stays exposed: the
    # alltoall token dispatcher synchronises with the device for the split sizes, so the host cannot run
    # ahead through the layer, and the grouped expert MLP is issued expert by expert. Fitted on the MoE rows
    # after the efficiencies (calibration.py); 0 for stacks that compile the whole step (no host launches).
    moe_host_us_per_expert: float = 0.0
    # without overlap_tp, whether column-parallel linears still issue their backward TP collectives
    # asynchronously behind their gradient GEMMs (Megatron-Core / Transformer Engine; step._tp_comm)
    async_tp_backward: bool = False
    # what `recompute: selective` re-runs in the backward pass (SELECTIVE_RECOMPUTE; step.selective_recompute)
    selective_recompute: str = "attention"

    def attention_kernel(self, generation: str) -> str:
        table = dict(self.attention)
        return table.get(generation, table.get("default", "fa2"))


def stacks_dir():
    return profiles_dir() / "stacks"


@lru_cache(maxsize=1)
def list_stacks() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in stacks_dir().glob("*.yaml")))


def _number(data: dict, key: str, source: str, low: float, high: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise CapsimError(f"expected a number in [{low}, {high}], got {value!r}", source=source, where=key)
    return float(value)


# What a stack's selective activation checkpointing re-runs in the backward pass:
# attention: the attention core, fused or not (Megatron-LM's selective recompute; Megatron-Core's
#   recompute_modules core_attn, which checkpoints the fused kernel too);
# alternate_linears: every second linear of the block in forward order, and every op its policy does not save
#   (norms, activations, rotary, casts), the attention kernel's output being saved (torchtitan's op-level SAC);
# non_matmul: everything but the projections' outputs, i.e. the attention kernel and the elementwise ops
#   (JAX's checkpoint_dots_with_no_batch_dims, MaxText's remat_policy minimal).
SELECTIVE_RECOMPUTE = ("attention", "alternate_linears", "non_matmul")


def _choice(data: dict, key: str, choices: tuple[str, ...], default: str, source: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise CapsimError(f"expected one of {', '.join(choices)}, got {value!r}", source=source, where=key)
    return value


def _dispatcher(data: dict, source: str) -> str:
    from simulator.perf.layout import DISPATCHERS

    return _choice(data, "dispatcher", DISPATCHERS, "alltoall", source)


def fit_file():
    return workloads_dir() / "validation" / "calibration_fit.yaml"


@cache
def fitted_efficiencies() -> tuple[dict, float, float]:
    """({stack: efficiency}, pooled efficiency, MoE host us per local expert) from the calibration fit;
    ({}, 1.0, 0.0) before any fit."""
    path = fit_file()
    if not path.is_file():
        return {}, 1.0, 0.0
    with path.open() as fh:
        data = load_data_yaml(fh) or {}
    stacks = {k: float(v["efficiency"]) for k, v in (data.get("stacks") or {}).items()}
    return stacks, float(data.get("pooled_efficiency", 1.0)), float(data.get("moe_host_us_per_expert", 0.0))


# Set only while the calibration fit tries parameters: ({stack: efficiency}, default for the rest, MoE host us).
_trial: tuple[dict, float, float] | None = None


@contextmanager
def trial_efficiencies(per_stack: dict, default: float, moe_host_us: float | None = None):
    """Price every stack at these efficiencies (and MoE host time per expert; None: the fitted one)
    inside the block (the calibration fit's trials)."""
    global _trial
    moe_us = fitted_efficiencies()[2] if moe_host_us is None else float(moe_host_us)
    previous, _trial = _trial, (dict(per_stack), float(default), moe_us)
    try:
        yield
    finally:
        _trial = previous


def load_stack(name: str | None) -> Stack:
    """The stack profile `name` (None = the default stack) with its fitted efficiency."""
    base = _stack_file(name or DEFAULT_STACK)
    if base.efficiency_fixed:
        return base
    table, default, moe_us = _trial if _trial is not None else fitted_efficiencies()
    efficiency = table.get(base.name, default)
    moe_us = moe_us if base.host_us_per_layer > 0 else 0.0  # a compiled step issues no per-expert launches
    if efficiency == base.efficiency and moe_us == base.moe_host_us_per_expert:
        return base
    return _fitted(base, efficiency, moe_us)


@lru_cache(maxsize=1024)
def _fitted(base: Stack, efficiency: float, moe_us: float) -> Stack:
    return replace(base, efficiency=efficiency, moe_host_us_per_expert=moe_us)


@cache
def _stack_file(name: str) -> Stack:
    """The documented (unfitted) parameters of one stack; unknown names list the known ones."""
    path = stacks_dir() / f"{name}.yaml"
    if not path.is_file():
        raise CapsimError(f"unknown stack {name!r}; known stacks: {', '.join(list_stacks())}", where="stack")
    with path.open() as fh:
        data = load_data_yaml(fh) or {}
    src = str(path)
    attention = data.get("attention")
    if not isinstance(attention, dict) or not attention:
        raise CapsimError("expected a mapping of device generation -> attention kernel", source=src, where="attention")
    bad = [k for k in attention.values() if k not in ATTENTION_KERNELS]
    if bad:
        raise CapsimError(f"unknown attention kernel {bad[0]!r}; expected one of {', '.join(ATTENTION_KERNELS)}",
                          source=src, where="attention")
    return Stack(
        name=name, attention=tuple(sorted(attention.items())),
        host_us_per_layer=_number(data, "host_us_per_layer", src, 0, 10_000),
        exposed_dp_share=_number(data, "exposed_dp_share", src, 0, 1),
        overlap_tp=bool(data.get("overlap_tp", False)),
        async_tp_backward=bool(data.get("async_tp_backward", False)),
        selective_recompute=_choice(data, "selective_recompute", SELECTIVE_RECOMPUTE, "attention", src),
        overlap_ep=bool(data.get("overlap_ep", False)),
        dispatcher=_dispatcher(data, src),
        optimizer_bytes_per_param=_number(data, "optimizer_bytes_per_param", src, 0, 1000),
        step_overhead_s=_number(data, "step_overhead_s", src, 0, 3600),
        efficiency=_number(data, "efficiency", src, 0.05, 2.0) if "efficiency" in data else 1.0,
        efficiency_fixed="efficiency" in data,
    )
