"""Predicted vs published end-to-end runs, read from a YAML `runs:` list in the schema of
workloads/validation/published_runs.yaml (the named calibration set; `capsim validate-perf --runs FILE`
takes any file in that schema).

Each training row is predicted with its published layout and stack and compared in its own metric:
tokens/s per device as is, TFLOP/s or MFU after counting the predicted throughput with the run's own FLOP
convention (see the YAML header). Serving rows (`kind: serving`) go to simulator.perf.serving_validation.
A row the model cannot express is kept with its reason instead of a prediction, so one bad row never
hides the others."""

from __future__ import annotations

import inspect
import math
import re
import statistics
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.band import error_band
from simulator.perf.layout import make_layout
from simulator.perf.maxtext_row import read_maxtext_keys
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.row_fields import (
    PARALLEL_NAMES,
    expected,
    name_spellings,
    published_value,
    resolve_metric,
    signed_error,
    speed_ratio,
    whole_number,
)
from simulator.perf.stacks import list_stacks
from simulator.perf.validate import eq3_flops

# A published run whose stack is not named, or has no profile (hardware_profiles/stacks/generic.yaml).
UNKNOWN_STACK = "generic"
# Names under which published tables refer to the stacks that have a profile here.
STACK_ALIASES = {
    "megatron": "megatron-core", "megatron-lm": "megatron-core", "mcore": "megatron-core",
    "nemo-megatron": "nemo", "nemo2": "nemo", "pytorch-fsdp": "torchtitan", "fsdp": "torchtitan",
    "composer": "llm-foundry", "mosaicml": "llm-foundry", "megatron-deepspeed": "deepspeed",
    "hai-llm": "deepseek", "deepseek-hai-llm": "deepseek", "dualpipe": "deepseek",
    "jax": "maxtext", "pax": "jax-pax", "praxis": "jax-pax", "t5x": "jax-pax", "paxml": "jax-pax",
    "fsdp2": "torchtitan", "pytorch": "torchtitan", "llmfoundry": "llm-foundry", "mosaic": "llm-foundry",
    # NeMo's LLM recipes and performance tables moved to Megatron-Bridge from NeMo 25.09 on
    "megatron-bridge": "nemo", "mbridge": "nemo",
}
LAYOUT_KEYS = tuple(p for p in inspect.signature(make_layout).parameters if p not in ("model", "gpus", "global_batch"))
# Names published tables give devices that have a profile here.
DEVICE_ALIASES = {
    "a100": "a100-sxm-80gb", "a100-80gb": "a100-sxm-80gb", "a100-sxm4-80gb": "a100-sxm-80gb",
    "a100-40gb": "a100-sxm-40gb", "a100-sxm4-40gb": "a100-sxm-40gb", "a800": "a800-sxm-80gb",
    "h100": "h100-sxm", "h100-80gb": "h100-sxm", "h100-sxm5": "h100-sxm", "h100-sxm5-80gb": "h100-sxm",
    "h100-96gb": "h100-hbm2e-500w", "h100-hbm2e": "h100-hbm2e-500w", "h100-500w": "h100-hbm2e-500w",
    "h100-grand-teton": "h100-hbm2e-500w", "h800": "h800-sxm", "h200": "h200-sxm", "h200-141gb": "h200-sxm", "b200-sxm": "b200", "gb200-nvl72": "gb200",
    "v100": "v100-sxm-32gb", "tpu-v5-lite": "tpu-v5e", "v5e": "tpu-v5e", "v5p": "tpu-v5p", "v4": "tpu-v4",
    "v6e": "tpu-v6e", "trillium": "tpu-v6e", "tpu-trillium": "tpu-v6e",
    "ironwood": "tpu7x", "tpu-ironwood": "tpu7x", "v7x": "tpu7x", "tpu-v7x": "tpu7x", "tpu-v7": "tpu7x",
    "h200-sxm-141gb": "h200-sxm", "h200-141gb-sxm": "h200-sxm", "a100-80gb-sxm": "a100-sxm-80gb",
    "a100-40gb-sxm": "a100-sxm-40gb", "mi300x-oam": "mi300x",
    # as nvidia-smi prints them ("NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-32GB")
    "h100-80gb-hbm3": "h100-sxm", "v100-sxm2-32gb": "v100-sxm-32gb", "gaudi-2": "gaudi2",
}
# Cloud TPU slice names as tpu-recipes, MaxText and GKE write them (`v5p-1024`, `tpu-v6e-256`): the generation
# and the slice size, which counts TensorCores on v4 and v5p (two per chip: "v5p-1024 for 512 v5p chips",
# tpu-recipes training/v5p/DeepSeek3-671B-MaxText/README.md) and chips on v5e and v6e (one TensorCore each;
# Cloud TPU docs, "TPU versions").
TPU_SLICE = re.compile(r"^(?:tpu-?)?(v4|v5p|v5e|v5litepod|v6e)-(\d+)$")
TPU_SLICE_DEVICES = {"v4": ("tpu-v4", 2), "v5p": ("tpu-v5p", 2), "v5e": ("tpu-v5e", 1), "v5litepod": ("tpu-v5e", 1),
                     "v6e": ("tpu-v6e", 1)}
# ... or by topology, which counts chips ("Topology of TPU in chips", Cloud TPU API AcceleratorConfig), as
# tpu-recipes write TPU7x slices (`tpu7x-4x4x4`: 64 chips) and GKE writes every generation's
TPU_GENERATIONS = {**{gen: device for gen, (device, _) in TPU_SLICE_DEVICES.items()}, "7x": "tpu7x", "v7x": "tpu7x"}
TPU_TOPOLOGY = re.compile(rf"^(?:tpu-?)?({'|'.join(TPU_GENERATIONS)})-(\d+)x(\d+)(?:x(\d+))?$")
RECOMPUTE_FLAGS = {True: "full", False: "none"}
# Model keys under their Hugging Face config.json / Megatron argument names.
MODEL_ALIASES = {"experts": "num_experts", "num_hidden_layers": "layers", "num_layers": "layers", "n_layers": "layers",
                 "hidden_size": "hidden", "dim": "hidden", "num_attention_heads": "heads", "n_heads": "heads",
                 "num_key_value_heads": "kv_heads", "num_query_groups": "kv_heads", "n_kv_heads": "kv_heads",
                 "kv_channels": "head_dim", "intermediate_size": "ffn", "ffn_hidden_size": "ffn",
                 "vocab_size": "vocab", "seq_length": "seq_len", "n_routed_experts": "num_experts",
                 "num_experts_per_tok": "top_k", "moe_router_topk": "top_k", "n_activated_experts": "top_k",
                 "moe_intermediate_size": "moe_ffn", "moe_ffn_hidden_size": "moe_ffn", "moe_inter_dim": "moe_ffn",
                 "n_shared_experts": "shared_experts", "first_k_dense_replace": "first_dense_layers",
                 "n_dense_layers": "first_dense_layers",
                 # MLA: HF config.json's qk_nope_head_dim and Megatron's qk_head_dim are ModelSpec's head_dim,
                 # Megatron's qk_pos_emb_head_dim its qk_rope_head_dim (q_lora_rank, kv_lora_rank,
                 # qk_rope_head_dim and v_head_dim have the same names in both)
                 "qk_nope_head_dim": "head_dim", "qk_head_dim": "head_dim", "qk_pos_emb_head_dim": "qk_rope_head_dim",
                 # sliding-window attention: HF Gemma 3's sliding_window_pattern (6: every 6th layer global)
                 # is ModelSpec's global_every; HF layer_types lists are converted by _window_keys
                 "sliding_window_pattern": "global_every"}
# Model keys accepted and ignored, each with why (noted on the row): GPT-OSS's attention sinks are one
# learned logit per head added to the softmax denominator (HF GptOssAttention `sinks`), no measurable cost.
IGNORED_MODEL_KEYS = {"attention_sinks": "attention sinks (one learned logit per head) cost nothing modelled",
                      "sinks": "attention sinks (one learned logit per head) cost nothing modelled"}
# Counts that must be positive whole numbers (a string or a fraction there is a typo, named as such).
POSITIVE_MODEL_KEYS = frozenset({"layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "seq_len", "num_experts",
                                 "top_k", "head_dim", "moe_ffn", "q_lora_rank", "kv_lora_rank", "v_head_dim",
                                 "sliding_window", "global_every"})
POSITIVE_LAYOUT_KEYS = frozenset({"tp", "pp", "cp", "ep", "etp", "virtual_stages", "micro_batch", "dp_replicate",
                                  "loss_chunks"})
REQUIRED_MODEL_KEYS = ("layers", "hidden", "heads", "vocab")  # and seq_len for a training row (run_model)
# Layout keys under Megatron / NeMo argument names and table headers.
LAYOUT_ALIASES = {**PARALLEL_NAMES, "context_parallel_size": "cp", "cp_size": "cp", "context_parallel": "cp",
                  "expert_model_parallel_size": "ep", "ep_size": "ep", "expert_parallel": "ep",
                  "expert_parallel_size": "ep", "expert_tensor_parallel_size": "etp", "vp": "virtual_stages",
                  "vpp": "virtual_stages", "virtual_pipeline_model_parallel_size": "virtual_stages",
                  "virtual_pipeline": "virtual_stages", "micro_batch_size": "micro_batch", "mbs": "micro_batch",
                  "recompute_granularity": "recompute", "activation_checkpointing": "recompute",
                  "moe_a2a_overlap": "overlap_ep", "overlap_moe_expert_parallel_comm": "overlap_ep",
                  "tp_comm_overlap": "overlap_tp", "moe_flex_dispatcher_backend": "dispatcher",
                  "data_parallel_replicate_degree": "dp_replicate", "num_distributed_optimizer_instances": "dp_replicate",
                  "sequence_parallelism": "sequence_parallel", "num_vocab_tiling": "loss_chunks"}
# Top-level keys under the names performance tables give them.
RUN_ALIASES = {"num_gpus": "gpus", "global_batch_size": "global_batch", "gbs": "global_batch", "chips": "gpus",
               "num_chips": "gpus", "devices": "gpus", "seq_length": "seq_len", "sequence_length": "seq_len",
               "max_target_length": "seq_len"}
# Precisions as published tables write them: NeMo's FP8 recipes (current scaling, MXFP8 blocks, delayed
# scaling) are all priced at the FP8 GEMM rate; NVFP4 under its spellings is fp4; MXFP4 (32-element
# blocks with an E8M0 scale, 0.53125 B per element against NVFP4's 0.5625) is priced as fp4, at the same
# FP4 tensor-core rate and 6% more bytes; bfloat16 / float16 by their short names. An alias's row notes
# "dtype X priced as Y".
DTYPE_ALIASES = {"fp8-cs": "fp8", "fp8_cs": "fp8", "fp8-mx": "fp8", "fp8_mx": "fp8", "mxfp8": "fp8",
                 "fp8-ds": "fp8", "fp8_ds": "fp8", "fp8-delayed": "fp8", "fp8-sc": "fp8", "fp8_sc": "fp8",
                 "nvfp4": "fp4", "fp4_nv": "fp4", "nv-fp4": "fp4", "mxfp4": "fp4", "fp4-mx": "fp4", "fp4_mx": "fp4",
                 "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                 # vLLM's --kv-cache-dtype values and torch's names: both FP8 formats are one byte
                 "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "fp8-e4m3": "fp8", "e4m3": "fp8", "float8_e4m3fn": "fp8",
                 # PyTorch Lightning / NeMo `precision`, MosaicML Composer's, Transformer Engine's FP8 recipe names
                 "bf16-mixed": "bf16", "bf16_mixed": "bf16", "bf16-true": "bf16", "16-mixed": "fp16",
                 "fp16-mixed": "fp16", "amp_bf16": "bf16", "amp_fp16": "fp16", "amp_fp8": "fp8",
                 "fp8-hybrid": "fp8", "fp8_hybrid": "fp8", "hybrid": "fp8", "fp8-mixed": "fp8"}


@dataclass(frozen=True)
class PublishedRow:
    name: str
    device: str
    metric: str
    published: float
    predicted: float | None
    confidence: str = ""
    in_summary: bool = True
    stack: str = ""
    family: str = ""
    kind: str = "training"
    reason: str | None = None  # why the model cannot express this row (predicted is None)
    notes: str = ""            # what the prediction ignored or assumed (unknown layout keys, stack alias)
    # what a training prediction's error band is looked up by: band.error_band's keyword arguments (device,
    # stack, params_b, dtype, moe); the band is only computed when asked for (the fit evaluates rows many times)
    band_key: dict | None = None

    @property
    def error(self) -> float | None:
        """Relative to published, positive = optimistic (a time under-predicted counts as optimistic too)."""
        if self.predicted is None:
            return None
        return signed_error(self.published, self.predicted, self.metric)

    @cached_property
    def band(self) -> tuple[float, float] | None:
        """The error band `capsim predict` prints beside this prediction: the nearest calibration rows'
        cross-validated errors, (low, high), as speed ratios - 1; None without a fit or a prediction."""
        if self.predicted is None or self.band_key is None:
            return None
        band = error_band(**self.band_key)
        return (band.low_error, band.high_error) if band else None

    @property
    def in_band(self) -> bool | None:
        """Whether the published figure lies within the prediction's error band (None without a band)."""
        band = self.band
        if band is None:
            return None
        speed_error = speed_ratio(self.published, self.predicted, self.metric) - 1.0
        return band[0] - 1e-9 <= speed_error <= band[1] + 1e-9


def default_table() -> Path:
    return Path(__file__).resolve().parents[2] / "workloads" / "validation" / "published_runs.yaml"


def flops_per_seq(m: ModelSpec, convention: str) -> float:
    """Model FLOPs of one sequence under a run's published convention."""
    if convention == "6n_attn":
        return m.training_flops_per_seq()
    if convention == "6n_attn_causal":
        # only the score tiles a causal mask keeps: Megatron-LM's and NeMo's formulas since 2025, MaxText's
        # (maxtext_utils.py `causal_attention_flops = noncausal_attention_flops / 2`)
        return 6.0 * m.active_params() * m.seq_len + m.attention_flops_per_seq() / 2
    if convention == "6n":  # parameters only, no attention term
        return 6.0 * m.active_params() * m.seq_len
    if convention == "megatron_eq3":
        return eq3_flops(1, m.seq_len, m.layers, m.hidden, m.vocab)
    raise CapsimError(f"unknown FLOP convention {convention!r}; expected 6n_attn, 6n_attn_causal, 6n or megatron_eq3",
                      where="flops")


def resolve_stack(name) -> tuple[str, str]:
    """(stack profile, note) for a row's `stack`: aliases mapped; absent or without a profile, the
    `generic` stack (Megatron-Core's structure at the pooled efficiency: a run of a stack the calibration
    set does not hold is what leave-one-stack-out cross-validation measures), with a note saying so."""
    if name is None or name == "":
        return UNKNOWN_STACK, f"no stack given: priced as {UNKNOWN_STACK}"
    key = str(name).strip().lower()
    if key in list_stacks():
        return key, ""
    for candidate in name_spellings(key):
        if candidate in list_stacks() or candidate in STACK_ALIASES:
            stack = STACK_ALIASES.get(candidate, candidate)
            return stack, f"stack {name!r} priced as {stack}"
    return UNKNOWN_STACK, f"no profile for stack {name!r}: priced as {UNKNOWN_STACK}"


def resolve_device(name) -> str:
    """A row's device: a profile id, or a name tables commonly use for one (h100, a100-40gb, v5e, ...)."""
    from simulator.profiles import list_devices

    key = str(name).strip().lower()
    if key in list_devices():
        return key
    if key in DEVICE_ALIASES:
        return DEVICE_ALIASES[key]
    # "DGX-H100", "H100 SXM", "A100 80GB", "TPU v5p", "GB200 NVL72": one spelling, the system prefix off
    spelled = _dashed(key)
    for prefix in ("nvidia-", "tesla-", "dgx-", "hgx-", "google-", "amd-", "intel-", "cloud-"):
        spelled = spelled.removeprefix(prefix)
    for candidate in (spelled, spelled.removesuffix("-nvl72"), spelled.removesuffix("-sxm")):
        if candidate in list_devices():
            return candidate
        if candidate in DEVICE_ALIASES:
            return DEVICE_ALIASES[candidate]
    return key


def _dashed(name) -> str:
    """A device name in one spelling: lower case, words joined by single dashes ("TPU v5p_1024" -> tpu-v5p-1024)."""
    return "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def tpu_slice(name) -> tuple[str, int] | None:
    """(device profile, chips) of a Cloud TPU slice name (`v5p-1024` -> tpu-v5p, 512 chips) or topology
    (`tpu7x-4x4x4` -> tpu7x, 64 chips); None otherwise."""
    topology = TPU_TOPOLOGY.match(_dashed(name))
    if topology:
        chips = math.prod(int(d) for d in topology.groups()[1:] if d is not None)
        return (TPU_GENERATIONS[topology.group(1)], chips) if chips >= 1 else None
    match = TPU_SLICE.match(_dashed(name))
    if not match or int(match.group(2)) < 1:
        return None
    device, cores_per_chip = TPU_SLICE_DEVICES[match.group(1)]
    if int(match.group(2)) % cores_per_chip:
        return None
    return device, int(match.group(2)) // cores_per_chip


def run_model(run: dict, notes: list[str] | None = None, training: bool = False) -> ModelSpec:
    """A row's ModelSpec: a zoo name (with an optional `seq_len` beside it), a mapping of its fields
    (`experts` for num_experts), or a mapping that names a zoo model (`zoo`, or a `name` the zoo holds) and
    overrides some of its fields ({name: llama3-8b, seq_len: 8192}); keys the model does not know are noted,
    not refused."""
    raw = run.get("model")
    if isinstance(raw, str):
        spec = _zoo_spec(raw)
        return replace(spec, seq_len=whole_number(run["seq_len"], "seq_len")) if run.get("seq_len") else spec
    if not isinstance(raw, dict):
        raise CapsimError("expected a model mapping {layers, hidden, heads, ...} or a zoo name", where="model")
    data = dict(raw)
    zoo_name = data.pop("zoo", None)
    if zoo_name is None and _is_zoo_name(data.get("name")):  # else `name` only describes the shape
        zoo_name = data.pop("name")
    # the schema's MoE key name (experts) and config.json / Megatron names map onto ModelSpec's
    for alias, key in MODEL_ALIASES.items():
        if alias in data and key not in data:
            data[key] = data.pop(alias)
    _window_keys(data, notes)
    if data.get("seq_len") is None and run.get("seq_len"):
        data["seq_len"] = run["seq_len"]
    if zoo_name is not None:  # the zoo entry's fields under the row's own, in whatever names it gave them
        data = {**{k: v for k, v in asdict(_zoo_spec(str(zoo_name))).items() if k != "name"}, **data}
    missing = [k for k in REQUIRED_MODEL_KEYS + (("seq_len",) if training else ()) if data.get(k) is None]
    if missing:
        raise CapsimError(f"missing model key{'s' if len(missing) > 1 else ''} {', '.join(missing)}", where="model")
    known = set(ModelSpec.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown and notes is not None:
        notes.append(f"ignored model keys {', '.join(unknown)}")
    data = {k: v for k, v in data.items() if k in known and v is not None}
    for key in POSITIVE_MODEL_KEYS.intersection(data):
        data[key] = whole_number(data[key], f"model.{key}")
    return ModelSpec(**{"name": str(run.get("name", "model")), **data})


def _is_zoo_name(name) -> bool:
    from simulator.perf.zoo import list_models, resolve_model_name

    return isinstance(name, str) and resolve_model_name(name) in list_models()


def _zoo_spec(name: str) -> ModelSpec:
    from simulator.perf.zoo import TransformerModel, load_model

    entry = load_model(name)
    if not isinstance(entry, TransformerModel):
        raise CapsimError(f"zoo model {name!r} is not a transformer", where="model")
    return entry.model_spec()


def layer_types_global_every(layer_types) -> int | None:
    """global_every of an HF `layer_types` list ("sliding_attention" / "full_attention" per layer): None when
    every layer is sliding; k when the list repeats k - 1 sliding layers then one full one (Gemma 2 and
    GPT-OSS: k = 2; Gemma 3: 6), a trailing partial period sliding. Anything else (no sliding layer,
    several full layers a period, an irregular pattern, another layer type) is refused: ModelSpec holds one
    periodic pattern."""
    where = "model.layer_types"
    if not isinstance(layer_types, list) or not layer_types:
        raise CapsimError("expected a list of 'sliding_attention' / 'full_attention', one a layer", where=where)
    kinds = {"sliding_attention", "full_attention"}
    odd = sorted({str(t) for t in layer_types} - kinds)
    if odd:
        raise CapsimError(f"layer types {odd} are not modelled; expected 'sliding_attention' or 'full_attention'",
                          where=where)
    full = [i for i, t in enumerate(layer_types) if t == "full_attention"]
    if len(full) == len(layer_types):
        raise CapsimError("no sliding_attention layer: leave sliding_window out for full attention", where=where)
    if not full:
        return None
    k = full[0] + 1
    expected = [i for i in range(len(layer_types)) if (i + 1) % k == 0]
    if full != expected:
        raise CapsimError(f"full_attention layers {full[:8]}{'...' if len(full) > 8 else ''} are not one in every "
                          f"{k} (layers {k - 1}, {2 * k - 1}, ...): only a periodic pattern with one full layer a "
                          "period, last in it, is modelled", where=where)
    return k


def _window_keys(data: dict, notes: list[str] | None) -> None:
    """Sliding-window keys of a config.json-style model mapping, in place: `use_sliding_window: false`
    (Qwen2/Qwen3 configs carry a sliding_window they do not use) drops the window; `layer_types` becomes
    global_every; attention sinks are accepted and ignored (IGNORED_MODEL_KEYS)."""
    for key, why in IGNORED_MODEL_KEYS.items():
        if key in data:
            data.pop(key)
            if notes is not None:
                notes.append(f"{key} ignored: {why}")
    if "use_sliding_window" in data:
        if data.pop("use_sliding_window") is False and data.get("sliding_window") is not None:
            data.pop("sliding_window")
            data.pop("max_window_layers", None)
            if notes is not None:
                notes.append("sliding_window ignored: use_sliding_window is false")
    if "layer_types" in data:
        layer_types = data.pop("layer_types")
        k = layer_types_global_every(layer_types)
        if data.get("sliding_window") is None:
            raise CapsimError("layer_types names sliding_attention layers but no sliding_window is given",
                              where="model.sliding_window")
        if data.get("global_every") not in (None, k):
            raise CapsimError(f"global_every {data['global_every']!r} contradicts layer_types (one full layer in "
                              f"every {k})", where="model.global_every")
        data["global_every"] = k
        if data.get("layers") is not None and data["layers"] != len(layer_types):
            raise CapsimError(f"layer_types lists {len(layer_types)} layers, the model has {data['layers']}",
                              where="model.layer_types")


def resolve_dtype(written) -> tuple:
    """(the model's dtype, a note when it was renamed) for a precision as a table writes it (FP8-CS, MXFP8,
    NVFP4, BF16, bfloat16, ...); anything else is passed on for the model to accept or refuse."""
    if not isinstance(written, str):
        return written, None
    key = written.strip().lower()
    dtype = DTYPE_ALIASES.get(key, key)
    return dtype, (f"dtype {written} priced as {dtype}" if key in DTYPE_ALIASES else None)


def _layout(run: dict) -> tuple[dict, list[str]]:
    raw = run.get("layout") or {}
    if not isinstance(raw, dict):
        raise CapsimError("expected a mapping of layout keys", where="layout")
    raw = dict(raw)
    for alias, key in LAYOUT_ALIASES.items():
        if alias in raw and key not in raw:
            raw[key] = raw.pop(alias)
    fsdp = raw.pop("fsdp", None)  # Megatron FSDP / PyTorch FSDP FULL_SHARD (a table's FSDP column: its size)
    if fsdp not in (None, False, 0, "0", "n/a") and "zero" not in raw:
        raw["zero"] = 3
    layout = {k: v for k, v in raw.items() if k in LAYOUT_KEYS and v is not None}
    for key in POSITIVE_LAYOUT_KEYS.intersection(layout):
        layout[key] = whole_number(layout[key], f"layout.{key}")
    if isinstance(layout.get("recompute"), bool):  # `recompute: true` = activation checkpointing = full
        layout["recompute"] = RECOMPUTE_FLAGS[layout["recompute"]]
    if isinstance(layout.get("dispatcher"), str):  # tables write DeepEP, HybridEP
        layout["dispatcher"] = layout["dispatcher"].lower()
    notes = []
    if "dtype" in layout:
        layout["dtype"], note = resolve_dtype(layout["dtype"])
        notes += [note] if note else []
    ignored = sorted(k for k in raw if k not in LAYOUT_KEYS)
    if ignored:
        notes.append(f"ignored layout keys {', '.join(ignored)}")
    stack, note = resolve_stack(run.get("stack", raw.get("stack")))
    layout["stack"] = stack
    if note:
        notes.append(note)
    return layout, notes


def predict_training_row(run: dict) -> tuple[float, str, dict]:
    """(predicted value in the row's metric, notes, what its error band is looked up by); CapsimError says
    why a row cannot be predicted."""
    run = dict(run)
    for alias, key in RUN_ALIASES.items():
        if run.get(key) is None and alias in run:  # the row's own names win
            run[key] = run[alias]
    resolved = resolve_metric(run.get("metric"))
    if resolved is None or resolved[0] != "training":
        raise CapsimError(f"metric must be one of {expected('training')}, got {run.get('metric')!r}", where="metric")
    _, metric, scale = resolved
    node_note = _chips_from_slice(run) or _gpus_from_nodes(run)
    maxtext_notes = read_maxtext_keys(run)
    for key in ("device", "gpus", "global_batch", "model"):
        if run.get(key) in (None, ""):
            raise CapsimError(f"missing {key}", where=key)
    model_notes: list[str] = []
    model = run_model(run, model_notes, training=True)
    # legacy proxy: a layer count whose layers/pp equals the LM-head stage's blocks (uneven stages are
    # now modelled directly, so this only matters to rows that still give it)
    timed = replace(model, layers=int(run["pipeline_layers"])) if run.get("pipeline_layers") else model
    layout, notes = _layout(run)
    notes = model_notes + ([node_note] if node_note else []) + maxtext_notes + notes
    if model.num_experts > 1 and layout.get("tp", 1) > 1 and layout.get("ep", 1) > 1 \
            and layout.get("sequence_parallel") is None:
        layout["sequence_parallel"] = True  # Megatron-Core refuses MoE with TP and EP without it
        notes.append("sequence parallelism on (MoE with TP and EP requires it)")
    gpus, batch = whole_number(run["gpus"], "gpus"), whole_number(run["global_batch"], "global_batch")
    device = resolve_device(run["device"])
    pred = predict_training(device, timed, gpus, batch, **layout)
    if metric == "tokens_per_s_per_gpu":
        value = pred.tokens_per_s_per_gpu
    elif metric == "tokens_per_s":
        value = pred.tokens_per_s_per_gpu * gpus
    elif metric == "sequences_per_s":
        value = batch / pred.step_time_s
    elif metric == "step_time_s":
        value = pred.step_time_s
    else:
        tflops = batch * flops_per_seq(model, run.get("flops") or "6n_attn") / pred.step_time_s / gpus / 1e12
        value = tflops if metric == "tflops_per_gpu" else tflops / load_profile(device).peak("bf16")
    band_key = {"device": device, "stack": pred.layout.stack, "params_b": model.total_params() / 1e9,
                "dtype": pred.layout.dtype, "moe": model.is_moe}
    return float(value) * scale, "; ".join(notes), band_key


def _chips_from_slice(run: dict) -> str | None:
    """A row whose device is a Cloud TPU slice (`v5p-1024`) gets the TPU generation as its device and the
    slice's chips as `gpus`, in place; a `gpus` that disagrees with the slice is refused."""
    tpu = tpu_slice(run.get("device", ""))
    if tpu is None:
        return None
    device, chips = tpu
    written = run["device"]
    run["device"] = device
    if run.get("gpus") in (None, ""):
        run["gpus"] = chips
        return f"gpus = {chips} chips of the {written} slice"
    if whole_number(run["gpus"], "gpus") != chips:
        raise CapsimError(f"{run['gpus']} does not match device {written!r}, a slice of {chips} chips "
                          f"(v4 and v5p slices count TensorCores, two per chip)", where="gpus")
    return None


def _gpus_from_nodes(run: dict) -> str | None:
    """A row that counts nodes (`nodes`, with `gpus_per_node` / `devices_per_node` or the device's own
    devices per node) gets `gpus`, in place; the note says how it was counted."""
    if run.get("gpus") not in (None, "") or run.get("nodes") in (None, ""):
        return None
    nodes = whole_number(run["nodes"], "nodes")
    per_node = next((run[k] for k in ("gpus_per_node", "devices_per_node", "chips_per_node") if run.get(k)), None)
    if per_node is not None:
        run["gpus"] = nodes * whole_number(per_node, "gpus_per_node")
        return None
    if run.get("device") in (None, ""):
        return None
    run["gpus"] = nodes * load_profile(resolve_device(run["device"])).devices_per_node
    return f"gpus = {nodes} nodes x {run['gpus'] // nodes} devices per node (the device's profile)"


def is_serving(run: dict) -> bool:
    """A serving row says so (`kind: serving`), carries a `serving:` shape, or has a serving metric."""
    resolved = resolve_metric(run.get("metric"))
    return run.get("kind") == "serving" or "serving" in run or (resolved is not None and resolved[0] == "serving")


def evaluate_run(run) -> PublishedRow:
    """One row: its prediction, or the reason the model cannot express it."""
    if not isinstance(run, dict):
        return PublishedRow("?", "?", "?", float("nan"), None, reason=f"expected a mapping, got {type(run).__name__}")
    name = str(run.get("name", "?"))
    kind = "serving" if is_serving(run) else "training"
    common = dict(confidence=str(run.get("confidence", "")), in_summary=bool(run.get("in_summary", True)),
                  stack=str(run.get("stack") or ""), family=str(run.get("family") or ""), kind=kind)
    try:
        if run.get("value") is None:
            raise CapsimError("missing value: the published figure", where="value")
        published, value_note = published_value(run["value"], run.get("metric"))
    except CapsimError as exc:
        return PublishedRow(name, str(run.get("device", "?")), str(run.get("metric", "?")), float("nan"), None,
                            reason=str(exc), **common)
    try:
        if kind == "serving":
            from simulator.perf.serving_stacks import resolve_stack as resolve_serving_stack
            from simulator.perf.serving_validation import predict_serving_row

            predicted = predict_serving_row(run)
            notes = resolve_serving_stack(run["stack"])[1] if run.get("stack") else ""
            band_key = None  # the serving band is built from the serving validation rows themselves
        else:
            predicted, notes, band_key = predict_training_row(run)
        reason = None
    except CapsimError as exc:
        predicted, notes, band_key, reason = None, "", None, str(exc)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        predicted, notes, band_key, reason = None, "", None, f"malformed row: {exc!r}"
    notes = "; ".join(n for n in (value_note, notes) if n)
    return PublishedRow(name, str(run.get("device", "?")), str(run.get("metric", "?")), published, predicted,
                        reason=reason, notes=notes, band_key=band_key, **common)


def load_runs(path: str | Path) -> list:
    from simulator.yaml_file import read_yaml

    path = Path(path)
    if not path.is_file():
        raise CapsimError("runs file not found", source=str(path))
    data = read_yaml(path, "runs file")
    runs = data.get("runs") if isinstance(data, dict) else data
    if not isinstance(runs, list):
        raise CapsimError("expected a top-level `runs:` list", source=str(path))
    return runs


def validate_published(table: str | Path | None = None) -> list[PublishedRow]:
    return [evaluate_run(r) for r in load_runs(table or default_table())]


def error_summary(errors: list[float]) -> dict:
    """Median and worst |error| and the median signed error (bias) of a list of relative errors."""
    if not errors:
        return {"rows": 0, "median_abs_error": None, "worst_abs_error": None, "median_error": None}
    return {"rows": len(errors), "median_abs_error": statistics.median(abs(e) for e in errors),
            "worst_abs_error": max(abs(e) for e in errors), "median_error": statistics.median(errors)}


def published_summary(rows: list[PublishedRow]) -> dict:
    """Over the rows kept in the summary that the model could express; `failed` counts the others."""
    kept = [r for r in rows if r.in_summary and r.error is not None]
    out = error_summary([r.error for r in kept])
    out["summary_rows"] = out.pop("rows")
    out["failed"] = sum(r.reason is not None for r in rows)
    for kind in ("training", "serving"):
        part = [r.error for r in kept if r.kind == kind]
        if part:
            out[kind] = error_summary(part)
    banded = [r.in_band for r in kept if r.in_band is not None]
    if banded:  # how often the published figure lies within the band `capsim predict` would print
        out["training"]["band_coverage"] = sum(banded) / len(banded)
    return out
