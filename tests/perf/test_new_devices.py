"""Profiles for devices planners buy now load, hold consistent figures and drive `capsim predict`."""

import json

import pytest
from click.testing import CliRunner

from simulator.perf.cli import predict
from simulator.perf.profile import load_profile
from simulator.profiles import list_devices, load_profile_yaml

NEW_DEVICES = ["h800-sxm", "a800-sxm-80gb", "h20", "gb200", "gb300", "b300", "mi325x", "tpu-v6e", "tpu7x",
               "h100-hbm2e-500w"]
MEASURED_CURVES = {"h100-sxm", "a100-sxm-80gb"}  # the devices whose GEMM, HBM and collective curves are measured

PREDICT = ("--gpus 8 --layers 32 --hidden 4096 --heads 32 --seq-len 4096 --vocab 32000 "
           "--global-batch 64 --json")


def test_new_devices_are_listed():
    assert set(NEW_DEVICES) <= set(list_devices())


@pytest.mark.parametrize("device", NEW_DEVICES)
def test_profile_loads_with_positive_consistent_figures(device):
    p = load_profile(device)
    assert p.id == device
    bf16 = p.peak_tflops["bf16"]
    assert bf16 > 0
    fp8 = p.peak_tflops.get("fp8")
    if fp8 is not None:
        assert fp8 >= bf16
    for value in (p.memory_gib, p.memory_bw_gbs, p.scale_up_bw_gbs, p.scale_out_bw_gbs, p.tdp_w):
        assert value > 0
    assert p.scale_up_domain >= 1 and p.devices_per_node >= 1
    assert p.node_w >= p.tdp_w * p.devices_per_node  # the node feeds at least its devices
    assert p.price_usd is None or p.price_usd > 0


@pytest.mark.parametrize("device", NEW_DEVICES)
def test_every_figure_cites_a_source_and_the_prior_says_assumed(device):
    raw = load_profile_yaml(device)
    for key in ("peak_tflops", "memory_gib", "memory_bw_gbs", "scale_up", "scale_out", "power", "price_usd"):
        assert raw["spec"]["sources"].get(key), f"{device}: no source for spec.{key}"
    measured = raw.get("measured") or {}
    assert not (measured.get("hbm") or measured.get("collectives"))  # those curves are borrowed
    assert all(p.get("source") and p.get("date") for points in measured.values() for p in points)
    prior = raw["efficiency_prior"]
    chain = [device, prior["reference"]]  # the borrowed curves end at a device that measured them
    while chain[-1] not in MEASURED_CURVES and len(chain) < 5:
        chain.append(load_profile(chain[-1]).prior_reference)
    assert chain[-1] in MEASURED_CURVES, chain
    assert prior["note"].startswith("assumed")
    sustained = raw.get("sustained")
    if sustained is not None:  # only present with a public source
        assert 0 < sustained["gemm_clock_fraction"] <= 1 and sustained["source"]


def test_an_attention_reference_names_a_device_with_its_own_tables():
    # whose fused-attention tables stand in for missing ones must have measured some itself
    named = {d: load_profile(d).attention_reference for d in list_devices()}
    assert named["b300"] == "gb300"
    for device, ref in named.items():
        if ref is not None:
            assert ref in list_devices() and ref != device and load_profile(ref).attention, (device, ref)


def test_gb200_is_one_gpu_of_an_nvl72_rack():
    p = load_profile("gb200")
    assert p.scale_up_domain == 72
    assert p.scale_up_bw_gbs == 900  # NVLink5 1.8 TB/s bidirectional


def test_export_variants_keep_compute_and_lose_nvlink():
    h800, h100 = load_profile("h800-sxm"), load_profile("h100-sxm")
    assert h800.peak_tflops == h100.peak_tflops and h800.scale_up_bw_gbs < h100.scale_up_bw_gbs
    a800, a100 = load_profile("a800-sxm-80gb"), load_profile("a100-sxm-80gb")
    assert a800.peak_tflops == a100.peak_tflops and a800.scale_up_bw_gbs < a100.scale_up_bw_gbs


def test_power_capped_h100_is_the_rated_peak_between_nvl_and_sxm():
    """torchtitan's Grand Teton H100 (96GB HBM2e, 2.4 TB/s, 500 W): rated peak interpolated in power between the
    H100 NVL (835 TFLOP/s at 400 W) and the SXM5 (989 at 700 W): 835 + 154 * 100/300 = 886.3; a large
    compute-bound GEMM takes 989/886 = 1.116x the SXM5's time, a large copy 3350/2400 = 1.396x."""
    from simulator.perf.kernels import gemm_time, memory_time
    from simulator.perf.published import resolve_device

    capped, sxm = load_profile("h100-hbm2e-500w"), load_profile("h100-sxm")
    assert capped.peak_tflops["bf16"] == round(835 + (989 - 835) * (500 - 400) / (700 - 400))
    assert capped.tdp_w == 500 and capped.memory_bw_gbs == 2400
    ratio = gemm_time("h100-hbm2e-500w", 8192, 8192, 8192) / gemm_time("h100-sxm", 8192, 8192, 8192)
    assert ratio == pytest.approx(989 / 886, rel=1e-3)
    assert memory_time("h100-hbm2e-500w", 2**30) / memory_time("h100-sxm", 2**30) == pytest.approx(3350 / 2400, rel=0.01)  # plus one launch
    assert resolve_device("h100-96gb") == resolve_device("h100-500w") == "h100-hbm2e-500w"
    assert sxm.tdp_w == 700


@pytest.mark.parametrize("device", NEW_DEVICES)
def test_predict_runs_on_new_device(device):
    r = CliRunner().invoke(predict, ["--device", device, *PREDICT.split()])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["step_time_s"] > 0


def test_ironwood_matmul_runs_at_the_default_dvfs_rate_measured():
    """TPU7x: its two TensorCores each ran a bf16 8192^3 matmul in 1016.8 us with the top clock locked
    (--xla_tpu_dvfs_p_state=7) and in 1248.6 us at the default DVFS state (gpu-tpu-pedia, JAX profiler trace).
    The profile holds the locked point per chip (16384 x 8192 x 8192 at 2 x 1081.3 TFLOP/s) and the ratio
    of the two times as its sustained fraction, so a training-clock GEMM of that size takes the default
    state's 1248.6 us (plus one launch), and the burst one the locked 1016.8 us."""
    from simulator.perf.kernels import KERNEL_OVERHEAD_S, gemm_time
    from simulator.perf.published import resolve_device

    assert gemm_time("tpu7x", 16384, 8192, 8192) - KERNEL_OVERHEAD_S == pytest.approx(1248.6e-6, rel=2e-3)
    assert gemm_time("tpu7x", 16384, 8192, 8192, sustained=False) - KERNEL_OVERHEAD_S == \
        pytest.approx(1016.8e-6, rel=2e-3)
    p = load_profile("tpu7x")
    assert p.peak_tflops["fp8"] == 2 * p.peak_tflops["bf16"] and p.mxu_width == 256
    assert resolve_device("ironwood") == resolve_device("tpu-v7x") == "tpu7x"
