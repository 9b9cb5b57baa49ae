"""Training rows written with MaxText's config names, as tpu-recipes READMEs and MaxText's
benchmarks/*_model_configs.py print a run: `per_device_batch_size`, `max_target_length`, the `ici_*`
mesh axes and `remat_policy` (MaxText src/MaxText/configs/base.yml). They are read into the schema of
workloads/validation/published_runs.yaml; a multi-slice run (`num_slices`, `dcn_*` axes above 1: FSDP
inside a slice and data parallelism over the data-centre network) is refused, as the layout cannot
express it."""

from __future__ import annotations

from simulator.errors import CapsimError
from simulator.perf.row_fields import whole_number

# Mesh axes inside one slice (ICI); `fsdp` is read as ZeRO-3 by the row's layout. -1 = "the rest of the
# devices", which only the FSDP axes may say here (the other axes are the row's own layout sizes).
ICI_AXES = {"ici_tensor_parallelism": "tp", "ici_pipeline_parallelism": "pp", "ici_context_parallelism": "cp",
            "ici_expert_parallelism": "ep", "ici_fsdp_parallelism": "fsdp", "ici_fsdp_transpose_parallelism": "fsdp"}
DCN_AXES = ("dcn_data_parallelism", "dcn_fsdp_parallelism", "dcn_pipeline_parallelism", "dcn_tensor_parallelism",
            "dcn_expert_parallelism", "dcn_context_parallelism")
# MaxText's remat policies by what they recompute in the backward pass: nothing but element-wise work
# (every matmul output saved or offloaded to host) is the model's `selective` (with flash attention it
# recomputes nothing); the full forward is `full`; the rest save some matmul outputs and recompute others,
# which the model cannot split, and are priced as full recompute (as the calibration set's MaxText rows are).
SAVES_EVERY_MATMUL = ("minimal", "minimal_flash", "minimal_with_context", "minimal_offloaded")


def remat_recompute(policy: str) -> tuple[str, str | None]:
    """(the model's recompute, a note when it is an approximation) for a MaxText remat_policy."""
    key = str(policy).strip().lower()
    if key == "full":
        return "full", None
    if key in SAVES_EVERY_MATMUL:
        return "selective", f"remat_policy {policy} priced as selective recompute"
    return "full", f"remat_policy {policy} (recomputes part of the forward) priced as full recompute"


MAXTEXT_KEYS = (*ICI_AXES, *DCN_AXES, "ici_data_parallelism", "num_slices", "remat_policy", "per_device_batch_size",
                "gradient_accumulation_steps")


def read_maxtext_keys(run: dict) -> list[str]:
    """Rewrite, in place, a row's MaxText config names (top level or under `layout`) into the row schema;
    the notes say what was read."""
    layout = dict(run.get("layout") or {})
    tuning = {k: run.pop(k) for k in MAXTEXT_KEYS if k in run}
    tuning.update({k: layout.pop(k) for k in MAXTEXT_KEYS if k in layout})
    if not tuning:
        return []
    for key in (*DCN_AXES, "num_slices"):
        if tuning.get(key) not in (None, 1, "1") and not (key in DCN_AXES and tuning[key] in (-1, "-1")):
            raise CapsimError(f"a multi-slice run ({key} {tuning[key]!r}: FSDP inside each slice, data parallelism "
                              "over the data-centre network) cannot be expressed; give one slice's run", where=key)
    for key, target in ICI_AXES.items():
        if tuning.get(key) is None:
            continue
        if target != "fsdp":
            layout.setdefault(target, whole_number(tuning[key], key))
        elif tuning[key] not in (1, "1"):  # -1: FSDP over the rest of the chips; 1: no FSDP
            layout.setdefault("fsdp", tuning[key])
    if tuning.get("ici_data_parallelism") not in (None, 1, "1"):
        if "fsdp" in layout:
            raise CapsimError("data parallelism beside FSDP (hybrid sharding) cannot be expressed: ZeRO-3 shards "
                              "over every data-parallel rank", where="ici_data_parallelism")
        layout.setdefault("zero", 0)  # replicated weights and optimizer state, gradients all-reduced
    notes = []
    if tuning.get("remat_policy") is not None and "recompute" not in layout:
        layout["recompute"], note = remat_recompute(tuning["remat_policy"])
        notes += [note] if note else []
    if tuning.get("per_device_batch_size") is not None:
        per_device = whole_number(tuning["per_device_batch_size"], "per_device_batch_size")
        if run.get("gpus") in (None, ""):
            raise CapsimError("per_device_batch_size needs the row's chips to give the global batch", where="gpus")
        gpus = whole_number(run["gpus"], "gpus")
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
