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
