"""Power over time and energy: hand-worked from the H100 profile's spec power (700 W TDP, DGX H100
10.2 kW per 8-GPU node)."""

import warnings

import numpy as np
import pytest

import simulator
from tests.helpers import jobs, scenario_dict


def run_with_power(tmp_path, js, **power):
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}])
    if power:
        scen["power"] = power
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return simulator.run(scen, progress=False)


def test_power_steps_and_energy_match_the_hand_worked_schedule(tmp_path):
    # a (4 GPUs) runs 0-100; b (8 GPUs) arrives at 50 and runs 100-150.
    # Per device: platform overhead (10200 - 8 x 700) / 8 = 575 W, idle 0.15 x 700 = 105 W, so the idle
    # node draws 8 x 680 = 5440 W and each busy device adds 595 W; a full node draws its 10.2 kW.
    res = run_with_power(tmp_path, jobs(submit_time=[0, 50], gpus=[4, 8], duration=[100, 50]))
    watts = (res.timeline.set_index("time_s")["power_kw"] * 1000).round(6).to_dict()
    assert watts == {0: 7820.0, 50: 7820.0, 100: 10200.0, 150: 5440.0}
    assert res.summary["energy_kwh"] == pytest.approx((7820 * 100 + 10200 * 50) / 3.6e6)
    assert res.summary["mean_power_kw"] == pytest.approx((7820 * 100 + 10200 * 50) / 150 / 1000)


def test_pue_scales_and_idle_fraction_moves_only_the_idle_share(tmp_path):
    js = jobs(submit_time=[0], gpus=[8], duration=[100])
    base = run_with_power(tmp_path, js).summary["energy_kwh"]
    assert run_with_power(tmp_path, js, pue=1.3).summary["energy_kwh"] == pytest.approx(1.3 * base)
    # Every device is busy the whole time, so idle power never counts.
    assert run_with_power(tmp_path, js, idle_fraction=0.5).summary["energy_kwh"] == pytest.approx(base)


def test_energy_lies_between_all_idle_and_all_busy(tmp_path):
    rng = np.random.default_rng(3)
    js = jobs(submit_time=np.sort(rng.uniform(0, 500, 30)), gpus=rng.choice([1, 2, 4, 8], 30),
              duration=rng.uniform(1, 200, 30))
    res = run_with_power(tmp_path, js)
    span_h = (res.timeline["time_s"].iloc[-1] - res.timeline["time_s"].iloc[0]) / 3600
    assert 5.44 * span_h - 1e-9 <= res.summary["energy_kwh"] <= 10.2 * span_h + 1e-9


def test_power_settings_are_validated(tmp_path):
    with pytest.raises(simulator.CapsimError, match="power.pue"):
        run_with_power(tmp_path, jobs(submit_time=[0], gpus=[1], duration=[1]), pue=0.5)


def run_costed(tmp_path, js, pool_extra=None, device="h100-sxm", **cost):
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}])
    scen["cluster"]["pools"][0].update({"device": device, **(pool_extra or {})})
    scen["cost"] = cost
    return simulator.run(scen, progress=False)


def test_cost_is_amortised_purchase_plus_energy(tmp_path):
    # One job on the full node for 1 h: 10.2 kWh. Eight $30k H100s over 4 years: 240,000 / (4 x 8766 h)
    # per hour. Energy at $0.10/kWh.
    s = run_costed(tmp_path, jobs(submit_time=[0], gpus=[8], duration=[3600]), usd_per_kwh=0.10).summary
    assert s["energy_kwh"] == pytest.approx(10.2)
    assert s["capex_usd"] == pytest.approx(240_000 / (4 * 365.25 * 24))
    assert s["energy_usd"] == pytest.approx(1.02)
    assert s["cost_usd"] == pytest.approx(s["capex_usd"] + s["energy_usd"])
    assert s["rental_usd"] == 0


def test_rented_pools_pay_by_the_hour_and_unpriced_devices_are_an_error(tmp_path):
    js = jobs(submit_time=[0], gpus=[4], duration=[7200])
    s = run_costed(tmp_path, js, {"usd_per_device_hour": 4.25}, usd_per_kwh=0).summary
    assert s["rental_usd"] == pytest.approx(8 * 4.25 * 2) and s["capex_usd"] == 0
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[0\].*no list price"):
        run_costed(tmp_path, js, device="tpu-v4")
    no_cost = run_with_power(tmp_path, js).summary
    assert "cost_usd" not in no_cost


def test_periods_split_waits_utilisation_and_energy(tmp_path):
    # The schedule above in 100 s periods. Period 0: a (wait 0) and b (wait 50) were submitted; 4 of 8
    # GPUs busy for 100 s at 7,820 W. Period 1 runs to the end of the timeline at 150: 8 GPUs busy for
    # 50 s at 10.2 kW, no submissions.
    res = run_with_power(tmp_path, jobs(submit_time=[0, 50], gpus=[4, 8], duration=[100, 50]))
    table = res.by_period(100)
    assert table["jobs_submitted"].tolist() == [2, 0]
    assert table.loc[0, "p50_wait_s"] == 25 and table.loc[0, "p95_wait_s"] == pytest.approx(47.5)
    assert np.isnan(table.loc[1, "p95_wait_s"])
    assert table["gpu_utilization"].tolist() == pytest.approx([0.5, 1.0])
    assert table["energy_kwh"].tolist() == pytest.approx([7820 * 100 / 3.6e6, 10200 * 50 / 3.6e6])
    assert table["energy_kwh"].sum() == pytest.approx(res.summary["energy_kwh"])
    assert res.by_period("1d")["jobs_submitted"].tolist() == [2]
