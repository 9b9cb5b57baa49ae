"""FP4 (NVFP4) as a precision: the peak fallback chain, the GEMM curve from same-run ratios, the NVFP4 casts of a
training layer, serving weight bytes and decode, the KV cache refused in FP4, and bf16 / fp8 predictions
unchanged from before fp4 existed."""

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.decode import decode_step
from simulator.perf.inference import kv_cache_bytes, predict_inference, weight_bytes
from simulator.perf.kernels import BYTES, KERNEL_OVERHEAD_S, gemm_curve, gemm_time, hbm_curve, memory_time
from simulator.perf.layout import make_layout
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.published import DTYPE_ALIASES
from simulator.perf.step import (
    FP4_CAST_BYTES_BWD,
    FP4_CAST_BYTES_FWD,
    HIGH_PRECISION,
    cast_times,
    layer_times,
)
from simulator.perf.zoo import load_model

LLAMA3_70B = load_model("llama3-70b").model_spec()


def test_fp4_peak_falls_back_to_fp8_then_bf16():
    # Blackwell: its own dense FP4 peak (HGX B200 144 PFLOPS sparse / 8 GPUs / 2; GB200 NVL72 1440 / 72 / 2;
    # Verda's per-GPU table for B300 and GB300)
    assert [load_profile(d).peak("fp4") for d in ("b200", "gb200", "b300", "gb300")] == [9000, 10000, 14000, 15000]
    # Hopper has no FP4 tensor cores: its FP8 peak (989 x 2, as the profile writes it 1979)
    h100 = load_profile("h100-sxm")
    assert "fp4" not in h100.peak_tflops and h100.peak("fp4") == h100.peak("fp8") == 1979
    # A100 has neither: its BF16 peak
    assert load_profile("a100-sxm-80gb").peak("fp4") == load_profile("a100-sxm-80gb").peak("bf16") == 312
    # the other precisions keep their old peaks
    assert load_profile("b200").peak("fp8") == 4500 and load_profile("b200").peak("bf16") == 2250


def test_no_device_other_than_blackwell_has_an_fp4_peak():
    from simulator.profiles import list_devices

    with_fp4 = {d for d in list_devices() if load_profile(d).peak_tflops.get("fp4")}
    assert with_fp4 == {"b200", "gb200", "b300", "gb300"}


def test_fp4_follows_the_same_run_nvfp4_to_bf16_ratio_on_the_bf16_curve():
    # B200 profile, measured.relative_gemm: vLLM bench_nvfp4_gemm at M=16384, N=6144, K=4096, NVFP4 3904.3
    # TFLOP/s against BF16 1360.1 in the same run: 43.4% of the FP4 peak where BF16 ran at 60.4% of its own
    flops = 2.0 * 16384 * 6144 * 4096
    ratio = (3904.3 / 9000) / (1360.1 / 2250)
    assert gemm_curve("b200", "fp4")(flops) == pytest.approx(gemm_curve("b200", "bf16")(flops) * ratio, rel=1e-12)
    # GB200 (reference b200) takes B200's ratios onto its own BF16 curve
    assert gemm_curve("gb200", "fp4")(flops) == pytest.approx(gemm_curve("gb200", "bf16")(flops) * ratio, rel=1e-12)
    # B300 measured one ratio of its own (Transformer Engine's pre-quantized layer: 3.754 ms NVFP4 against
    # 12.835 ms BF16 for the same FLOPs): the same at every size; GB300 takes it from B300
    b300 = (5107.3 / 14000) / (1493.8 / 2250)
    for size in (2.0**30, 2.0**36, flops, 2.0**44):
        for dev in ("b300", "gb300"):
            assert gemm_curve(dev, "fp4")(size) == pytest.approx(gemm_curve(dev, "bf16")(size) * b300, rel=1e-12)
    # at training sizes NVFP4 runs 1.2-1.6x FP8, not the 2x of the peaks
    n = 16384  # 8.8 TFLOP: compute-bound at either rate
    fp4 = gemm_time("b200", n, n, n, "fp4") - KERNEL_OVERHEAD_S
    fp8 = gemm_time("b200", n, n, n, "fp8") - KERNEL_OVERHEAD_S
    assert 1.2 < fp8 / fp4 < 1.6


def test_fp4_without_ratios_in_reach_borrows_the_next_class_curve():
    assert gemm_curve("h100-sxm", "fp4") == gemm_curve("h100-sxm", "fp8")
    assert gemm_curve("a100-sxm-80gb", "fp4") == gemm_curve("a100-sxm-80gb", "bf16")  # no fp8 points there
    n = 16384  # on H100 it runs at the FP8 rate: the same time
    assert gemm_time("h100-sxm", n, n, n, "fp4") == gemm_time("h100-sxm", n, n, n, "fp8")


@pytest.mark.parametrize("entry, expected", [
    ({"m": 1, "n": 2, "k": 3, "dtype": "fp4", "tflops": 1.0, "against": "fp4", "against_tflops": 1.0}, "different classes"),
    ({"m": 1, "n": 2, "k": 3, "dtype": "fp4", "tflops": 1.0, "against": "bf16"}, "against_tflops"),
    ({"flops": 1e12, "dtype": "fp4", "tflops": -1.0, "against": "bf16", "against_tflops": 1.0}, "positive"),
    ({"m": 1, "n": 2, "k": 3, "dtype": "int3", "tflops": 1.0, "against": "bf16", "against_tflops": 1.0}, "int3"),
])
def test_bad_relative_gemm_points_are_refused_naming_the_entry(entry, expected):
    from simulator.perf.profile import profile_from_dict
    from simulator.profiles import load_profile_yaml

    data = dict(load_profile_yaml("b200"))
    data["measured"] = dict(data["measured"], relative_gemm=[entry])
    with pytest.raises(CapsimError, match=expected) as err:
        profile_from_dict(data, "b200.yaml")
    assert "measured.relative_gemm[0]" in str(err.value)


def test_nvfp4_bytes_per_element():
    # 4-bit E2M1 element + one E4M3 scale byte per 16 elements
    assert BYTES["fp4"] == 0.5 + 1 / 16 == 0.5625
    assert FP4_CAST_BYTES_FWD == 2 + 0.5625  # read BF16, write NVFP4
    # read BF16, write NVFP4 and its copy along the other dimension, re-read for the Hadamard amax pass
    assert FP4_CAST_BYTES_BWD == 2 + 0.5625 + 0.5625 + 2 == 5.125
    assert HIGH_PRECISION["fp4"] == "bf16"


def test_nvfp4_layer_costs_its_gemms_and_casts_over_bf16():
    # one dense layer at fp4 vs bf16 on B200 ("kernels" stack: no host floor, efficiency 1): the forward
    # differs by the GEMMs' FP4 rate and by casting every GEMM's activation operand (2.5625 B per
    # element, one kernel each); the backward by the dgrad/wgrad GEMMs and the casts of every output
    # gradient and input again (5.125 B per element, four kernels per GEMM); attention stays BF16
    m = ModelSpec(layers=2, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu", vocab=32000, seq_len=4096)
    tok, h, f = 4096, 4096, 14336
    shapes = [(tok, h + 2 * 8 * 128, h), (tok, h, h), (tok, 2 * f, h), (tok, h, f)]
    act_in = 3 * tok * h + tok * f
    grad_out = tok * (h + 2 * 8 * 128) + tok * h + tok * 2 * f + tok * h
    cast_f = memory_time("b200", 2.5625 * act_in, 4)
    cast_b = memory_time("b200", 5.125 * (grad_out + act_in), 16)
    assert cast_times("b200", "fp4", shapes) == (cast_f, cast_b)
    assert cast_times("b200", "bf16", shapes) == (0.0, 0.0)
    fwd = {dt: sum(gemm_time("b200", a, b, c, dt) for a, b, c in shapes) for dt in ("fp4", "bf16")}
    bwd = {dt: sum(gemm_time("b200", a, c, b, dt) + gemm_time("b200", c, b, a, dt) for a, b, c in shapes)
           for dt in ("fp4", "bf16")}
    lt4 = layer_times("b200", m, make_layout(m, 1, 1, dtype="fp4", stack="kernels"))
    lt16 = layer_times("b200", m, make_layout(m, 1, 1, dtype="bf16", stack="kernels"))
    assert lt4.fwd_compute - lt16.fwd_compute == pytest.approx(fwd["fp4"] - fwd["bf16"] + cast_f, rel=1e-9)
    assert lt4.bwd_compute - lt16.bwd_compute == pytest.approx(bwd["fp4"] - bwd["bf16"] + cast_b, rel=1e-9)
    lt8 = layer_times("b200", m, make_layout(m, 1, 1, dtype="fp8", stack="kernels"))
    assert lt4.fwd_compute < lt8.fwd_compute < lt16.fwd_compute


def test_moe_expert_gemms_pay_the_nvfp4_casts():
    from simulator.perf.moe import routed_times

    mix = load_model("mixtral-8x7b").model_spec()
    lay = {dt: make_layout(mix, 8, 8, tp=2, ep=4, sequence_parallel=True, dtype=dt, stack="kernels")
           for dt in ("fp4", "fp8", "bf16")}
    t = {dt: routed_times("b200", mix, lay[dt]) for dt in lay}
    assert t["fp4"][0] < t["fp8"][0] < t["bf16"][0]  # forward: faster GEMMs outweigh the casts


def test_training_fp4_prices_mfu_against_the_fp4_peak():
    kw = dict(tp=2, pp=4, virtual_stages=5, sequence_parallel=True, stack="nemo")
    fp8 = predict_training("gb200", LLAMA3_70B, 64, 256, dtype="fp8", **kw)
    fp4 = predict_training("gb200", LLAMA3_70B, 64, 256, dtype="fp4", **kw)
    assert fp4.step_time_s < fp8.step_time_s
    assert fp4.mfu == pytest.approx(fp4.model_tflops_per_gpu / 10000)
    # the LM head and attention run BF16 whatever the recipe: less than 2x
    assert fp4.tokens_per_s_per_gpu < 2 * fp8.tokens_per_s_per_gpu


def test_serving_weights_read_0_5625_bytes_per_parameter():
    params = LLAMA3_70B.total_params()
    assert weight_bytes(LLAMA3_70B, 1, "fp4") == 0.5625 * params
    assert weight_bytes(LLAMA3_70B, 2, "fp4") == 0.5625 * params / 2
    pred = predict_inference("b200", LLAMA3_70B, batch=8, prompt_len=512, output_len=128, dtype="fp4")
    assert pred.weights_gib == pytest.approx(0.5625 * params / 2**30)
    assert pred.kv_dtype == "fp8"  # the default cache under NVFP4 weights
    assert pred.kv_cache_gib * 2**30 == kv_cache_bytes(LLAMA3_70B, 1, 8, 640, "fp8")


def test_decode_gemv_reads_nvfp4_weights_at_the_measured_bandwidth():
    # one 8192 x 8192 batch-1 GEMV: weight-read bound, (m k + k n + m n) x 0.5625 B
    by = (8192 + 8192 * 8192 + 8192) * 0.5625
    bw = 8000e9 * hbm_curve("b200")(by)
    assert gemm_time("b200", 1, 8192, 8192, "fp4") == pytest.approx(by / bw + KERNEL_OVERHEAD_S, rel=1e-12)


def test_batch_one_decode_on_b200_fp4_is_near_the_weight_bytes_ratio():
    fp4 = decode_step("b200", LLAMA3_70B, 1, 1, 1024, dtype="fp4", kv_dtype="fp8")
    fp8 = decode_step("b200", LLAMA3_70B, 1, 1, 1024, dtype="fp8", kv_dtype="fp8")
    launches = LLAMA3_70B.layers * 4 * KERNEL_OVERHEAD_S  # QKV, output, up+gate, down per layer
    # net of launches, 0.5625 but for the lower bandwidth the measured curve gives the smaller reads
    ratio = (fp4.weights_s - launches) / (fp8.weights_s - launches)
    assert 0.5625 < ratio < 0.6
    assert fp4.kv_s == fp8.kv_s
    assert 0.5625 < fp4.total_s / fp8.total_s < 0.7  # KV reads, norms and launches do not shrink


def test_fp4_kv_cache_is_refused_naming_kv_dtype():
    with pytest.raises(CapsimError, match="FP4 KV cache") as exc:
        predict_inference("b200", LLAMA3_70B, batch=1, prompt_len=128, output_len=16, dtype="fp4", kv_dtype="fp4")
    assert exc.value.where == "--kv-dtype"
    with pytest.raises(CapsimError):
        decode_step("b200", LLAMA3_70B, 1, 1, 128, dtype="fp8", kv_dtype="fp4")
    with pytest.raises(CapsimError):
        kv_cache_bytes(LLAMA3_70B, 1, 1, 128, "fp4")
    r = CliRunner().invoke(main, ["predict-inference", "--device", "b200", "--model", "llama3-70b", "--prompt-len",
                                  "128", "--output-len", "16", "--dtype", "fp4", "--kv-dtype", "fp4"])
    assert r.exit_code != 0 and "--kv-dtype" in r.output


def test_cli_accepts_fp4_and_published_aliases_map_to_it():
    r = CliRunner().invoke(main, ["predict-inference", "--device", "b200", "--model", "llama3-70b", "--prompt-len",
                                  "128", "--output-len", "16", "--dtype", "fp4", "--json"])
    assert r.exit_code == 0, r.output
    assert all(DTYPE_ALIASES[a] == "fp4" for a in ("nvfp4", "fp4_nv", "nv-fp4", "mxfp4"))
    with pytest.raises(CapsimError, match="fp4"):
        make_layout(LLAMA3_70B, 8, 8, tp=8, dtype="int4")


# Recorded from main's code before fp4 existed (commit 6508860): bf16 / fp8 are byte-identical. Re-recorded
# when kernel data moved them (2026-12-01: B200 carries its measured best-GEMM ratio and sustained-clock
# fraction, and the stacks were refitted; 2026-12-02: refitted once the calibration rows of untied models said
# so, and when TPU v5p took TPU v5e's curves; 2026-12-02: the Mixtral step when Megatron-Core's column layers
# hid their backward TP collectives behind their gradient GEMMs; 2026-12-03: refitted after the 2023 Triton
# attention tables were corrected, and again when selective recompute took each stack's own policy, and
# when TPU attention borrowed from GPU tables took its systolic array's fill); fp4 work must never move them.
BEFORE = {
    "b200 llama3-70b fp8 nemo step": 10.11314079564509,
    "h100 llama3-70b bf16 nemo step": 30.636619361011263,
    "b200 mixtral fp8 step": 17.081743479146887,
    "b200 llama3-70b fp8 serve": (3.94156246346598, 0.01561431837253736),
    "h100 llama3-70b bf16 fp8-kv serve": (3.853918630518146, 0.03157256740048023),
}


def test_bf16_and_fp8_predictions_are_unchanged():
    kw = dict(tp=4, pp=4, virtual_stages=5, sequence_parallel=True, stack="nemo")
    assert predict_training("b200", LLAMA3_70B, 64, 256, dtype="fp8", **kw).step_time_s == \
        BEFORE["b200 llama3-70b fp8 nemo step"]
    assert predict_training("h100-sxm", LLAMA3_70B, 64, 256, dtype="bf16", **kw).step_time_s == \
        BEFORE["h100 llama3-70b bf16 nemo step"]
    mix = load_model("mixtral-8x7b").model_spec()
    assert predict_training("b200", mix, 64, 256, tp=2, pp=4, ep=8, sequence_parallel=True,
                            dtype="fp8").step_time_s == BEFORE["b200 mixtral fp8 step"]
    p = predict_inference("b200", LLAMA3_70B, batch=64, prompt_len=1000, output_len=1000, dtype="fp8")
    assert (p.ttft_s, p.tpot_s) == BEFORE["b200 llama3-70b fp8 serve"]
    p = predict_inference("h100-sxm", LLAMA3_70B, tp=2, batch=32, prompt_len=1000, output_len=500, kv_dtype="fp8")
    assert (p.ttft_s, p.tpot_s) == BEFORE["h100 llama3-70b bf16 fp8-kv serve"]


def test_fp4_predictions_say_what_they_rest_on():
    from simulator.perf.cli import caveats

    assert not any("FP4" in c for c in caveats("h100-sxm", "fp8"))
    assert any("b200's NVFP4-to-BF16 efficiency ratios" in c for c in caveats("gb200", "fp4"))
    assert any("multiplied at the FP8 rate" in c for c in caveats("h100-sxm", "fp4"))
    assert any("16-bit rate" in c for c in caveats("a100-sxm-80gb", "fp4"))


def test_nvfp4_training_needs_fp4_tensor_cores():
    from simulator.errors import CapsimError
    from simulator.perf.api import predict_training
    from simulator.perf.model import ModelSpec

    m = ModelSpec(layers=4, hidden=2048, heads=16, vocab=32000, seq_len=2048)
    assert predict_training("b200", m, 8, 16, dtype="fp4").step_time_s > 0
    with pytest.raises(CapsimError, match="FP4 tensor cores") as exc:
        predict_training("h100-sxm", m, 8, 16, dtype="fp4")
    assert exc.value.where == "--dtype"


def test_an_fp4_part_without_ratios_in_reach_says_it_borrows_the_fp8_curve(monkeypatch):
    import simulator.perf.kernels as kernels
    from simulator.perf.cli import caveats

    monkeypatch.setattr(kernels, "relative_gemm_points", lambda device, cls: None)
    assert "no measured FP4 GEMMs: priced on the FP8 efficiency curve at the FP4 peak" in caveats("b200", "fp4")
