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
