"""Training rows written with MaxText's config names, as tpu-recipes READMEs and MaxText's
benchmarks/*_model_configs.py print a run: `per_device_batch_size`, `max_target_length`, the mesh axes
(`ici_*` inside a slice or GPU node, `dcn_*` across them), `remat_policy`, `quantization` and `attention`
(`dot_product` = unfused; MaxText src/MaxText/configs/base.yml). They are read into the schema of
workloads/validation/published_runs.yaml. FSDP across slices or nodes (`dcn_fsdp_parallelism`, as
gpu-recipes' MaxText configs run) is ZeRO-3 over every rank; data parallelism beside FSDP (hybrid sharding:
multi-slice TPU runs by default, `dcn_data_parallelism` above 1) is ZeRO-3 inside each of that many replica
groups (layout.dp_replicate), whose gradient shards are all-reduced across them."""

from __future__ import annotations

import math

from simulator.errors import CapsimError
from simulator.perf.kernels import BLOCK_SPARSE_KERNELS
from simulator.perf.row_fields import whole_number

# MaxText's mesh axes: each is an ICI part (inside a slice, or a GPU node) times a DCN part (across
# slices or nodes); -1 = the rest of the devices (base.yml: ici_fsdp_parallelism -1, dcn_data_parallelism -1,
# the others 1). The model axes' sizes are the products; `fsdp` is read as ZeRO-3 by the row's layout.
MODEL_AXES = {"tp": ("ici_tensor_parallelism", "dcn_tensor_parallelism"),
              "pp": ("ici_pipeline_parallelism", "dcn_pipeline_parallelism"),
              "cp": ("ici_context_parallelism", "dcn_context_parallelism"),
              "ep": ("ici_expert_parallelism", "dcn_expert_parallelism")}
FSDP_AXES = ("ici_fsdp_parallelism", "ici_fsdp_transpose_parallelism", "dcn_fsdp_parallelism")
DATA_AXES = ("ici_data_parallelism", "dcn_data_parallelism")
# MaxText's remat policies by what they recompute in the backward pass: every projection's output saved or
# offloaded to host is the model's `selective`, which the maxtext stack prices as re-running the attention
# kernel and the element-wise work (stacks.SELECTIVE_RECOMPUTE `non_matmul`; the `_flash` and `_with_context`
# variants also keep the attention output, so for them that is the attention forward too pessimistic); the
# full forward is `full`; the rest save some matmul outputs and recompute others,
# which the model cannot split, and are priced as full recompute (as the calibration set's MaxText rows are).
SAVES_EVERY_MATMUL = ("minimal", "minimal_flash", "minimal_with_context", "minimal_offloaded")
# Splash attention's tiles (queries, keys): the forward kernel's and the backward dkv kernel's (the larger of
# the two backward kernels: it recomputes the scores and forms dK and dV); a size not given is base.yml's.
SPLASH_TILES = {"attention_block": ("sa_block_q", "sa_block_kv"),
                "attention_block_bwd": ("sa_block_q_dkv", "sa_block_kv_dkv")}


def remat_recompute(policy: str) -> tuple[str, str | None]:
    """(the model's recompute, a note when it is an approximation) for a MaxText remat_policy."""
    key = str(policy).strip().lower()
    if key == "full":
        return "full", None
    if key in SAVES_EVERY_MATMUL:
        return "selective", f"remat_policy {policy} priced as selective recompute"
    return "full", f"remat_policy {policy} (recomputes part of the forward) priced as full recompute"


MAXTEXT_KEYS = (*(k for pair in MODEL_AXES.values() for k in pair), *FSDP_AXES, *DATA_AXES, "num_slices",
                "remat_policy", "per_device_batch_size", "gradient_accumulation_steps", "quantization", "attention",
                "num_vocab_tiling", *(k for keys in SPLASH_TILES.values() for k in keys))


def _fill(value) -> bool:
    return value in (-1, "-1")


def _sharding(tuning: dict, gpus: int | None) -> tuple[dict, str | None, int]:
    """(model axis sizes, 'fsdp' | 'data' | None, data-parallel replicas beside FSDP) from the mesh axes."""
    sizes = {}
    for target, keys in MODEL_AXES.items():
        if any(k in tuning for k in keys):
            sizes[target] = 1
            for k in keys:
                sizes[target] *= whole_number(tuning.get(k, 1), k)  # only the data and FSDP axes take -1
    fsdp = any(_fill(tuning.get(k)) or (tuning.get(k) is not None and whole_number(tuning[k], k) > 1)
               for k in FSDP_AXES)
    # the data axes: explicit sizes; dcn -1 fills the slices (num_slices, 1 by default); ici -1 takes the
    # chips the other axes leave when no FSDP axis takes them
    slices = whole_number(tuning.get("num_slices", 1), "num_slices")
    replicas = math.prod(whole_number(tuning[k], k) for k in DATA_AXES
                         if tuning.get(k) is not None and not _fill(tuning[k]))
    if _fill(tuning.get("dcn_data_parallelism")) or (slices > 1 and "dcn_data_parallelism" not in tuning
                                                       and "dcn_fsdp_parallelism" not in tuning):
        dcn_fsdp = tuning.get("dcn_fsdp_parallelism", 1)
        replicas *= max(1, slices // (1 if _fill(dcn_fsdp) else whole_number(dcn_fsdp, "dcn_fsdp_parallelism")))
    if _fill(tuning.get("ici_data_parallelism")) and not any(_fill(tuning.get(k)) for k in FSDP_AXES) and gpus:
        taken = math.prod(sizes.values()) * math.prod(whole_number(tuning[k], k) for k in (*FSDP_AXES, *DATA_AXES)
                                                      if tuning.get(k) is not None and not _fill(tuning[k]))
        replicas *= max(1, gpus // max(taken, 1))
    return sizes, "fsdp" if fsdp else "data" if replicas > 1 else None, replicas


def read_maxtext_keys(run: dict) -> list[str]:
    """Rewrite, in place, a row's MaxText config names (top level or under `layout`) into the row schema;
    the notes say what was read."""
    layout = dict(run.get("layout") or {})
    tuning = {k: run.pop(k) for k in MAXTEXT_KEYS if k in run}
    tuning.update({k: layout.pop(k) for k in MAXTEXT_KEYS if k in layout})
    if not tuning:
        return []
    gpus = whole_number(run["gpus"], "gpus") if run.get("gpus") not in (None, "") else None
    sizes, sharding, replicas = _sharding(tuning, gpus)
    for target, size in sizes.items():
        layout.setdefault(target, size)
    if sharding == "fsdp":
        layout.setdefault("fsdp", -1)
        if replicas > 1:  # hybrid sharding: FSDP inside a slice or node group, data parallelism across them
            layout.setdefault("dp_replicate", replicas)
    elif sharding == "data":
        layout.setdefault("zero", 0)  # replicated weights and optimizer state, gradients all-reduced
    notes = []
    if tuning.get("quantization") not in (None, "") and "dtype" not in layout:
        layout["dtype"] = tuning["quantization"]  # fp8 (Transformer Engine / AQT); int8 is refused by the layout
    if tuning.get("attention") is not None and "flash" not in layout:
        # dot_product materialises the scores; flash, cudnn_flash_te, ... are the stack's fused kernel
        layout["flash"] = str(tuning["attention"]).strip().lower() != "dot_product"
    for target, keys in SPLASH_TILES.items():
        if any(tuning.get(k) is not None for k in keys) and target not in layout:
            layout[target] = [whole_number(tuning.get(k, default), k)
                              for k, default in zip(keys, BLOCK_SPARSE_KERNELS["splash"], strict=True)]
    if tuning.get("num_vocab_tiling") is not None and "loss_chunks" not in layout:
        layout["loss_chunks"] = whole_number(tuning["num_vocab_tiling"], "num_vocab_tiling")
    if tuning.get("remat_policy") is not None and "recompute" not in layout:
        layout["recompute"], note = remat_recompute(tuning["remat_policy"])
        notes += [note] if note else []
    if tuning.get("per_device_batch_size") is not None:
        per_device = whole_number(tuning["per_device_batch_size"], "per_device_batch_size")
        if gpus is None:
            raise CapsimError("per_device_batch_size needs the row's chips to give the global batch", where="gpus")
        if run.get("global_batch") in (None, ""):
            run["global_batch"] = per_device * gpus
            notes.append(f"global batch = per_device_batch_size {per_device} x {gpus} chips")
        if "micro_batch" not in layout:
            # MaxText takes one optimizer step per batch unless it accumulates gradients: a data-parallel
            # rank's share of the batch is one microbatch
            ranks = max(1, gpus // (layout.get("tp", 1) * layout.get("pp", 1) * layout.get("cp", 1)))
            steps = whole_number(tuning.get("gradient_accumulation_steps", 1), "gradient_accumulation_steps")
            layout["micro_batch"] = max(1, whole_number(run["global_batch"], "global_batch") // (ranks * steps))
    run["layout"] = layout
    return notes
