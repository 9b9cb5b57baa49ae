"""Profiles load with provenance; kernel times respect the roofline and the measured points."""

import pytest

from simulator.errors import CapsimError
from simulator.perf.collectives import collective_time, tier_model
from simulator.perf.kernels import attention_time, best_gemm_ratio, gemm_curve, gemm_time, memory_time
from simulator.perf.profile import load_profile, profile_from_dict
from simulator.profiles import list_devices, load_profile_yaml

DEVICES = ["a100-sxm-40gb", "a100-sxm-80gb", "h100-sxm", "h200-sxm", "b200", "mi300x", "gaudi2",
           "tpu-v4", "tpu-v5e", "tpu-v5p", "v100-sxm-32gb"]


def test_all_required_devices_exist_and_cite_sources():
    assert set(DEVICES) <= set(list_devices())
    for dev in DEVICES:
        raw = load_profile_yaml(dev)
        assert raw["id"] == dev
        for key in ("peak_tflops", "memory_gib", "memory_bw_gbs", "scale_up", "scale_out", "power", "price_usd"):
            assert raw["spec"]["sources"].get(key), f"{dev}: no source for spec.{key}"
        points = [p for kind in (raw.get("measured") or {}).values() for p in kind]
        assert all(p.get("source") and p.get("date") for p in points), dev
        if not points:  # no measurement: the prior must say it is an assumption
            assert raw["efficiency_prior"]["note"].startswith("assumed")
        load_profile(dev)


def test_measured_h100_point_is_reproduced():
    # 8192^3 bf16 ran at 798 TFLOP/s on the lent H100 (shared/README.md)
    t = gemm_time("h100-sxm", 8192, 8192, 8192, "bf16", sustained=False)
    # the curve is an isotonic fit of all measured points (sustained training shapes ran 690-739), so
    # the short 8192^3 burst is reproduced within 8%, not matched exactly
    assert 2 * 8192**3 / t / 1e12 == pytest.approx(798, rel=0.08)


def test_gemm_never_beats_the_roofline():
    p = load_profile("h100-sxm")
    for m, n, k in ((1, 8192, 8192), (64, 8192, 8192), (8192, 8192, 8192), (16, 16, 16)):
        flops, bytes_ = 2 * m * n * k, 2 * (m * k + k * n + m * n)
        bound = max(flops / (p.peak("bf16") * 1e12), bytes_ / (p.memory_bw_gbs * 1e9))
        assert gemm_time("h100-sxm", m, n, k) >= bound


def test_gemv_is_memory_bound_at_measured_bandwidth():
    t = gemm_time("a100-sxm-80gb", 1, 28672, 8192, "fp16")
    gbs = 2 * 28672 * 8192 / t / 1e9
    assert 1300 < gbs < 2039  # vidur measured ~1.4-1.7 TB/s for such weight reads on A100


def test_prior_devices_scale_with_peak_and_the_measured_best_gemm_ratio():
    # H800 borrows H100's curve and measured no best GEMM: the same fraction of the same peak
    assert gemm_time("h800-sxm", 8192, 8192, 8192) == gemm_time("h100-sxm", 8192, 8192, 8192)
    # B200 borrows H100's curve times the ratio of their best GEMMs (mamf-finder: 1745 of 2250 TFLOP/s
    # against 794.5 of 989), at its own sustained fraction (0.82 against H100's 0.87)
    big = 2 * 8192**3
    e_h100 = big / gemm_time("h100-sxm", 8192, 8192, 8192) / 989e12
    e_b200 = big / gemm_time("b200", 8192, 8192, 8192) / 2250e12
    assert e_b200 / e_h100 == pytest.approx((1745 / 2250) / (794.5 / 989) * 0.82 / 0.87, rel=0.01)
    assert tier_model("b200", "scale_up").bw_Bps == pytest.approx(tier_model("h100-sxm", "scale_up").bw_Bps * 2)


def test_flash_attention_is_faster_than_unfused_at_long_sequence():
    kw = dict(batch=1, heads=32, kv_heads=32, q_len=8192, kv_len=8192, head_dim=128)
    for kernel in ("fa2", "fa3", "cudnn"):
        assert attention_time("h100-sxm", **kw, kernel=kernel) < attention_time("h100-sxm", **kw, kernel="unfused")


def test_memory_time_and_hierarchical_collectives():
    assert memory_time("h100-sxm", 0) == 0.0
    assert memory_time("h100-sxm", 3e9) > 3e9 / 3350e9
    in_node = collective_time("h100-sxm", "all_reduce", 2**30, 8)
    across = collective_time("h100-sxm", "all_reduce", 2**30, 16)
    one_per_node = collective_time("h100-sxm", "all_reduce", 2**30, 16, per_domain=1)
    assert in_node < across < one_per_node
    # measured 8-GPU all_reduce at 8 GiB reaches ~479 GB/s bus bandwidth on H100 (Azure)
    busbw = 2**33 * 2 * 7 / 8 / collective_time("h100-sxm", "all_reduce", 2**33, 8) / 1e9
    assert busbw == pytest.approx(479, rel=0.2)


def test_profile_errors_name_the_key():
    with pytest.raises(CapsimError, match="spec.scale_up"):
        profile_from_dict({"spec": {"peak_tflops": {"bf16": 1}, "memory_gib": 1}}, source="x.yaml")
    with pytest.raises(CapsimError, match="unknown device 'nope'"):
        load_profile("nope")


def test_best_gemm_ratio_compares_the_measured_best_gemms_as_fractions_of_peak():
    # mamf-finder's best GEMMs: B200 1745 of 2250 BF16 and 3432.5 of 4500 FP8; H100 794.5 of 989, 1402.6 of 1979
    assert best_gemm_ratio("b200", "h100-sxm", "bf16") == pytest.approx((1745 / 2250) / (794.5 / 989))
    assert best_gemm_ratio("b200", "h100-sxm", "fp8") == pytest.approx((3432.5 / 4500) / (1402.6 / 1979))
    # FP4 has no measured best GEMM anywhere: the FP8 ratio (CURVE_CHAIN); MI300X measured BF16 only
    assert best_gemm_ratio("b200", "h100-sxm", "fp4") == best_gemm_ratio("b200", "h100-sxm", "fp8")
    assert best_gemm_ratio("mi300x", "h100-sxm", "fp8") == pytest.approx((668.4 / 1307) / (794.5 / 989))
    assert best_gemm_ratio("h800-sxm", "h100-sxm", "bf16") == 1.0  # nothing measured: no scaling
    # the borrowed curve carries it at every size
    flops = 2.0 * 8192 * 8192 * 8192
    assert gemm_curve("mi300x", "bf16")(flops) == pytest.approx(
        gemm_curve("h100-sxm", "bf16")(flops) * best_gemm_ratio("mi300x", "h100-sxm", "bf16"))


def test_a_best_gemm_point_needs_a_known_dtype_and_a_positive_rate():
    raw = load_profile_yaml("b200")
    for bad in ({"m": 1, "n": 1, "k": 1, "dtype": "int3", "tflops": 1.0},
                {"m": 1, "n": 1, "k": 1, "dtype": "bf16", "tflops": -5.0}):
        with pytest.raises(CapsimError, match="measured.best_gemm"):
            profile_from_dict({**raw, "measured": {"best_gemm": [bad]}}, source="x.yaml")


def test_an_attention_reference_must_be_a_device_id():
    raw = load_profile_yaml("b300")
    for bad in (["gb300"], 3, {"id": "gb300"}):
        with pytest.raises(CapsimError, match="efficiency_prior.attention_reference"):
            profile_from_dict({**raw, "efficiency_prior": {"reference": "b200", "attention_reference": bad}},
                              source="x.yaml")


def test_an_mxu_width_must_be_a_positive_integer():
    raw = load_profile_yaml("tpu-v6e")
    assert profile_from_dict(raw, source="x.yaml").mxu_width == 256
    assert profile_from_dict(load_profile_yaml("h100-sxm"), source="x.yaml").mxu_width is None
    for bad in (0, -128, 128.5, "256", True):
        with pytest.raises(CapsimError, match="spec.mxu_width"):
            profile_from_dict({**raw, "spec": {**raw["spec"], "mxu_width": bad}}, source="x.yaml")


def test_tpus_run_their_measured_xla_matmuls_not_a_gpus_fraction():
    # JAX's Pallas TPU guide: XLA's bf16 8192^3 matmul at 181.8 TFLOP/s on a v5e (92% of 197); A100's curve
    # (the reference for sizes v5e did not measure) gives 80% there. The isotonic fit pools the point with
    # A100's larger sizes, so the rate lies between the two and never above the measurement.
    flops = 2.0 * 8192**3
    v5e = flops / gemm_time("tpu-v5e", 8192, 8192, 8192, sustained=False) / 1e12
    assert gemm_curve("a100-sxm-80gb", "bf16")(flops) * 197 < v5e < 181.8
    # v6e: 727.7 TFLOP/s at 8192^3 (79% of 918; JAX profiler device time) against H100's 76% there
    v6e = flops / gemm_time("tpu-v6e", 8192, 8192, 8192, sustained=False) / 1e12
    assert gemm_curve("h100-sxm", "bf16")(flops) * 918 < v6e < 727.7
