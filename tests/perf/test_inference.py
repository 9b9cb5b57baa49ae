"""Serving predictions against hand-worked closed forms: KV-cache size, the weight-read floor of
decode, the FLOP floor of prefill, and MoE decode reading only the experts its tokens pick."""

import math

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.perf.inference import experts_touched, kv_cache_bytes, predict_inference
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile

LLAMA2_7B = ModelSpec(layers=32, hidden=4096, heads=32, ffn=11008, mlp="swiglu", vocab=32000, seq_len=4096)


def test_kv_cache_of_llama2_7b_is_half_a_mebibyte_per_token():
    # K and V x 32 layers x 4096 (32 heads x 128) x 2 bytes = 524,288 bytes per token.
    assert kv_cache_bytes(LLAMA2_7B, tp=1, batch=1, context=1) == 524_288
    assert kv_cache_bytes(LLAMA2_7B, tp=2, batch=3, context=10) == 524_288 * 3 * 10 / 2


@pytest.mark.parametrize("device", ["a100-sxm-80gb", "h100-sxm"])
def test_batch_one_decode_is_bound_by_reading_the_weights(device):
    pred = predict_inference(device, LLAMA2_7B, batch=1, prompt_len=128, output_len=128)
    floor = LLAMA2_7B.total_params() * 2 / (load_profile(device).memory_bw_gbs * 1e9)
    assert floor < pred.tpot_s < 2 * floor


def test_tensor_parallel_decode_is_faster_but_not_twice_as_fast():
    one = predict_inference("h100-sxm", LLAMA2_7B, tp=1, batch=1, prompt_len=128, output_len=128).tpot_s
    two = predict_inference("h100-sxm", LLAMA2_7B, tp=2, batch=1, prompt_len=128, output_len=128).tpot_s
    assert one / 2 < two < one


def test_long_prefill_is_bound_by_its_flops():
    pred = predict_inference("h100-sxm", LLAMA2_7B, batch=8, prompt_len=4096, output_len=1)
    flops = 2 * LLAMA2_7B.active_params() * 8 * 4096
    floor = flops / (load_profile("h100-sxm").peak("bf16") * 1e12)
    assert floor < pred.ttft_s < 2 * floor


def test_moe_decode_reads_only_the_experts_its_tokens_pick():
    assert experts_touched(8, 2, 1) == 2
    assert experts_touched(8, 2, 1000) == pytest.approx(8)
    assert experts_touched(8, 2, 4) == pytest.approx(8 * (1 - 0.75**4))
    moe = ModelSpec(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu", vocab=32000,
                    num_experts=8, top_k=2)
    dense_same_size = ModelSpec(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=8 * 14336, mlp="swiglu",
                                vocab=32000)
    sparse = predict_inference("h100-sxm", moe, batch=1, prompt_len=64, output_len=64)
    dense = predict_inference("h100-sxm", dense_same_size, batch=1, prompt_len=64, output_len=64)
    assert sparse.weights_gib == pytest.approx(dense.weights_gib, rel=1e-3)
    assert sparse.tpot_s < dense.tpot_s / 2


def test_throughput_and_memory_follow_from_the_times():
    pred = predict_inference("a100-sxm-80gb", LLAMA2_7B, batch=16, prompt_len=512, output_len=256)
    assert pred.request_latency_s == pytest.approx(pred.ttft_s + 256 * pred.tpot_s)
    assert pred.output_tokens_per_s == pytest.approx(16 * 256 / pred.request_latency_s)
    assert pred.kv_cache_gib == pytest.approx(524_288 * 16 * 768 / 2**30)
    assert pred.fits
    assert not predict_inference("a100-sxm-80gb", LLAMA2_7B, batch=256, prompt_len=4096, output_len=1024).fits


def test_cli_prints_json_and_names_bad_arguments():
    args = ["predict-inference", "--device", "h100-sxm", "--layers", "32", "--hidden", "4096", "--heads", "32",
            "--ffn", "11008", "--mlp", "swiglu", "--vocab", "32000", "--prompt-len", "128", "--output-len", "64"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0
    assert '"tpot_s"' in result.output and math.isfinite(float(result.output.split('"tpot_s": ')[1].split(",")[0]))
    bad = CliRunner().invoke(main, [*args, "--tp", "3"])
    assert bad.exit_code != 0 and "--tp" in bad.output
    zero = CliRunner().invoke(main, [*args[:-2], "--output-len", "0"])
    assert zero.exit_code != 0 and "--output-len" in zero.output


# ---- decode attention physics, FP8, untied embeddings, serving stacks ----------------------------------

LLAMA3_8B = ModelSpec(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu", vocab=128256,
                      tied_embeddings=False)


def test_gqa_aware_decode_reads_each_kv_head_once_and_legacy_kernels_once_per_query_head():
    from simulator.perf.inference import decode_kv_read_bytes

    # K and V x 32 layers x 1000 tokens x 8 KV heads x 128 x 2 bytes = 131,072,000 bytes for one sequence
    aware = decode_kv_read_bytes(LLAMA3_8B, tp=1, batch=1, context=1000, kv_dtype="bf16", gqa_aware=True)
    assert aware == 2 * 32 * 1000 * 8 * 128 * 2 == 131_072_000
    # a kernel that is not GQA-aware loads the group's KV head again for each of its 32/8 = 4 query heads
    legacy = decode_kv_read_bytes(LLAMA3_8B, tp=1, batch=1, context=1000, kv_dtype="bf16", gqa_aware=False)
    assert legacy == 4 * aware == 524_288_000
    # TP 8: one KV head and 4 query heads per device; TP 16: the KV head is replicated, 2 query heads each
    assert decode_kv_read_bytes(LLAMA3_8B, 8, 1, 1000, "bf16", False) == 4 * decode_kv_read_bytes(LLAMA3_8B, 8, 1, 1000)
    assert decode_kv_read_bytes(LLAMA3_8B, 16, 1, 1000, "bf16", False) == 2 * decode_kv_read_bytes(LLAMA3_8B, 16, 1, 1000)
    # multi-head attention (Llama 2 7B): both kernels read the same bytes
    assert decode_kv_read_bytes(LLAMA2_7B, 1, 4, 512, "bf16", False) == decode_kv_read_bytes(LLAMA2_7B, 1, 4, 512)


def test_a_stack_without_gqa_aware_decode_is_slower_at_long_context():
    from simulator.perf.decode import decode_step

    aware = decode_step("h100-sxm", LLAMA3_8B, 1, 64, 4096, stack="tensorrt-llm")
    legacy = decode_step("h100-sxm", LLAMA3_8B, 1, 64, 4096, stack="tensorrt-llm-legacy")
    assert legacy.kv_s == pytest.approx(4 * aware.kv_s, rel=0.02)
    assert legacy.weights_s == aware.weights_s and legacy.total_s > 1.5 * aware.total_s


def test_fp8_kv_cache_halves_the_kv_bytes_stored_and_read():
    from simulator.perf.decode import decode_step

    assert kv_cache_bytes(LLAMA3_8B, 1, 8, 2048, "fp8") == kv_cache_bytes(LLAMA3_8B, 1, 8, 2048, "bf16") / 2
    bf16 = predict_inference("h100-sxm", LLAMA3_8B, batch=32, prompt_len=2048, output_len=256)
    fp8 = predict_inference("h100-sxm", LLAMA3_8B, batch=32, prompt_len=2048, output_len=256, kv_dtype="fp8")
    assert fp8.kv_cache_gib == pytest.approx(bf16.kv_cache_gib / 2)
    assert fp8.weights_gib == bf16.weights_gib and fp8.kv_dtype == "fp8" and bf16.kv_dtype == "bf16"
    # reading it: the same number of kernels over half the bytes
    full = decode_step("h100-sxm", LLAMA3_8B, 1, 32, 2176, kv_dtype="bf16")
    half = decode_step("h100-sxm", LLAMA3_8B, 1, 32, 2176, kv_dtype="fp8")
    assert 0.45 * full.kv_s < half.kv_s < 0.6 * full.kv_s


def test_fp8_weights_halve_the_weight_bytes_decode_reads():
    from simulator.perf.decode import decode_step
    from simulator.perf.inference import weight_bytes

    assert weight_bytes(LLAMA3_8B, 1, "fp8") == weight_bytes(LLAMA3_8B, 1, "bf16") / 2
    bf16 = decode_step("h100-sxm", LLAMA3_8B, 1, 1, 512, dtype="bf16")
    fp8 = decode_step("h100-sxm", LLAMA3_8B, 1, 1, 512, dtype="fp8")
    assert 0.45 * bf16.weights_s < fp8.weights_s < 0.65 * bf16.weights_s


def test_llama3_8b_weights_count_the_untied_embedding_and_lm_head():
    from simulator.perf.zoo import load_model

    layers = 32 * LLAMA3_8B.layer_params()
    assert LLAMA3_8B.total_params() == layers + 2 * 128256 * 4096
    assert LLAMA3_8B.total_params() == pytest.approx(8.03e9, rel=0.01)  # model card: 8.03B
    assert replace_tied(LLAMA3_8B).total_params() == layers + 128256 * 4096
    zoo = load_model("llama3-8b").model_spec()
    assert zoo.tied_embeddings is False and zoo.total_params() == LLAMA3_8B.total_params()
    pred = predict_inference("h100-sxm", zoo, batch=1, prompt_len=128, output_len=128)
    assert pred.weights_gib == pytest.approx(8.03e9 * 2 / 2**30, rel=0.01)  # 14.96 GiB at bf16
    # FLOPs count the LM head once, tied or not: training is unchanged by the flag
    assert zoo.active_params() == replace_tied(zoo).active_params()


def replace_tied(m):
    from dataclasses import replace

    return replace(m, tied_embeddings=True)


def test_eager_stack_is_host_bound_at_batch_one_and_graph_stacks_pay_their_step_overhead():
    from simulator.perf.decode import decode_step
    from simulator.perf.serving_stacks import STACKS

    eager = decode_step("h100-sxm", LLAMA3_8B, 1, 1, 256, stack="hf-eager")
    st = STACKS["hf-eager"]
    # hand-worked: 32 layers x (91 operators x 6.5 us + 50 kernel launches x 4 us) = 25.3 ms
    assert eager.host_s == pytest.approx(32 * (91 * 6.5e-6 + 50 * 4e-6))
    assert st.host_s_per_layer == pytest.approx(91 * 6.5e-6 + 50 * 4e-6)
    assert eager.total_s == pytest.approx(max(eager.gpu_s, eager.host_s))
    vllm = decode_step("h100-sxm", LLAMA3_8B, 1, 1, 256, stack="vllm")
    legacy = decode_step("h100-sxm", LLAMA3_8B, 1, 1, 256, stack="vllm-legacy")
    assert vllm.host_s == 0 and vllm.total_s == pytest.approx(vllm.gpu_s + STACKS["vllm"].step_overhead_s)
    assert legacy.total_s - vllm.total_s == pytest.approx(STACKS["vllm-legacy"].step_overhead_s
                                                          - STACKS["vllm"].step_overhead_s, rel=0.05)


def test_cli_takes_kv_dtype_stack_and_untied_embeddings():
    import json

    args = ["predict-inference", "--device", "h100-sxm", "--layers", "32", "--hidden", "4096", "--heads", "32",
            "--kv-heads", "8", "--ffn", "14336", "--mlp", "swiglu", "--vocab", "128256", "--prompt-len", "1024",
            "--output-len", "256", "--batch", "16", "--untied-embeddings"]
    base = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    fp8 = json.loads(CliRunner().invoke(main, [*args, "--kv-dtype", "fp8", "--stack", "tensorrt-llm", "--json"]).output)
    assert base["stack"] == "vllm" and fp8["stack"] == "tensorrt-llm" and fp8["kv_dtype"] == "fp8"
    assert fp8["kv_cache_gib"] == pytest.approx(base["kv_cache_gib"] / 2)
    assert base["weights_gib"] == pytest.approx(14.96, rel=0.01)
    bad = CliRunner().invoke(main, [*args, "--stack", "nope"])
    assert bad.exit_code != 0 and "--stack" in bad.output


def test_eager_stack_operator_counts_are_those_the_benchmark_layer_dispatches():
    """hf-eager's operators per layer are counted, not assumed: the eager decoder layer of
    benchmarks/eager_host_overhead.py dispatches exactly that many aten operators per decode step."""
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    from simulator.perf.serving_stacks import STACKS

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "eager_host_overhead.py"
    spec = importlib.util.spec_from_file_location("eager_host_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    total, kernels = bench.layer_ops()
    assert (total, kernels) == (STACKS["hf-eager"].host_ops_per_layer, STACKS["hf-eager"].host_kernels_per_layer)
    assert bench.layer_ops(heads=8, kv_heads=2) == (total, kernels)  # GQA repeats the same operators


def test_moe_decode_reads_the_touched_experts_once_in_grouped_gemms():
    """At batch 1 a top-k MoE layer reads exactly k experts, each moe_ffn wide (not the dense ffn), in one
    grouped GEMM per projection: k times one expert's GEMM less the launches the grouping saves, plus
    the router GEMM."""
    from simulator.perf.decode import decode_mlp_time
    from simulator.perf.kernels import KERNEL_OVERHEAD_S, gemm_time
    from simulator.perf.model import ModelSpec

    shape = dict(layers=4, hidden=2048, heads=16, kv_heads=4, mlp="swiglu", vocab=32000, seq_len=4096)
    moe = ModelSpec(**shape, ffn=6144, num_experts=64, top_k=4, moe_ffn=768)
    t_moe, kernels = decode_mlp_time("h100-sxm", moe, 1, 1, "bf16")
    one_expert = gemm_time("h100-sxm", 1, 2 * 768, 2048, "bf16") + gemm_time("h100-sxm", 1, 2048, 768, "bf16")
    router = gemm_time("h100-sxm", 1, 64, 2048, "bf16")
    per_layer = router + 4 * one_expert - 2 * 3 * KERNEL_OVERHEAD_S
    assert t_moe == pytest.approx(4 * per_layer, rel=1e-9)
    assert kernels == 4 * 3  # router and two grouped GEMMs a layer, whatever the experts touched
    assert decode_mlp_time("h100-sxm", moe, 1, 64, "bf16")[1] == kernels
    # wider experts read more; always-on shared experts add one MLP a layer
    wide = ModelSpec(**shape, ffn=6144, num_experts=64, top_k=4, moe_ffn=6144)
    assert decode_mlp_time("h100-sxm", wide, 1, 1, "bf16")[0] > 3 * t_moe
    shared = ModelSpec(**shape, ffn=6144, num_experts=64, top_k=4, moe_ffn=768, shared_experts=2)
    assert decode_mlp_time("h100-sxm", shared, 1, 1, "bf16") > (t_moe, kernels)
