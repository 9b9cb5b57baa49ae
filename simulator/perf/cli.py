"""`capsim predict` and `capsim validate-perf` (registered on the main group by simulator/cli.py)."""

from __future__ import annotations

import json

import click

from simulator.errors import CapsimError
from simulator.perf.layout import DISPATCHERS
from simulator.perf.serving_stacks import STACKS as _STACKS

STACK_NAMES = tuple(_STACKS)


def _device_id(ctx, param, value):
    """--device under a name tables print (H100, DGX-B200): its profile id; an unknown name is refused later."""
    from simulator.perf.published import resolve_device, tpu_slice

    tpu = tpu_slice(value)
    if tpu is not None:
        raise click.BadParameter(f"{value} is a Cloud TPU slice of {tpu[1]} chips: give --device {tpu[0]} "
                                 f"and --gpus {tpu[1]}")
    return resolve_device(value)


def _model_options(command):
    """The options that describe the device and the transformer, shared by predict and predict-inference."""
    options = [
        click.option("--device", required=True, callback=_device_id,
                     help="Device id (a file name in hardware_profiles/ without .yaml), or its name as tables print "
                          "it (H100, DGX-B200, GB200 NVL72, TPU v5p)."),
        click.option("--model", "zoo_model", default=None,
                     help="A zoo model (workloads/models/, e.g. llama3-70b); shape flags given beside it override it."),
        click.option("--layers", type=int, default=None, help="Transformer blocks (required without --model)."),
        click.option("--hidden", type=int, default=None, help="Model width (required without --model)."),
        click.option("--heads", type=int, default=None, help="Attention heads (required without --model)."),
        click.option("--kv-heads", type=int, default=None, help="GQA key/value heads (default: --heads)."),
        click.option("--head-dim", type=int, default=None,
                     help="Width of one attention head (default hidden / heads); with MLA its no-RoPE query/key part."),
        click.option("--q-lora-rank", type=int, default=None, help="MLA: query latent width (default: full-rank Q)."),
        click.option("--kv-lora-rank", type=int, default=None,
                     help="MLA: key/value latent width; sets Multi-head Latent Attention (DeepSeek-V3: 512)."),
        click.option("--qk-rope-head-dim", type=int, default=None, help="MLA: decoupled RoPE query/key width (default 0)."),
        click.option("--v-head-dim", type=int, default=None, help="MLA: value head width (default --head-dim)."),
        click.option("--sliding-window", type=int, default=None,
                     help="Sliding-window attention: keys a windowed layer's query attends to (Mistral 7B: 4096); "
                          "0 = full attention on every layer (turns a zoo model's window off)."),
        click.option("--global-every", type=int, default=None,
                     help="With --sliding-window: every k-th layer full, the others windowed (Gemma 3: 6; "
                          "default every layer windowed)."),
        click.option("--ffn", type=int, default=None, help="MLP inner size (default 4 x hidden)."),
        click.option("--mlp", type=click.Choice(["gelu", "swiglu"]), default=None, help="MLP kind (default gelu)."),
        click.option("--experts", "num_experts", type=int, default=None, help="MoE experts per layer (1 = dense)."),
        click.option("--top-k", type=int, default=None, help="MoE experts per token."),
        click.option("--vocab", type=int, default=None, help="Vocabulary size (required without --model)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def model_from_options(zoo_model: str | None, seq_len: int | None, **shape):
    """A ModelSpec from --model (the zoo entry) and/or the shape flags; a missing flag is named."""
    from dataclasses import replace

    from simulator.perf.model import ModelSpec

    given = {k: v for k, v in shape.items() if v is not None}
    if given.get("sliding_window") == 0:  # --sliding-window 0: full attention everywhere (a zoo entry's window off)
        given["sliding_window"] = None
        if "global_every" in given:
            raise CapsimError("--global-every needs a sliding window; --sliding-window 0 turns it off",
                              where="--global-every")
        given["global_every"] = None
    if zoo_model:
        from simulator.perf.zoo import TransformerModel, load_model

        entry = load_model(zoo_model)
        if not isinstance(entry, TransformerModel):
            raise CapsimError(f"zoo model {zoo_model!r} is not a transformer", where="--model")
        spec = entry.model_spec()
        if entry.head_dim is None and "head_dim" not in given:
            given["head_dim"] = None  # derived again from the (possibly overridden) hidden size and heads
        return replace(spec, **given, **({"seq_len": seq_len} if seq_len else {}))
    for key in ("layers", "hidden", "heads", "vocab"):
        if key not in given:
            raise CapsimError(f"missing --{key} (or name a zoo model with --model)", where=f"--{key}")
    if seq_len is None:
        raise CapsimError("missing --seq-len (or name a zoo model with --model)", where="--seq-len")
    return ModelSpec(**given, seq_len=seq_len)


def _moe_comm(lay) -> str:
    """How the layout's EP all-to-alls run, with the stack's defaults filled in."""
    from simulator.perf.moe import dispatcher_of, overlap_ep_of

    return f", {dispatcher_of(lay)} dispatch" + (", all-to-alls overlapped" if overlap_ep_of(lay) else "")


def _tiles(lay) -> str:
    """The block-sparse attention tiles a layout sets, forward and backward, queries x keys."""
    fwd, bwd = ("x".join(map(str, t)) for t in (lay.attention_block, lay.attention_block_bwd))
    return f"; attention tiles {fwd}" + (f", backward {bwd}" if bwd != fwd else "")


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@click.command("predict")
@_model_options
@click.option("--gpus", type=int, required=True)
@click.option("--seq-len", type=int, default=None, help="Sequence length (default: the zoo model's).")
@click.option("--global-batch", type=int, required=True, help="Sequences per step.")
@click.option("--micro-batch", type=int, default=1)
@click.option("--tp", type=int, default=1)
@click.option("--pp", type=int, default=1)
@click.option("--cp", type=int, default=1)
@click.option("--zero", type=click.IntRange(0, 3), default=1)
@click.option("--dp-replicate", type=int, default=1,
              help="Hybrid sharding: ZeRO shards within dp/N ranks and N replica groups all-reduce across the "
                   "network (PyTorch HSDP; TPU multi-slice). Default 1: one shard group.")
@click.option("--sequence-parallel", is_flag=True)
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none",
              help="Activation recompute: full re-runs the forward; selective what the stack's policy does not "
                   "save (Megatron-Core: the attention core; torchtitan: every second linear; MaxText: all "
                   "but the projections).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8", "fp4"]), default="bf16",
              help="fp8: a Transformer Engine FP8 recipe; fp4: NVFP4 (bf16_with_nvfp4_mixed).")
@click.option("--virtual-stages", type=int, default=1)
@click.option("--flash/--no-flash", default=True, help="Fused attention kernels (default on).")
@click.option("--attention-block", type=int, default=None,
              help="Tile of a block-sparse attention kernel, queries and keys, in tokens (TPU splash: MaxText "
                   "sa_block_q and sa_block_kv; default 512); a sliding window computes every tile it touches.")
@click.option("--attention-block-bwd", type=int, default=None,
              help="The backward kernel's tile (MaxText sa_block_*_dkv; default --attention-block).")
@click.option("--loss-chunks", type=int, default=1,
              help="Compute the loss over N chunks of the tokens, so one chunk's logits are live (MaxText "
                   "num_vocab_tiling); default 1.")
@click.option("--overlap/--no-overlap", default=True, help="Overlap gradient reduction with backward.")
@click.option("--stack", default=None, help="Software stack profile, a file name in hardware_profiles/stacks/ "
              "(nemo, torchtitan, llm-foundry, maxtext, ...); default megatron-core. An unknown name lists them.")
@click.option("--moe-ffn", type=int, default=None, help="MoE: inner size of one expert (default --ffn).")
@click.option("--shared-experts", type=int, default=None, help="MoE: always-on shared experts of --moe-ffn (DeepSeek).")
@click.option("--first-dense-layers", type=int, default=None, help="MoE: leading dense layers of --ffn (DeepSeek-V3: 3).")
@click.option("--moe-layers", type=int, default=None,
              help="MoE: MoE layers among the rest, the others dense and interleaved (default: all).")
@click.option("--ep", type=int, default=1, help="MoE: expert-parallel degree (must divide --experts and tp*cp*dp).")
@click.option("--etp", type=int, default=None, help="MoE: expert tensor-parallel degree (default --tp, as Megatron-Core).")
@click.option("--capacity-factor", type=float, default=None,
              help="MoE: expert capacity factor, tokens dropped or padded to it (default: dropless).")
@click.option("--overlap-ep/--no-overlap-ep", default=None,
              help="MoE: hide the EP all-to-alls under another microbatch's compute (Megatron-Core "
                   "--overlap-moe-expert-parallel-comm; default: the stack's).")
@click.option("--dispatcher", type=click.Choice(list(DISPATCHERS)), default=None,
              help="MoE: alltoall sends every routed copy; deepep and hybridep send a token once per remote "
                   "node (default: the stack's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict(device, zoo_model, gpus, seq_len, global_batch, micro_batch, tp, pp, cp, zero, dp_replicate, sequence_parallel, recompute,
            dtype, virtual_stages, flash, attention_block, attention_block_bwd, loss_chunks, overlap, stack, ep, etp,
            capacity_factor, overlap_ep, dispatcher, as_json,
            **shape):
    """Predict step time, throughput, MFU and memory of one training configuration, with the error band
    of the nearest published runs in the calibration set."""
    from simulator.perf.api import predict_training
    from simulator.perf.band import error_band

    try:
        model = model_from_options(zoo_model, seq_len, **shape)  # the shape flags (_model_options, --moe-*)
        pred = predict_training(device, model, gpus, global_batch, tp=tp, pp=pp, cp=cp, micro_batch=micro_batch,
                                virtual_stages=virtual_stages, zero=zero, sequence_parallel=sequence_parallel,
                                recompute=recompute, dtype=dtype, flash=flash, overlap_grad_reduce=overlap,
                                stack=stack, ep=ep, etp=etp, capacity_factor=capacity_factor, overlap_ep=overlap_ep,
                                dispatcher=dispatcher, dp_replicate=dp_replicate,
                                attention_block=attention_block, attention_block_bwd=attention_block_bwd,
                                loss_chunks=loss_chunks)
    except CapsimError as exc:
        raise click.UsageError(str(exc)) from None
    out = pred.as_dict()
    band = error_band(device, pred.layout.stack, model.total_params() / 1e9, pred.layout.dtype, moe=model.is_moe)
    out["band"] = band.as_dict(pred.tokens_per_s_per_gpu) if band else None
    out["caveats"] = caveats(device, pred.layout.dtype)
    fitting = None if pred.fits else _fitting_layout(device, model, gpus, global_batch)
    out["fitting_layout"] = fitting
    if as_json:
        click.echo(json.dumps(out))
        return
    lay = pred.layout
    rows = [
        ("device", f"{device} x {gpus}"),
        ("stack", lay.stack),
        ("layout", f"TP{lay.tp} PP{lay.pp} CP{lay.cp} DP{lay.dp}, micro-batch {lay.micro_batch}, v={lay.virtual_stages}, "
                   f"ZeRO-{lay.zero}{f' in {lay.dp_replicate} replica groups' if lay.dp_replicate > 1 else ''}, "
                   f"recompute {lay.recompute}{', SP' if lay.sequence_parallel else ''}"
                   + (f"; experts EP{lay.ep} ETP{lay.expert_tp} EDP{lay.expert_dp}" if model.is_moe else "")
                   + (_moe_comm(lay) if model.is_moe else "")
                   + (_tiles(lay) if lay.attention_block else "")),
        ("step time", f"{pred.step_time_s:.3f} s"),
        ("tokens/s per GPU", f"{pred.tokens_per_s_per_gpu:,.0f}"),
        ("model TFLOP/s per GPU", f"{pred.model_tflops_per_gpu:.1f}"),
        ("MFU", f"{pred.mfu:.1%}"),
        ("memory per device", f"{pred.memory_per_device_gib:.1f} GiB ({'fits' if pred.fits else 'does NOT fit'})"),
    ]
    rows += [(f"  {k}", f"{v:.3f} s") for k, v in out["breakdown"].items() if k != "ep_comm_s" or model.is_moe]
    if band:
        lo, hi = band.interval(pred.tokens_per_s_per_gpu)
        rows.append(("likely tokens/s per GPU", f"{lo:,.0f} - {hi:,.0f} ({band.describe()})"))
    if fitting:
        rows.append(("a layout that fits", fitting))
    rows += [("caveat", c) for c in out["caveats"]]
    click.echo(_table(rows))


def _fitting_layout(device: str, model, gpus: int, global_batch: int) -> str | None:
    """The flags of the layout a model-based job would take here (api.default_layout: TP within the
    scale-up domain, the shallowest pipeline that fits, experts sharded), when it fits; None otherwise."""
    from simulator.perf.api import default_layout
    from simulator.perf.memory import memory_per_device
    from simulator.perf.profile import load_profile

    try:
        lay = default_layout(device, model, gpus, global_batch)
    except CapsimError:
        return None
    if memory_per_device(model, lay).total_gib > load_profile(device).memory_gib:
        return None
    flags = [f"--tp {lay.tp}"] + [f"--{k} {v}" for k, v in (("pp", lay.pp), ("ep", lay.ep)) if v > 1]
    flags += [f"--etp {lay.etp}"] if lay.etp is not None and model.is_moe else []
    flags += ["--sequence-parallel"] if lay.sequence_parallel else []
    return " ".join(flags + [f"--recompute {lay.recompute}"])


def caveats(device: str, dtype: str = "bf16") -> list[str]:
    """What a prediction on this device, in this precision, rests on beyond its own measurements."""
    from simulator.perf.kernels import attention_lender, best_gemm_ratio, relative_gemm_points
    from simulator.perf.profile import dtype_class, load_profile

    p = load_profile(device)
    out = []
    missing = [kind for kind, own in (("GEMM", p.gemm), ("HBM", p.hbm), ("collective", p.collectives)) if not own]
    if missing:
        ref = p.prior_reference or "generic defaults"
        ratio = best_gemm_ratio(device, ref, dtype_class(dtype)) if p.prior_reference and not p.gemm else 1.0
        by = "" if ratio == 1.0 else f", GEMMs x{ratio:.2f} (the two parts' measured best GEMMs)"
        kinds = ", ".join(missing[:-1]) + (" or " if len(missing) > 1 else "") + missing[-1]
        out.append(f"no measured {p.name or device} {kinds} curves: borrowed from {ref}, scaled to its peaks{by}")
    if not p.attention:
        ref = attention_lender(device)
        if ref and load_profile(ref).attention:
            fill = f", less where a head is narrower than its {p.mxu_width}-wide matrix unit" if p.mxu_width else ""
            out.append(f"no measured fused-attention tables: {ref}'s, at the same fractions of peak{fill}")
        else:
            out.append("no measured fused-attention tables: attention runs at a fixed fraction of the GEMM rate")
    relative = relative_gemm_points(device, "fp4")
    if dtype == "fp4" and p.peak_tflops.get("fp4") and not relative:
        out.append("no measured FP4 GEMMs: priced on the FP8 efficiency curve at the FP4 peak")
    elif dtype == "fp4" and p.peak_tflops.get("fp4"):
        # how far that carries: the held-out NVFP4 training rows (workloads/validation/validation_runs.yaml)
        # and TensorRT-LLM v1.0's NVFP4 serving table (workloads/validation/published_serving.yaml)
        out.append(f"FP4 GEMMs: {relative[0]}'s NVFP4-to-BF16 efficiency ratios, timed in one run, on this part's "
                   "BF16 curve; such predictions were -24% to -2% off published NVFP4 throughput in training "
                   "(NeMo 26.04, GB200 and GB300) and -15% to +30% in serving (TensorRT-LLM v1.0, B200 and GB200)")
    elif dtype == "fp4":
        rate = "FP8" if p.peak_tflops.get("fp8") else "16-bit"
        out.append(f"no FP4 tensor cores: fp4 weights are read at 4 bits but multiplied at the {rate} rate")
    return out


@click.command("predict-inference")
@_model_options
@click.option("--tp", type=int, default=1, help="Devices of one tensor-parallel replica.")
@click.option("--batch", type=int, default=1, help="Requests served together.")
@click.option("--prompt-len", type=int, required=True)
@click.option("--output-len", type=int, required=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8", "fp4"]), default="bf16",
              help="Weights and GEMMs; fp4 is NVFP4 (0.5625 B per weight).")
@click.option("--kv-dtype", type=click.Choice(["bf16", "fp16", "fp8"]), default=None,
              help="KV cache (default: --dtype, fp8 with fp4 weights); fp8 halves the KV bytes stored and read.")
@click.option("--stack", type=click.Choice(sorted(STACK_NAMES)), default="vllm", show_default=True,
              help="Serving stack: decode attention kernel, CUDA graphs, per-step host time.")
@click.option("--untied-embeddings", is_flag=True, help="Separate input embedding and LM head (Llama 2/3).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict_inference_cmd(device, zoo_model, tp, batch, prompt_len, output_len, dtype, kv_dtype, stack,
                          untied_embeddings, as_json, **shape):
    """Predict time to first token, time per output token, throughput and memory of serving a model."""
    from simulator.perf.inference import predict_inference

    try:
        model = model_from_options(zoo_model, prompt_len + output_len, **shape,
                                   tied_embeddings=False if untied_embeddings else None)
        pred = predict_inference(device, model, tp=tp, batch=batch, prompt_len=prompt_len,
                                 output_len=output_len, dtype=dtype, kv_dtype=kv_dtype, stack=stack)
    except CapsimError as exc:
        raise click.UsageError(str(exc)) from None
    from simulator.perf.band import serving_band

    band = serving_band(device, pred.stack, model.total_params() / 1e9, pred.dtype)
    notes = caveats(device, pred.dtype)
    if as_json:
        out = pred.as_dict()
        out["caveats"] = notes
        out["band"] = None if band is None else {
            "low_error": band.low_error, "high_error": band.high_error, "nearest_runs": list(band.rows),
            "basis": "errors of the nearest rows of the serving validation set (device, stack, precision, size); "
                     "nothing is fitted on them",
            "output_tokens_per_s": list(band.interval(pred.output_tokens_per_s)),
            "ttft_s": list(band.time_interval(pred.ttft_s)), "tpot_s": list(band.time_interval(pred.tpot_s))}
        click.echo(json.dumps(out))
        return
    rows = [
        ("device", f"{device} x {tp} (one replica), batch {batch}, {pred.stack}, "
                   f"weights {pred.dtype}, KV cache {pred.kv_dtype}"),
        ("time to first token", f"{pred.ttft_s * 1e3:,.1f} ms"),
        ("time per output token", f"{pred.tpot_s * 1e3:,.2f} ms"),
        ("request latency", f"{pred.request_latency_s:,.2f} s"),
        ("output tokens/s", f"{pred.output_tokens_per_s:,.0f} ({pred.output_tokens_per_s_per_gpu:,.0f} per GPU)"),
        ("memory per device", f"{pred.memory_per_device_gib:.1f} GiB (weights {pred.weights_gib:.1f}, "
                              f"KV cache {pred.kv_cache_gib:.1f}; {'fits' if pred.fits else 'does NOT fit'})"),
    ]
    if band:
        lo, hi = band.interval(pred.output_tokens_per_s)
        t_lo, t_hi = band.time_interval(pred.tpot_s)
        rows += [("likely output tokens/s", f"{lo:,.0f} - {hi:,.0f} ({band.describe()})"),
                 ("likely time per token", f"{t_lo * 1e3:,.2f} - {t_hi * 1e3:,.2f} ms")]
    rows += [("caveat", c) for c in notes]
    click.echo(_table(rows))


@click.command("validate-perf")
@click.option("--table", type=click.Path(dir_okay=False), default=None,
              help="Megatron validation CSV (default ../shared/data/calibration/megatron_a100_validation.csv).")
@click.option("--runs", "runs_file", type=click.Path(dir_okay=False), default=None,
              help="A YAML `runs:` list of published runs in the schema of workloads/validation/published_runs.yaml.")
@click.option("--published", is_flag=True, help="The calibration set (workloads/validation/published_runs.yaml).")
@click.option("--cv", is_flag=True, help="Cross-validated error of the stack fit on the calibration set "
              "(leave one publication family, device or stack out).")
@click.option("--fit", "refit", is_flag=True, help="Refit the stacks' efficiency on the calibration set and "
              "write workloads/validation/calibration_fit.yaml with its cross-validated error.")
@click.option("--json", "as_json", is_flag=True)
def validate_perf(table, runs_file, published, cv, refit, as_json):
    """Predicted vs published runs, with errors: the Megatron A100 tables by default, --runs FILE for any
    published runs, --cv / --fit for the calibration of the software stacks."""
    if refit or cv:
        _calibrate(refit, as_json)
        return
    if runs_file or published:
        _validate_runs(runs_file, as_json)
        return
    from simulator.perf.validate import summary, validate

    try:
        rows = validate(table)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    s = summary(rows)
    if as_json:
        click.echo(json.dumps({"rows": [{"id": r.id, "metric": r.metric, "published": r.published,
                                         "predicted": r.predicted, "error": r.error} for r in rows], **s}))
        return
    click.echo(f"{'id':<6} {'metric':<10} {'published':>10} {'predicted':>10} {'error':>8}")
    for r in rows:
        click.echo(f"{r.id:<6} {r.metric:<10} {r.published:>10.2f} {r.predicted:>10.2f} {r.error:>+8.1%}")
    click.echo(f"median |error| {s['median_abs_error']:.1%}, worst {s['worst_abs_error']:.1%} over {s['rows']} rows")


def _validate_runs(path, as_json):
    from simulator.perf.published import published_summary, validate_published

    try:
        rows = validate_published(path)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    s = published_summary(rows)
    failed = [r for r in rows if r.reason is not None]
    for r in failed:  # loudly, also beside --json: a row the model cannot express is not a silent gap
        click.echo(f"capsim: cannot predict {r.name}: {r.reason}", err=True)
    if as_json:
        out = []
        for r in rows:
            item = {"name": r.name, "kind": r.kind, "device": r.device, "stack": r.stack, "metric": r.metric,
                    "predicted": r.predicted, "published": r.published, "error": r.error,
                    "confidence": r.confidence, "in_summary": r.in_summary}
            if r.band is not None:
                item["band"], item["in_band"] = list(r.band), r.in_band
            if r.reason is not None:
                item["reason"] = r.reason
            if r.notes:
                item["notes"] = r.notes
            out.append(item)
        click.echo(json.dumps({"runs": out, "summary": s}))
        return
    click.echo(f"{'run':<34} {'device':<14} {'stack':<14} {'metric':<20} {'published':>10} {'predicted':>10} {'error':>8}")
    for r in rows:
        if r.reason is not None:
            click.echo(f"{r.name:<34} {r.device:<14} {r.stack:<14} {r.metric:<20} CANNOT PREDICT: {r.reason}")
            continue
        mark = "" if r.in_summary else "  (not in summary)"
        click.echo(f"{r.name:<34} {r.device:<14} {r.stack:<14} {r.metric:<20} {_num(r.published):>10} "
                   f"{_num(r.predicted):>10} {r.error:>+8.1%}{mark}")
    rows_word = "row" if s["failed"] == 1 else "rows"
    click.echo(_summary_line(s, "summary_rows") + (f"; {s['failed']} {rows_word} could not be predicted" if failed else ""))
    coverage = s.get("training", {}).get("band_coverage")
    if coverage is not None:
        own = " (in-sample: the bands are built from these rows' cross-validated errors)" if path is None else ""
        click.echo(f"{coverage:.0%} of the training rows lie within the error band `capsim predict` gives their "
                   f"prediction{own}")


def _summary_line(s: dict, count_key: str = "rows") -> str:
    if not s.get(count_key):
        return "no rows to summarise"
    return (f"median |error| {s['median_abs_error']:.1%}, worst {s['worst_abs_error']:.1%}, "
            f"median signed {s['median_error']:+.1%} over {s[count_key]} row{'' if s[count_key] == 1 else 's'}")


def _calibrate(refit, as_json):
    from simulator.perf.calibration import calibrate, write_fit

    try:
        result = calibrate()
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    if refit:
        path = write_fit(result)
        click.echo(f"wrote {path}", err=True)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "rows"}))
        return
    click.echo(f"calibration set: {result['calibration_set']} ({result['in_sample']['rows']} training rows)")
    click.echo(f"{'stack':<18} {'rows':>5} {'efficiency':>11}")
    for name, v in result["stacks"].items():
        click.echo(f"{name:<18} {v['rows']:>5} {v['efficiency']:>11.3f}")
    click.echo(f"{'(pooled)':<18} {'':>5} {result['pooled_efficiency']:>11.3f}")
    moe_rows = sum(1 for r in result["rows"] if r.get("moe"))
    click.echo(f"MoE host time per local expert: {result['moe_host_us_per_expert']:.1f} us forward "
               f"(fitted on {moe_rows} MoE rows)")
    click.echo(f"{'in-sample:':<27}{_summary_line(result['in_sample'])}")
    for key, s in result["cross_validated"].items():
        click.echo(f"{key.replace('_', '-') + ':':<27}{_summary_line(s)}")


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
