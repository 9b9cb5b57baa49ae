"""Capacity in planners' units: summary.json's peak_pflops_* and `capsim scenario show`, held to two
published figures (Google's TPU v4 pod; 5,760 A100)."""

import json

import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.models.capacity import scenario_capacity, total
from simulator.perf.profile import load_profile
from simulator.report.summary import summary_rows
from simulator.scenario import scenario_from_data

WORK = [{"kind": "synthetic", "jobs": 20, "gpus": 1, "arrival": {"process": "poisson", "rate_per_hour": 4},
         "duration": {"dist": "exponential", "mean": "1h"}}]


def scenario(*pools, **extra) -> dict:
    return {"name": "capacity", "seed": 1, "cluster": {"pools": list(pools)}, "workload": WORK, **extra}


# Google's TPU v4 paper (Jouppi et al., ISCA'23): a pod of 4,096 chips at 275 TFLOP/s BF16 = 1.13 EFLOP/s.
TPU_V4_POD = {"name": "pod", "device": "tpu-v4", "nodes": 1024, "devices_per_node": 4}
# 5,760 A100 (720 DGX A100 nodes) at 312 TFLOP/s dense BF16 (NVIDIA's A100 datasheet) = 1.80 EFLOP/s.
A100_5760 = {"name": "a100", "device": "a100-sxm-80gb", "nodes": 720, "devices_per_node": 8}


def test_profiles_carry_the_published_per_device_peaks():
    assert load_profile("tpu-v4").peak_tflops["bf16"] == 275
    assert load_profile("a100-sxm-80gb").peak_tflops["bf16"] == 312
    assert load_profile("a100-sxm-80gb").peak_tflops.get("fp8") is None


@pytest.mark.parametrize("pool, pflops, shown", [(TPU_V4_POD, 1126.4, "1.13 EFLOP/s"),
                                                 (A100_5760, 1797.12, "1.80 EFLOP/s")])
def test_published_figures_in_the_summary_and_scenario_show(tmp_path, pool, pflops, shown):
    res = simulator.run(scenario(pool))
    assert res.summary["peak_pflops_bf16"] == pytest.approx(pflops)
    assert "peak_pflops_fp8" not in res.summary  # neither device has an FP8 peak
    assert f"{shown} BF16" in dict(summary_rows(res.summary))[
        "peak dense compute"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario(pool)))
    out = CliRunner().invoke(main, ["scenario", "show", str(path)])
    assert out.exit_code == 0, out.output
    pool_line = next(line for line in out.output.splitlines() if line.startswith(pool["name"] + " "))
    assert shown in pool_line and f"{pool['nodes'] * pool['devices_per_node']:,}" in pool_line


def test_only_owned_devices_in_service_at_the_start_count():
    h100 = {"name": "h100", "device": "h100-sxm", "nodes": 2, "devices_per_node": 8}
    later = {"name": "b200", "device": "b200", "nodes": 1, "devices_per_node": 8, "available_from": "1h"}
    burst = {"name": "cloud", "device": "h100-sxm", "nodes": 4, "devices_per_node": 8, "burst_after": "30m"}
    retiring = {"name": "a100", "device": "a100-sxm-80gb", "nodes": 1, "devices_per_node": 8,
                "available_until": "2h"}
    res = simulator.run(scenario(h100, later, burst, retiring))
    assert res.summary["peak_pflops_bf16"] == pytest.approx((16 * 989 + 8 * 312) / 1000)
    # FP8: the H100s at their FP8 peak, the A100s (no FP8) at their 16-bit peak
    assert res.summary["peak_pflops_fp8"] == pytest.approx((16 * 1979 + 8 * 312) / 1000)
    pools = scenario_capacity(scenario_from_data(scenario(h100, later, burst, retiring)))
    assert total(pools)["devices"] == 16 + 8 + 32 + 8
    assert [p.at_start for p in pools] == [True, False, False, True]


def test_scenario_show_lists_pools_and_the_cluster_over_time(tmp_path):
    later = dict(A100_5760, available_from="90d")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario(TPU_V4_POD, later)))
    out = CliRunner().invoke(main, ["scenario", "show", str(path)])
    assert out.exit_code == 0, out.output
    rows = {line.split("  ")[0]: line for line in out.output.splitlines()[2:]}
    assert "1.13 EFLOP/s" in rows["cluster from 0s"] and "4,096" in rows["cluster from 0s"]
    assert "2.92 EFLOP/s" in rows["cluster from 90d"] and "9,856" in rows["cluster from 90d"]
    assert "128.0 TiB" in rows["pod"]  # 4,096 x 32 GiB of HBM
    default = CliRunner().invoke(main, ["scenario", "show"])  # the embedded default: 512 H100
    assert default.exit_code == 0 and "506 PFLOP/s" in default.output and "1.01 EFLOP/s" in default.output
