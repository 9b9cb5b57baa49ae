"""`capsim predict` and `capsim validate-perf` (registered on the main group by simulator/cli.py)."""

from __future__ import annotations

import json

import click

from simulator.errors import CapsimError


def _model_options(command):
    """The options that describe the device and the transformer, shared by predict and predict-inference."""
    options = [
        click.option("--device", required=True, help="Device id (a file name in hardware_profiles/ without .yaml)."),
        click.option("--layers", type=int, required=True),
        click.option("--hidden", type=int, required=True),
        click.option("--heads", type=int, required=True),
        click.option("--kv-heads", type=int, default=None, help="GQA key/value heads (default: --heads)."),
        click.option("--ffn", type=int, default=None, help="MLP inner size (default 4 x hidden)."),
        click.option("--mlp", type=click.Choice(["gelu", "swiglu"]), default="gelu"),
        click.option("--experts", "num_experts", type=int, default=1, help="MoE experts per layer (1 = dense)."),
        click.option("--top-k", type=int, default=1, help="MoE experts per token."),
        click.option("--vocab", type=int, required=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@click.command("predict")
@_model_options
@click.option("--gpus", type=int, required=True)
@click.option("--seq-len", type=int, required=True)
@click.option("--global-batch", type=int, required=True, help="Sequences per step.")
@click.option("--micro-batch", type=int, default=1)
@click.option("--tp", type=int, default=1)
@click.option("--pp", type=int, default=1)
@click.option("--cp", type=int, default=1)
@click.option("--zero", type=click.IntRange(0, 3), default=1)
@click.option("--sequence-parallel", is_flag=True)
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8"]), default="bf16")
@click.option("--virtual-stages", type=int, default=1)
@click.option("--flash/--no-flash", default=True, help="Fused attention kernels (default on).")
@click.option("--overlap/--no-overlap", default=True, help="Overlap gradient reduction with backward.")
@click.option("--moe-ffn", type=int, default=None, help="MoE: inner size of one expert (default --ffn).")
@click.option("--shared-experts", type=int, default=0, help="MoE: always-on shared experts of --moe-ffn (DeepSeek).")
@click.option("--first-dense-layers", type=int, default=0, help="MoE: leading dense layers of --ffn (DeepSeek-V3: 3).")
@click.option("--moe-layers", type=int, default=None,
              help="MoE: MoE layers among the rest, the others dense and interleaved (default: all).")
@click.option("--ep", type=int, default=1, help="MoE: expert-parallel degree (must divide --experts and tp*cp*dp).")
@click.option("--etp", type=int, default=None, help="MoE: expert tensor-parallel degree (default --tp, as Megatron-Core).")
@click.option("--capacity-factor", type=float, default=None,
              help="MoE: expert capacity factor, tokens dropped or padded to it (default: dropless).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict(device, gpus, layers, hidden, heads, kv_heads, ffn, mlp, num_experts, top_k, seq_len, vocab,
            global_batch, micro_batch, tp, pp, cp, zero, sequence_parallel, recompute, dtype, virtual_stages,
            flash, overlap, moe_ffn, shared_experts, first_dense_layers, moe_layers, ep, etp, capacity_factor,
            as_json):
    """Predict step time, throughput, MFU and memory of one training configuration."""
    from simulator.perf.api import predict_training
    from simulator.perf.model import ModelSpec

    try:
        model = ModelSpec(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn, mlp=mlp,
                          vocab=vocab, seq_len=seq_len, num_experts=num_experts, top_k=top_k, moe_ffn=moe_ffn,
                          shared_experts=shared_experts, first_dense_layers=first_dense_layers,
                          moe_layers=moe_layers)
        pred = predict_training(device, model, gpus, global_batch, tp=tp, pp=pp, cp=cp, micro_batch=micro_batch,
                                virtual_stages=virtual_stages, zero=zero, sequence_parallel=sequence_parallel,
                                recompute=recompute, dtype=dtype, flash=flash, overlap_grad_reduce=overlap,
                                ep=ep, etp=etp, capacity_factor=capacity_factor)
    except CapsimError as exc:
        raise click.UsageError(str(exc)) from None
    out = pred.as_dict()
    if as_json:
        click.echo(json.dumps(out))
        return
    lay = pred.layout
    rows = [
        ("device", f"{device} x {gpus}"),
        ("layout", f"TP{lay.tp} PP{lay.pp} CP{lay.cp} DP{lay.dp}, micro-batch {lay.micro_batch}, v={lay.virtual_stages}, "
                   f"ZeRO-{lay.zero}, recompute {lay.recompute}{', SP' if lay.sequence_parallel else ''}"
                   + (f"; experts EP{lay.ep} ETP{lay.expert_tp} EDP{lay.expert_dp}" if model.is_moe else "")),
        ("step time", f"{pred.step_time_s:.3f} s"),
        ("tokens/s per GPU", f"{pred.tokens_per_s_per_gpu:,.0f}"),
        ("model TFLOP/s per GPU", f"{pred.model_tflops_per_gpu:.1f}"),
        ("MFU", f"{pred.mfu:.1%}"),
        ("memory per device", f"{pred.memory_per_device_gib:.1f} GiB ({'fits' if pred.fits else 'does NOT fit'})"),
    ]
    rows += [(f"  {k}", f"{v:.3f} s") for k, v in out["breakdown"].items() if k != "ep_comm_s" or model.is_moe]
    click.echo(_table(rows))


@click.command("predict-inference")
@_model_options
@click.option("--tp", type=int, default=1, help="Devices of one tensor-parallel replica.")
@click.option("--batch", type=int, default=1, help="Requests served together.")
@click.option("--prompt-len", type=int, required=True)
@click.option("--output-len", type=int, required=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8"]), default="bf16")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict_inference_cmd(device, layers, hidden, heads, kv_heads, ffn, mlp, num_experts, top_k, vocab, tp, batch,
                          prompt_len, output_len, dtype, as_json):
    """Predict time to first token, time per output token, throughput and memory of serving a model."""
    from simulator.perf.inference import predict_inference
    from simulator.perf.model import ModelSpec

    try:
        model = ModelSpec(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn, mlp=mlp,
                          vocab=vocab, seq_len=prompt_len + output_len, num_experts=num_experts, top_k=top_k)
        pred = predict_inference(device, model, tp=tp, batch=batch, prompt_len=prompt_len,
                                 output_len=output_len, dtype=dtype)
    except CapsimError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(pred.as_dict()))
        return
    click.echo(_table([
        ("device", f"{device} x {tp} (one replica), batch {batch}"),
        ("time to first token", f"{pred.ttft_s * 1e3:,.1f} ms"),
        ("time per output token", f"{pred.tpot_s * 1e3:,.2f} ms"),
        ("request latency", f"{pred.request_latency_s:,.2f} s"),
        ("output tokens/s", f"{pred.output_tokens_per_s:,.0f} ({pred.output_tokens_per_s_per_gpu:,.0f} per GPU)"),
        ("memory per device", f"{pred.memory_per_device_gib:.1f} GiB (weights {pred.weights_gib:.1f}, "
                              f"KV cache {pred.kv_cache_gib:.1f}; {'fits' if pred.fits else 'does NOT fit'})"),
    ]))


@click.command("validate-perf")
@click.option("--table", type=click.Path(dir_okay=False), default=None,
              help="Validation CSV (default ../shared/data/calibration/megatron_a100_validation.csv).")
@click.option("--published", is_flag=True,
              help="Use the other published runs (H100, TPU v4, A100) in workloads/validation/published_runs.yaml.")
@click.option("--json", "as_json", is_flag=True)
def validate_perf(table, published, as_json):
    """Predicted vs published Megatron runs (SC'21 Table 1, Korthikanti 2022 Table 5), with errors."""
    from simulator.perf.validate import summary, validate

    if published:
        _validate_published(table, as_json)
        return

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


def _validate_published(table, as_json):
    from simulator.perf.published import published_summary, validate_published

    try:
        rows = validate_published(table)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    s = published_summary(rows)
    if as_json:
        click.echo(json.dumps({"rows": [{"name": r.name, "device": r.device, "metric": r.metric,
                                         "published": r.published, "predicted": r.predicted, "error": r.error,
                                         "confidence": r.confidence, "in_summary": r.in_summary} for r in rows],
                               **s}))
        return
    click.echo(f"{'run':<28} {'device':<14} {'metric':<20} {'published':>10} {'predicted':>10} {'error':>8}")
    for r in rows:
        mark = "" if r.in_summary else "  (not in summary)"
        click.echo(f"{r.name:<28} {r.device:<14} {r.metric:<20} {_num(r.published):>10} {_num(r.predicted):>10} "
                   f"{r.error:>+8.1%}{mark}")
    click.echo(f"median |error| {s['median_abs_error']:.1%}, worst {s['worst_abs_error']:.1%}, "
               f"median signed {s['median_error']:+.1%} over {s['summary_rows']} rows")


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
