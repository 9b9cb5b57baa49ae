"""Public entry points: predict one training configuration; training time of a job for the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from simulator.errors import CapsimError
from simulator.perf.layout import Layout, make_layout
from simulator.perf.memory import MemoryBreakdown, memory_per_device
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.step import StepBreakdown, training_step


@dataclass(frozen=True)
class TrainingPrediction:
    device: str
    gpus: int
    layout: Layout
    global_batch: int
    step_time_s: float
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    mfu: float
    memory_per_device_gib: float
    fits: bool
    breakdown: StepBreakdown
    memory: MemoryBreakdown

    def as_dict(self) -> dict:
        b = self.breakdown
        return {
            "device": self.device, "gpus": self.gpus, "global_batch": self.global_batch,
            "step_time_s": self.step_time_s, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "model_tflops_per_gpu": self.model_tflops_per_gpu, "mfu": self.mfu,
            "memory_per_device_gib": self.memory_per_device_gib, "fits": self.fits,
            "layout": asdict(self.layout),
            "breakdown": {"compute_s": b.compute_s, "exposed_comm_s": b.exposed_comm_s, "tp_comm_s": b.tp_comm_s,
                          "cp_comm_s": b.cp_comm_s, "pp_comm_s": b.pp_comm_s, "dp_comm_s": b.dp_comm_s,
                          "bubble_s": b.bubble_s, "optimizer_s": b.optimizer_s,
                          "scale_out_comm_s": b.scale_out_comm_s, "ep_comm_s": b.ep_comm_s},
            "memory": {**asdict(self.memory), "total_gib": self.memory.total_gib},
        }


def _as_model(model: ModelSpec | dict) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, dict):
        return ModelSpec.from_dict(model)
    raise CapsimError(f"expected a ModelSpec or a mapping, got {type(model).__name__}", where="model")


def predict_training(device: str, model: ModelSpec | dict, gpus: int, global_batch: int, **layout) -> TrainingPrediction:
    """Step time, throughput, MFU and memory of one training configuration.

    layout keywords: tp, pp, cp, micro_batch, virtual_stages, zero, sequence_parallel, recompute, dtype,
    flash, overlap_grad_reduce, overlap_tp, and for MoE models ep, etp, capacity_factor, overlap_ep, dispatcher (see
    simulator.perf.layout.make_layout and simulator.perf.moe)."""
    m = _as_model(model)
    prof = load_profile(device)
    lay = make_layout(m, gpus, global_batch, **layout)
    if lay.dtype == "fp4" and not prof.peak_tflops.get("fp4"):
        # the NVFP4 training recipe multiplies in FP4 (arXiv 2509.25149); weight-only FP4 is a serving technique
        raise CapsimError(f"NVFP4 training needs FP4 tensor cores: {device} has none (fp4 peak in its profile)",
                          where="--dtype")
    return _predict(device, m, lay, global_batch, prof.peak(lay.dtype), prof.memory_gib)


def _predict(device: str, m: ModelSpec, lay: Layout, global_batch: int, peak: float, mem_gib: float) -> TrainingPrediction:
    br = training_step(device, m, lay, global_batch)
    mem = memory_per_device(m, lay)
    step = br.step_time_s
    gpus = lay.gpus
    tflops = global_batch * m.training_flops_per_seq() / step / gpus / 1e12
    return TrainingPrediction(
        device=device, gpus=gpus, layout=lay, global_batch=global_batch, step_time_s=step,
        tokens_per_s_per_gpu=global_batch * m.seq_len / step / gpus, model_tflops_per_gpu=tflops,
        mfu=tflops / peak, memory_per_device_gib=mem.total_gib, fits=mem.total_gib <= mem_gib,
        breakdown=br, memory=mem)


def default_layout(device: str, model: ModelSpec, gpus: int, global_batch: int) -> Layout:
    """TP = the largest divisor of heads <= min(8, scale-up domain, gpus) that divides gpus; PP = 1,
    raised (dividing gpus/TP; even splits of the layers first) until the memory fits; DP = the rest. Selective recompute
    is the modern default; with no fitting PP, full recompute and ZeRO-1 at the deepest pipeline.
    An MoE model shards its experts: EP = the largest divisor of the experts that fits the scale-up
    domain and divides a stage's TP x DP devices, expert TP 1, and TP 1 tried first (the Megatron-Bridge
    MoE recipes' choice: "prefer EP over TP for the expert layer")."""
    prof = load_profile(device)
    cap = min(8, prof.scale_up_domain, gpus)
    tp_max = max(t for t in range(1, cap + 1) if model.heads % t == 0 and gpus % t == 0 and model.ffn % t == 0
                 and (model.kv_heads % t == 0 or t % model.kv_heads == 0))
    tps = (1, tp_max) if model.is_moe and tp_max > 1 else (tp_max,)
    last = None
    for recompute in ("selective", "full"):
        for tp in tps:
            for pp in _pipeline_depths(model.layers, gpus // tp):
                dp = gpus // (tp * pp)
                batch = max(global_batch - global_batch % dp, dp)
                lay = make_layout(model, gpus, batch, tp=tp, pp=pp, micro_batch=1, zero=1,
                                  sequence_parallel=tp > 1, recompute=recompute,
                                  **_expert_layout(model, tp * dp, prof.scale_up_domain))
                last = lay
                if memory_per_device(model, lay).total_gib <= prof.memory_gib:
                    return lay
    return last


def _pipeline_depths(layers: int, devices: int) -> list[int]:
    """Pipeline depths that divide the devices, shallowest first: those that split the layers evenly, then
    the uneven ones (stage_layers; DeepSeek-V3's 61 layers split evenly at no depth but 1), up to two more
    stages than layers (the embedding and the loss as stages of their own)."""
    depths = [pp for pp in range(1, min(devices, layers + 2) + 1) if devices % pp == 0]
    return sorted(depths, key=lambda pp: (layers % pp != 0, pp))


def _expert_layout(model: ModelSpec, stage_devices: int, domain: int) -> dict:
    """ep and etp for the default layout: experts sharded over as many devices of a stage as one
    scale-up domain holds (nothing for a dense model)."""
    if not model.is_moe:
        return {}
    ep = max(e for e in range(1, min(domain, stage_devices) + 1)
             if model.num_experts % e == 0 and stage_devices % e == 0)
    return {"ep": ep, "etp": 1} if ep > 1 else {}


@lru_cache(maxsize=4096)
def _job_time_and_traffic(device: str, model: ModelSpec, gpus: int, tokens: float | None, steps: int | None,
                 layout_items: tuple | None, global_batch: int) -> tuple[float, float]:
    """(seconds, share of them that is traffic between nodes at full bandwidth)."""
    prof = load_profile(device)
    if layout_items is None:
        lay = default_layout(device, model, gpus, global_batch)
    else:
        lay = make_layout(model, gpus, global_batch, **dict(layout_items))
    batch = (global_batch // (lay.dp * lay.micro_batch)) * lay.dp * lay.micro_batch or lay.dp * lay.micro_batch
    pred = _predict(device, model, lay, batch, prof.peak(lay.dtype), prof.memory_gib)
    if steps is None:
        steps = tokens / (batch * model.seq_len)
    return float(steps * pred.step_time_s), min(1.0, pred.breakdown.scale_out_comm_s / pred.step_time_s)


def job_runtime(device: str, model: ModelSpec | dict, gpus: int, tokens: float | None = None,
                steps: int | None = None, layout: dict | None = None, global_batch: int | None = None) -> float:
    """Seconds to train `model` on `gpus` devices for a token budget or a number of steps.

    layout: make_layout keywords (tp, pp, cp, micro_batch, ...); None picks default_layout. global_batch
    (sequences) defaults to ~4M tokens per step rounded to the data-parallel width. Cached."""
    return _training_job(device, model, gpus, tokens, steps, layout, global_batch)[0]


def job_comm_fraction(device: str, model: ModelSpec | dict, gpus: int, tokens: float | None = None,
                      steps: int | None = None, layout: dict | None = None, global_batch: int | None = None) -> float:
    """The share of that job's run time that its data-parallel and pipeline traffic would take at the
    full scale-out bandwidth (hidden behind compute or not): its demand on a contended fabric."""
    return _training_job(device, model, gpus, tokens, steps, layout, global_batch)[1]


def _training_job(device, model, gpus, tokens, steps, layout, global_batch) -> tuple[float, float]:
    if (tokens is None) == (steps is None):
        raise CapsimError("give exactly one of tokens or steps", where="job_runtime")
    if int(gpus) < 1:
        raise CapsimError(f"must be a positive integer, got {gpus!r}", where="gpus")
    m = _as_model(model)
    if global_batch is None:
        global_batch = max(1, round(4 * 2**20 / m.seq_len))
    items = tuple(sorted(layout.items())) if layout else None
    return _job_time_and_traffic(device, m, int(gpus), None if tokens is None else float(tokens), steps, items, int(global_batch))
