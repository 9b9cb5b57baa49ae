"""Cloud burst: a pool with `burst_after` takes only jobs that have waited that long and that no owned
pool fits; it is billed per device-hour used, draws no power on site, and stays out of the owned
utilisation. Hand-worked on one owned and one burst node of 8 H100s (power: tests/test_power.py)."""

import warnings

import numpy as np
import pytest

import simulator
from simulator.models.cost import SECONDS_PER_YEAR
from simulator.policies.registry import policy_class
from tests.helpers import SCHEDULING, jobs, scenario_dict


def run_burst(tmp_path, js, burst_after=3600, policy="fifo", **extra):
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}], policy)
    scen["cluster"]["pools"][1].update(burst_after=burst_after, usd_per_device_hour=2.0)
    scen.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return simulator.run(scen, progress=False)


HOUR = 3600.0
# a takes the owned node for 10 h; b waits 1 h, then bursts for 2 h; c (at 2 h) waits its hour, until
# 3 h, when b also leaves the burst node, and bursts for 1 h.
HAND_WORKED = jobs(submit_time=[0, 0, 2 * HOUR], gpus=[8, 8, 4], duration=[10 * HOUR, 2 * HOUR, HOUR])


def test_hand_worked_burst(tmp_path):
    res = run_burst(tmp_path, HAND_WORKED, cost={"usd_per_kwh": 0.10, "amortization_years": 4})
    by_id = res.jobs.set_index("job_id")
    assert by_id["start_time"].to_dict() == {"a": 0, "b": HOUR, "c": 3 * HOUR}
    assert by_id["pool"].to_dict() == {"a": "p0", "b": "p1", "c": "p1"}
    s = res.summary
    assert s["burst_gpu_hours"] == pytest.approx(8 * 2 + 4 * 1)
    assert s["burst_jobs"] == 2
    assert s["burst_usd"] == pytest.approx(2.0 * 20)
    # Owned utilisation and power: only the owned node (full for 10 h) counts.
    assert s["gpus_total"] == 8
    assert s["gpu_utilization"] == pytest.approx(1.0)
    assert s["energy_kwh"] == pytest.approx(10.2 * 10)
    tl = res.timeline.set_index("time_s")
    assert tl["burst_gpus"].to_dict() == {0: 0, HOUR: 8, 2 * HOUR: 8, 3 * HOUR: 4, 4 * HOUR: 0, 10 * HOUR: 0}
    assert (tl["installed_gpus"] == 8).all() and (tl["busy_gpus"] <= 8).all()
    # The profile's list price for the owned node, amortised over the 10 h span; the burst node only
    # by the hour used; both in the spend rate, which integrates to the total.
    capex = s["capex_usd"]
    assert capex == pytest.approx(8 * simulator.perf.profile.load_profile("h100-sxm").price_usd
                                  / (4 * SECONDS_PER_YEAR) * 10 * HOUR)
    assert s["cost_usd"] == pytest.approx(capex + 40 + 0.10 * s["energy_kwh"])
    rate = res.timeline["usd_per_h"].to_numpy()
    spent = float((rate[:-1] / 3600 * np.diff(res.timeline["time_s"].to_numpy())).sum())
    assert spent == pytest.approx(s["cost_usd"])
    assert res.by_period(5 * HOUR)["cost_usd"].sum() == pytest.approx(s["cost_usd"])


def test_a_burst_pool_is_used_only_when_no_owned_pool_fits(tmp_path):
    # With burst_after 0 the burst node is spare capacity tried last: a small job fits on the owned node.
    res = run_burst(tmp_path, jobs(submit_time=[0, 10], gpus=[4, 4], duration=[100, 100]), burst_after=0)
    assert set(res.jobs["pool"]) == {"p0"}
    assert "burst_gpus" in res.timeline and res.summary["burst_gpu_hours"] == 0


def test_without_a_wait_long_enough_a_job_waits_for_the_owned_pool(tmp_path):
    # b would wait 1 h for the burst node but the owned node frees after 30 min: it never bursts.
    res = run_burst(tmp_path, jobs(submit_time=[0, 0], gpus=[8, 8], duration=[1800, 100]))
    by_id = res.jobs.set_index("job_id")
    assert by_id.loc["b", "start_time"] == 1800 and by_id.loc["b", "pool"] == "p0"


@pytest.mark.parametrize("policy", SCHEDULING)
def test_no_policy_starts_a_run_on_a_burst_pool_before_the_wait(policy, monkeypatch):
    after = 2 * HOUR
    starts = []
    cls = policy_class(policy)
    on_launch = cls.on_launch

    def checked(self, job, now):  # the engine calls on_launch just before it starts the job
        alloc = next(a for j, a in self.view.decision.launch if j is job)
        if alloc.pool.burst_after is not None:  # the wake-up time, as the engine computes it
            starts.append(now >= job.queued_since + after)
        on_launch(self, job, now)

    monkeypatch.setattr(cls, "on_launch", checked)
    scen = scenario_dict([(2, 8), (2, 8)], [{
        "kind": "synthetic", "until": "10d", "arrival": {"process": "poisson", "rate_per_hour": 3.0},
        "gpus": {"choice": [1, 4, 8, 16], "weights": [0.5, 0.2, 0.2, 0.1]},
        "duration": {"dist": "exponential", "mean": "4h"}}], policy)
    scen["cluster"]["pools"][1].update(burst_after=after, usd_per_device_hour=3.0)
    scen["failures"] = {"device_mtbf": "3000h", "repair": "2h"}
    res = simulator.run(scen, progress=False)
    assert starts and all(starts)
    assert res.summary["jobs_completed"] == res.summary["jobs_submitted"]
    tl = res.timeline
    assert (tl["busy_gpus"] <= tl["installed_gpus"]).all() and (tl["burst_gpus"] <= 16).all()
    assert res.summary["burst_gpu_hours"] > 0


def test_burst_pools_are_validated(tmp_path):
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].*usd_per_device_hour, not price_usd"):
        run_burst(tmp_path, HAND_WORKED, cluster={"pools": [
            {"name": "a", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8},
            {"name": "b", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8, "burst_after": "1h",
             "price_usd": 30000}]})
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].burst_after"):
        run_burst(tmp_path, HAND_WORKED, burst_after="soon")
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].*on-demand price"):
        run_burst(tmp_path, HAND_WORKED, cluster={"pools": [
            {"name": "a", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8},
            {"name": "b", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8, "burst_after": "1h"}]},
            cost={})
