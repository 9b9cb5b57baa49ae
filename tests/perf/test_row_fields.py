"""A published row's metric, under any of its names and units, is the model's prediction expressed in it:
each derived metric equals its definition from the base prediction, and errors are signed so that
positive always means optimistic."""

import copy
import json
import math

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.cli import validate_perf
from simulator.perf.inference import predict_inference
from simulator.perf.model import ModelSpec
from simulator.perf.published import evaluate_run, flops_per_seq, published_summary, tpu_slice
from simulator.perf.row_fields import resolve_metric, signed_error, speed_ratio
from simulator.perf.serving_validation import predict_serving_row

SMALL = {"layers": 8, "hidden": 2048, "heads": 16, "ffn": 8192, "mlp": "gelu", "vocab": 32000, "seq_len": 4096}
TRAIN = {"name": "t", "device": "h100-sxm", "gpus": 16, "model": SMALL, "global_batch": 32,
         "layout": {"tp": 2, "zero": 1}, "stack": "megatron-core", "metric": "tokens_per_s_per_gpu", "value": 1000}
LLAMA2_7B = {"layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32, "ffn": 11008, "mlp": "swiglu", "vocab": 32000}
SERVE = {"name": "s", "kind": "serving", "device": "h100-sxm", "stack": "vllm", "model": LLAMA2_7B,
         "layout": {"tp": 2, "dtype": "bf16"}, "serving": {"batch": 64, "prompt_len": 1000, "output_len": 250},
         "metric": "output_tokens_per_s", "value": 5000}


def _serve(**change):
    return predict_serving_row({**SERVE, **change})


def test_names_and_units_resolve_to_the_model_metrics():
    assert resolve_metric("tokens_per_s_per_chip") == ("training", "tokens_per_s_per_gpu", 1.0)
    assert resolve_metric("samples_per_s") == ("training", "sequences_per_s", 1.0)
    assert resolve_metric("step_time_ms") == ("training", "step_time_s", 1000.0)
    assert resolve_metric("mean_ttft_ms") == ("serving", "ttft_s", 1000.0)
    assert resolve_metric("median_itl_ms") == ("serving", "tpot_s", 1000.0)
    assert resolve_metric("e2el_s") == ("serving", "request_latency_s", 1.0)
    assert resolve_metric("request_throughput") == ("serving", "requests_per_s", 1.0)
    # as tables print them: case, spaces, "/" for per, sec, TFLOP/s, a unit in parentheses, MFU in percent
    assert resolve_metric("Tokens / sec / GPU") == ("training", "tokens_per_s_per_gpu", 1.0)
    assert resolve_metric("Model TFLOP / sec / GPU") == resolve_metric("TFLOP/s/GPU") == \
        ("training", "tflops_per_gpu", 1.0)
    assert resolve_metric("MFU %") == resolve_metric("mfu_percent") == ("training", "mfu", 100.0)
    assert resolve_metric("iteration time (ms)") == resolve_metric("ms/step") == ("training", "step_time_s", 1000.0)
    assert resolve_metric("Time per step (s)") == resolve_metric("seconds/step") == ("training", "step_time_s", 1.0)
    assert resolve_metric("TTFT (ms)") == resolve_metric("Time to first token (ms)") == ("serving", "ttft_s", 1000.0)
    assert resolve_metric("Time per output token (ms)") == resolve_metric("ms/token") == \
        resolve_metric("Inter-token latency (ms)") == ("serving", "tpot_s", 1000.0)
    assert resolve_metric("Output tokens/s") == ("serving", "output_tokens_per_s", 1.0)
    # as the benchmark tools print them: vLLM bench_serving and trtllm-bench
    printed = {"Output token throughput (tok/s)": "output_tokens_per_s", "Request throughput (req/s)": "requests_per_s",
               "Total Token throughput (tok/s)": "total_tokens_per_s", "Mean E2EL (ms)": "request_latency_s",
               "Total Output Throughput (tokens/sec)": "output_tokens_per_s",
               "Per GPU Output Throughput (tokens/sec/gpu)": "output_tokens_per_s_per_gpu",
               "Average time-to-first-token [TTFT] (ms)": "ttft_s", "Average time-per-output-token [TPOT] (ms)": "tpot_s",
               "Average request latency (ms)": "request_latency_s"}
    assert {name: resolve_metric(name)[1] for name in printed} == printed
    # trtllm-bench's per-user speed and a whole run's latency are not what a row's metric can be
    assert resolve_metric("Per User Output Throughput (tokens/sec/user)") is None
    assert resolve_metric("Total Latency (ms)") is None
    # a tail is not what the model's one figure stands for, and a throughput has no millisecond form
    for bad in ("p99_ttft_ms", "output_tokens_per_ms", "joules", "HFU %", None, 3):
        assert resolve_metric(bad) is None


def test_errors_are_positive_when_the_model_is_optimistic():
    assert signed_error(100.0, 120.0, "output_tokens_per_s") == pytest.approx(0.2)
    assert signed_error(0.100, 0.080, "ttft_s") == pytest.approx(0.2)        # a time under-predicted
    assert signed_error(100.0, 80.0, "ttft_ms") == pytest.approx(0.2)
    assert signed_error(2.0, 2.5, "step_time_s") == pytest.approx(-0.25)     # slower than published
    assert speed_ratio(0.1, 0.05, "tpot_s") == pytest.approx(2.0)
    assert speed_ratio(10.0, 20.0, "tokens_per_s_per_gpu") == pytest.approx(2.0)


def test_training_metrics_follow_from_one_prediction():
    m = ModelSpec(**SMALL)
    p = predict_training("h100-sxm", m, 16, 32, tp=2, zero=1, stack="megatron-core")
    value = {metric: evaluate_run({**TRAIN, "metric": metric}).predicted
             for metric in ("tokens_per_s_per_gpu", "tokens_per_s", "sequences_per_s", "step_time_ms",
                            "tokens_per_s_per_chip", "tflops_per_gpu")}
    assert value["tokens_per_s_per_gpu"] == pytest.approx(p.tokens_per_s_per_gpu)
    assert value["tokens_per_s_per_chip"] == value["tokens_per_s_per_gpu"]
    assert value["tokens_per_s"] == pytest.approx(16 * p.tokens_per_s_per_gpu)
    assert value["sequences_per_s"] == pytest.approx(32 / p.step_time_s)
    assert value["step_time_ms"] == pytest.approx(1000 * p.step_time_s)
    # the causal convention counts half the score matmuls: 6N + 6 L h s per token instead of 6N + 12 L h s
    causal = evaluate_run({**TRAIN, "metric": "tflops_per_gpu", "flops": "6n_attn_causal"}).predicted
    n, s, L, h = m.active_params(), m.seq_len, m.layers, m.hidden
    assert causal / value["tflops_per_gpu"] == pytest.approx((6 * n + 6 * L * h * s) / (6 * n + 12 * L * h * s))
    assert flops_per_seq(m, "6n_attn_causal") == pytest.approx(6 * n * s + 6 * L * h * s * s)


def test_serving_throughputs_follow_from_the_replica_and_add_up_over_replicas():
    one = predict_inference("h100-sxm", ModelSpec(**LLAMA2_7B, seq_len=4096), tp=2, batch=64, prompt_len=1000,
                            output_len=250, stack="vllm")
    assert _serve() == pytest.approx(one.output_tokens_per_s)
    assert _serve(metric="total_tokens_per_s") == pytest.approx(one.output_tokens_per_s * 1250 / 250)
    assert _serve(metric="requests_per_s") == pytest.approx(one.output_tokens_per_s / 250)
    assert _serve(metric="requests_per_s") == pytest.approx(64 / one.request_latency_s)
    # 8 GPUs at TP 2 are four replicas: the deployment's throughput is four times one replica's ...
    assert _serve(gpus=8) == pytest.approx(4 * one.output_tokens_per_s)
    assert _serve(layout={**SERVE["layout"], "dp": 4}) == pytest.approx(4 * one.output_tokens_per_s)
    assert _serve(gpus=8, metric="request_throughput") == pytest.approx(4 * one.output_tokens_per_s / 250)
    # ... while per-GPU throughputs and latencies are the replica's
    assert _serve(gpus=8, metric="output_tokens_per_s_per_gpu") == pytest.approx(one.output_tokens_per_s_per_gpu)
    assert _serve(gpus=8, metric="total_tokens_per_s_per_gpu") == pytest.approx(one.output_tokens_per_s * 5 / 2)
    assert _serve(gpus=8, metric="mean_ttft_ms") == pytest.approx(1000 * one.ttft_s)
    assert _serve(metric="itl_s") == pytest.approx(one.tpot_s)
    assert _serve(metric="e2e_latency_s") == pytest.approx(one.request_latency_s)


def test_serving_rows_outside_the_model_are_refused_with_the_reason():
    for change, reason in (({"gpus": 3}, "whole number"), ({"gpus": 1}, "whole number"),
                           ({"layout": {"tp": 2, "pp": 2}}, "pipeline"), ({"metric": "p99_ttft_ms"}, "metric")):
        with pytest.raises(CapsimError, match=reason) as exc:
            _serve(**change)
        assert exc.value.where == "s"


def test_validate_runs_bias_counts_a_fast_latency_as_optimistic(tmp_path):
    ttft = _serve(metric="ttft_s")
    rows = [{**SERVE, "name": "fast-ttft", "metric": "ttft_s", "value": 2 * ttft},         # model 50% too fast
            {**SERVE, "name": "fast-tput", "value": _serve() / 1.5}]                        # model 50% too fast
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump({"runs": rows}))
    out = json.loads(CliRunner().invoke(validate_perf, ["--runs", str(path), "--json"]).stdout)
    errors = {r["name"]: r["error"] for r in out["runs"]}
    assert errors["fast-ttft"] == pytest.approx(0.5) and errors["fast-tput"] == pytest.approx(0.5)
    assert out["summary"]["median_error"] == pytest.approx(0.5)
    assert published_summary([evaluate_run(r) for r in rows])["serving"]["median_error"] == pytest.approx(0.5)


# Values a hand-written or machine-converted row may hold by mistake.
JUNK = st.sampled_from([None, 0, -1, 1.5, "x", "", "fp8", [], [1, 2], {}, {"a": 1}, True, math.nan, math.inf, 10**9])


@st.composite
def damaged_rows(draw):
    """A real row (training or serving) with up to three fields, top-level or nested, replaced or removed."""
    row = copy.deepcopy(draw(st.sampled_from([TRAIN, SERVE, {**TRAIN, "model": "llama3-8b"}])))
    for _ in range(draw(st.integers(1, 3))):
        target = row
        nested = [k for k, v in row.items() if isinstance(v, dict) and v]
        if nested and draw(st.booleans()):
            target = row[draw(st.sampled_from(nested))]
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.integers(0, 4)) == 0:
            del target[key]
        else:
            target[key] = copy.deepcopy(draw(JUNK))  # a later step may edit a drawn {"a": 1}: not the shared one
    return row


@settings(max_examples=150, deadline=None)
@given(damaged_rows())
def test_a_damaged_row_gets_a_prediction_or_a_reason_never_an_exception(row):
    result = evaluate_run(row)
    if result.reason is None:
        assert math.isfinite(result.predicted) and result.predicted > 0
    else:
        assert result.predicted is None and result.reason.strip()


def test_serving_rows_take_precisions_as_tables_write_them():
    assert _serve(layout={"tp": 2, "dtype": "BF16"}) == _serve()
    fp8 = _serve(layout={"tp": 2, "dtype": "fp8", "kv_dtype": "fp8"})
    assert _serve(layout={"tp": 2, "dtype": "FP8-CS", "kv_dtype": "FP8"}) == fp8
    assert _serve(layout={"tp": 2, "dtype": "NVFP4"}) == _serve(layout={"tp": 2, "dtype": "fp4"})


def test_published_figures_as_tables_print_them():
    from simulator.perf.row_fields import published_value

    assert published_value("1,633", "tokens_per_s_per_gpu") == (1633.0, None)
    assert published_value(0.462, "mfu") == (0.462, None)
    # an MFU above 1 or written with % is a percentage of peak; under "MFU %" the number stays as printed
    for printed in ("46.2%", 46.2, "46.2 %"):
        value, note = published_value(printed, "MFU")
        assert value == pytest.approx(0.462) and "read as" in note
    assert published_value(46.2, "MFU %") == (46.2, None)
    for bad, metric in (("12%", "tokens_per_s_per_gpu"), ("fast", "mfu"), (-3, "tflops_per_gpu"), (True, "mfu")):
        with pytest.raises(CapsimError, match="value"):
            published_value(bad, metric)
    # the same row with its figure printed either way gets the same error
    as_fraction = evaluate_run({**TRAIN, "metric": "mfu", "value": 0.4})
    as_percent = evaluate_run({**TRAIN, "metric": "mfu", "value": "40%"})
    assert as_percent.error == pytest.approx(as_fraction.error) and "read as 0.4" in as_percent.notes


def test_training_rows_count_nodes_and_spell_parallelism_as_tables_do():
    base = evaluate_run(TRAIN)
    by_nodes = {k: v for k, v in TRAIN.items() if k != "gpus"}
    per_node = evaluate_run({**by_nodes, "nodes": 2, "gpus_per_node": 8})
    profile_node = evaluate_run({**by_nodes, "nodes": 2})  # H100's profile: 8 devices per node
    spelled = evaluate_run({**TRAIN, "layout": {"tensor_parallel": 2, "zero": 1}})
    assert per_node.predicted == profile_node.predicted == spelled.predicted == base.predicted
    assert "devices per node" in profile_node.notes
    # MoE with TP and EP runs with sequence parallelism (Megatron-Core refuses it otherwise)
    moe = {**SMALL, "num_experts": 8, "top_k": 2}
    row = evaluate_run({**TRAIN, "model": moe, "layout": {"tp": 2, "ep": 4, "zero": 1}})
    assert row.reason is None and "sequence parallelism on" in row.notes
    explicit = evaluate_run({**TRAIN, "model": moe, "layout": {"tp": 2, "ep": 4, "zero": 1, "sequence_parallel": True}})
    assert explicit.predicted == row.predicted


def test_training_rows_name_tpu_slices_as_tpu_recipes_do():
    # v5p and v4 slices count TensorCores (two per chip), v5e and v6e slices count chips
    assert tpu_slice("v5p-1024") == ("tpu-v5p", 512) and tpu_slice("TPU v4-2048") == ("tpu-v4", 1024)
    assert tpu_slice("tpu-v6e-256") == ("tpu-v6e", 256) and tpu_slice("v5litepod-16") == ("tpu-v5e", 16)
    assert tpu_slice("v6e") is None and tpu_slice("h100-8") is None and tpu_slice("v5p-3") is None
    # a topology counts chips, whatever the generation (tpu-recipes write TPU7x slices so)
    assert tpu_slice("tpu7x-4x4x4") == ("tpu7x", 64) and tpu_slice("TPU7x 4x8x8") == ("tpu7x", 256)
    assert tpu_slice("v5p-4x4x8") == ("tpu-v5p", 128) and tpu_slice("v6e-16x16") == ("tpu-v6e", 256)
    assert tpu_slice("v6e-0x4") is None
    tpu = {**TRAIN, "device": "tpu-v5p", "gpus": 16, "stack": "maxtext", "layout": {"zero": 3}}
    by_chips = evaluate_run(tpu)
    by_slice = evaluate_run({**{k: v for k, v in tpu.items() if k != "gpus"}, "device": "v5p-32"})
    assert by_slice.predicted == by_chips.predicted and "16 chips of the v5p-32 slice" in by_slice.notes
    assert evaluate_run({**tpu, "device": "v5p-32"}).predicted == by_chips.predicted  # gpus agree with the slice
    wrong = evaluate_run({**tpu, "device": "v5p-32", "gpus": 32})
    assert wrong.predicted is None and "a slice of 16 chips" in wrong.reason


def test_predict_refuses_a_tpu_slice_as_device_and_says_what_to_give():
    from simulator.perf.cli import predict

    result = CliRunner().invoke(predict, ["--device", "v5p-1024", "--model", "llama3-8b", "--gpus", "8"])
    assert result.exit_code == 2 and "give --device tpu-v5p and --gpus 512" in result.output


def test_training_rows_written_with_maxtext_config_names_price_as_the_schema():
    explicit = {"name": "m", "stack": "maxtext", "device": "tpu-v5p", "gpus": 64, "global_batch": 256,
                "model": {**SMALL, "seq_len": 2048}, "metric": "tokens_per_s_per_gpu", "value": 1000,
                "layout": {"tp": 4, "micro_batch": 16, "zero": 3, "recompute": "full", "sequence_parallel": True}}
    unsized = {k: v for k, v in SMALL.items() if k != "seq_len"}
    maxtext = {"name": "m", "stack": "maxtext", "device": "v5p-128", "model": unsized, "max_target_length": 2048,
               "per_device_batch_size": 4, "ici_fsdp_parallelism": -1, "ici_tensor_parallelism": 4,
               "remat_policy": "qkv_proj_offloaded", "layout": {"sequence_parallel": True},
               "metric": "Tokens/s/device", "value": 1000}
    row = evaluate_run(maxtext)
    assert row.predicted == evaluate_run(explicit).predicted
    assert "global batch = per_device_batch_size 4 x 64 chips" in row.notes and "priced as full recompute" in row.notes
    # a policy that saves every matmul output recomputes no GEMM: the model's selective recompute
    minimal = evaluate_run({**maxtext, "remat_policy": "minimal"})
    assert minimal.predicted == evaluate_run({**explicit, "layout": {**explicit["layout"], "recompute": "selective"}}).predicted
    # gradient accumulation splits each data-parallel rank's share into microbatches
    accumulated = evaluate_run({**maxtext, "gradient_accumulation_steps": 2})
    assert accumulated.predicted == evaluate_run({**explicit, "layout": {**explicit["layout"], "micro_batch": 8}}).predicted
    # FSDP across slices or GPU nodes (gpu-recipes' MaxText configs: dcn_fsdp x ici_fsdp) is ZeRO-3 over all
    across = {k: v for k, v in maxtext.items() if k != "ici_fsdp_parallelism"}
    assert evaluate_run({**across, "ici_fsdp_parallelism": 8, "dcn_fsdp_parallelism": 2}).predicted == row.predicted
    assert evaluate_run({**maxtext, "num_slices": 2, "dcn_fsdp_parallelism": 2}).predicted == row.predicted
    assert evaluate_run({**maxtext, "dcn_data_parallelism": -1}).predicted == row.predicted  # one slice: no data axis
    # a data axis without FSDP: replicated state (ZeRO-0); beside FSDP (hybrid sharding, a multi-slice run by
    # default) it is ZeRO-3 inside that many replica groups
    replicated = evaluate_run({**across, "ici_data_parallelism": 16})
    assert replicated.predicted == evaluate_run({**explicit, "layout": {**explicit["layout"], "zero": 0}}).predicted
    assert evaluate_run({**across, "ici_data_parallelism": -1}).predicted == replicated.predicted
    hybrid = evaluate_run({**explicit, "layout": {**explicit["layout"], "dp_replicate": 2}}).predicted
    for key, value in (("num_slices", 2), ("dcn_data_parallelism", 2), ("ici_data_parallelism", 2)):
        assert evaluate_run({**maxtext, key: value}).predicted == hybrid != row.predicted
    # attention dot_product is unfused; MaxText's fused kernels are the stack's
    unfused = evaluate_run({**maxtext, "attention": "dot_product"})
    assert unfused.predicted == evaluate_run({**explicit, "layout": {**explicit["layout"], "flash": False}}).predicted
    assert evaluate_run({**maxtext, "attention": "flash"}).predicted == row.predicted
    # MaxText's quantization is the row's precision
    fp8 = evaluate_run({**maxtext, "quantization": "fp8"})
    assert fp8.predicted == evaluate_run({**explicit, "layout": {**explicit["layout"], "dtype": "fp8"}}).predicted
    # MaxText's model_type names resolve to the zoo's models
    from simulator.perf.published import run_model

    assert run_model({"model": "llama4-17b-128e"}) == run_model({"model": "llama4-maverick"})
    assert run_model({"model": "llama4-17b-16e"}).num_experts == 16
    assert run_model({"model": "deepseek3-671b"}) == run_model({"model": "deepseek-v3"})


def test_a_training_row_carries_the_error_band_predict_prints_and_the_summary_its_coverage():
    from simulator.perf.band import error_band

    row = evaluate_run(TRAIN)
    band = error_band("h100-sxm", "megatron-core", ModelSpec(**SMALL).total_params() / 1e9, "bf16")
    assert row.band == (band.low_error, band.high_error) and band.low_error < band.high_error
    # the published figure inside and outside the band: the speed error predicted/published - 1 against it
    lo, hi = band.interval(row.predicted)
    inside = evaluate_run({**TRAIN, "value": (lo + hi) / 2})
    outside = evaluate_run({**TRAIN, "value": hi * 1.5})
    assert inside.in_band is True and outside.in_band is False
    summary = published_summary([inside, outside, evaluate_run({**TRAIN, "value": lo * 1.01})])
    assert summary["training"]["band_coverage"] == pytest.approx(2 / 3)
    # a row without a prediction has no band; serving rows are not banded (their band is built from them)
    assert evaluate_run({**TRAIN, "gpus": 3}).band is None and evaluate_run(SERVE).band is None
