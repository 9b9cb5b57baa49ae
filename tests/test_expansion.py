"""Expansions: a pool with `available_from` enters service part-way through a run, and only then is
used, powered, costed and exposed to failures. Hand-worked on H100 nodes (idle node 5,440 W, full
node 10,200 W, each busy device +595 W; see tests/test_power.py)."""

import warnings

import numpy as np
import pytest

import simulator
from simulator.models.cost import SECONDS_PER_YEAR
from simulator.policies.builtin import BUILTIN
from simulator.policies.registry import policy_class
from tests.helpers import SCHEDULING, jobs, scenario_dict


def run_expansion(tmp_path, js, available_from=100, policy="fifo", price_usd=None, **extra):
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}], policy)
    scen["cluster"]["pools"][1]["available_from"] = available_from
    if price_usd is not None:
        for pool in scen["cluster"]["pools"]:
            pool["price_usd"] = price_usd
    scen.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return simulator.run(scen, progress=False)


def test_hand_worked_expansion(tmp_path):
    # a (8 GPUs, 300 s) takes the first pool at 0; b (8 GPUs, 50 s) must wait for the second, at 100.
    res = run_expansion(tmp_path, jobs(submit_time=[0, 0], gpus=[8, 8], duration=[300, 50]))
    by_id = res.jobs.set_index("job_id")
    assert by_id.loc["b", "start_time"] == 100 and by_id.loc["b", "pool"] == "p1"
    tl = res.timeline.set_index("time_s")
    assert tl["installed_gpus"].to_dict() == {0: 8, 100: 16, 150: 16, 300: 16}
    assert (tl["power_kw"] * 1000).round(6).to_dict() == {0: 10200.0, 100: 20400.0, 150: 15640.0, 300: 10880.0}
    assert res.summary["energy_kwh"] == pytest.approx((10200 * 100 + 20400 * 50 + 15640 * 150) / 3.6e6)
    # Busy 8 x 300 + 8 x 50 over available 8 x 300 + 8 x 200 (the second pool from 100 s only).
    assert res.summary["gpu_utilization"] == pytest.approx(2800 / 4000)
    periods = res.by_period(100)
    assert periods["gpu_utilization"].tolist() == pytest.approx([1.0, 0.75, 0.5])


def test_an_expansion_is_costed_from_its_installation(tmp_path):
    # Amortised capex per pool-second: 8 devices x $30k over 4 years. The first pool serves 300 s,
    # the second 200 s (from 100 s to the last change); energy at $0.10/kWh on top.
    res = run_expansion(tmp_path, jobs(submit_time=[0, 0], gpus=[8, 8], duration=[300, 50]), price_usd=30_000,
                        cost={"usd_per_kwh": 0.10, "amortization_years": 4})
    per_s = 8 * 30_000 / (4 * SECONDS_PER_YEAR)
    assert res.summary["capex_usd"] == pytest.approx(per_s * (300 + 200))
    assert res.summary["energy_usd"] == pytest.approx(0.10 * res.summary["energy_kwh"])
    assert res.summary["cost_usd"] == pytest.approx(res.summary["capex_usd"] + res.summary["energy_usd"])


def test_an_expansion_after_the_last_job_never_enters_the_record(tmp_path):
    res = run_expansion(tmp_path, jobs(submit_time=[0], gpus=[8], duration=[50]), available_from="30d",
                        cost={"usd_per_kwh": 0.1})
    assert res.timeline["installed_gpus"].max() == 8
    assert res.summary["gpu_utilization"] == pytest.approx(1.0)
    assert res.summary["makespan_s"] == 50


@pytest.mark.parametrize("policy", SCHEDULING)
def test_nothing_runs_on_a_pool_before_it_is_installed(policy, monkeypatch):
    install = 5 * 86400.0
    starts = []  # (pool, time) of every run, restarts included
    cls = policy_class(policy)
    on_launch = cls.on_launch

    def recorded(self, job, now):  # the engine calls on_launch just before it starts the job
        starts.append((next(a for j, a in self.view.decision.launch if j is job).pool.name, now))
        on_launch(self, job, now)

    monkeypatch.setattr(cls, "on_launch", recorded)
    scen = scenario_dict([(2, 8), (2, 8)], [{
        "kind": "synthetic", "until": "12d", "arrival": {"process": "poisson", "rate_per_hour": 2.0},
        "gpus": {"choice": [1, 4, 8, 16], "weights": [0.5, 0.2, 0.2, 0.1]},
        "duration": {"dist": "exponential", "mean": "4h"}}], policy)
    scen["cluster"]["pools"][1]["available_from"] = "5d"
    scen["failures"] = {"device_mtbf": "2000h", "repair": "2h"}
    res = simulator.run(scen, progress=False)
    first = res.jobs["submit_time"].min()
    on_new = [now for pool, now in starts if pool == "p1"]
    assert on_new and min(on_new) >= first + install
    tl = res.timeline
    assert (tl["busy_gpus"] + tl["down_gpus"] <= tl["installed_gpus"]).all()
    assert (tl.loc[tl["time_s"] < first + install, "installed_gpus"] == 16).all()
    assert res.summary["jobs_completed"] == res.summary["jobs_submitted"]


def test_available_from_is_validated(tmp_path):
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].available_from"):
        run_expansion(tmp_path, jobs(submit_time=[0], gpus=[1], duration=[1]), available_from=-5)
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].available_from"):
        run_expansion(tmp_path, jobs(submit_time=[0], gpus=[1], duration=[1]), available_from="soon")


def test_failures_thin_to_the_installed_devices():
    # Two equal pools, the second installed half-way: expected failures are 3/4 of both pools all along.
    days = 40
    scen = scenario_dict([(8, 8), (8, 8)], [{
        "kind": "synthetic", "until": f"{days}d", "arrival": {"process": "poisson", "rate_per_hour": 4.0},
        "gpus": 8, "duration": {"dist": "exponential", "mean": "2h"}}])
    scen["cluster"]["pools"][1]["available_from"] = f"{days // 2}d"
    scen["failures"] = {"device_mtbf": "500h", "repair": "1h"}
    counts = []
    for seed in range(8):
        res = simulator.run(scen, seed=seed, progress=False)
        counts.append(res.summary["failures"])
        span = res.timeline["time_s"].iloc[-1] - res.timeline["time_s"].iloc[0]
    expected = 64 * (span + (span - days / 2 * 86400)) / (500 * 3600)
    assert abs(np.mean(counts) - expected) < 4 * np.sqrt(expected / len(counts))


def test_the_spend_rate_integrates_to_the_cost_overall_and_by_period(tmp_path):
    res = run_expansion(tmp_path, jobs(submit_time=[0, 0, 120], gpus=[8, 8, 4], duration=[300, 50, 500]),
                        price_usd=30_000, cost={"usd_per_kwh": 0.10, "amortization_years": 4})
    tl = res.timeline
    spent = float((tl["usd_per_h"].to_numpy()[:-1] / 3600 * np.diff(tl["time_s"].to_numpy())).sum())
    assert spent == pytest.approx(res.summary["cost_usd"])
    periods = res.by_period(100)
    assert periods["cost_usd"].sum() == pytest.approx(res.summary["cost_usd"])
    # The second pool's devices cost nothing in the first 100 s: only the first pool and the energy.
    first_pool_per_s = 8 * 30_000 / (4 * SECONDS_PER_YEAR)
    assert periods["cost_usd"].iloc[0] == pytest.approx(100 * first_pool_per_s + 0.10 * periods["energy_kwh"].iloc[0])


def run_refresh(tmp_path, js, **extra):
    """The first pool retires at 100 s; the second is there from the start."""
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}])
    scen["cluster"]["pools"][0]["available_until"] = 100
    scen.update(extra)
    return simulator.run(scen, progress=False)


def test_hand_worked_retirement(tmp_path):
    # a (8 GPUs, 300 s) on the first pool, b (8 GPUs, 50 s) on the second. At 100 s the first pool
    # retires: a checkpoints (no work lost), waits for nothing (b left at 50) and restarts on the
    # second pool, paying the 60 s restore: 100 + 60 + 200 = 360.
    res = run_refresh(tmp_path, jobs(submit_time=[0, 0], gpus=[8, 8], duration=[300, 50]),
                      cost={"usd_per_kwh": 0.0, "amortization_years": 4})
    a = res.jobs.set_index("job_id").loc["a"]
    assert (a["end_time"], a["pool"], a["preemptions"], a["lost_gpu_s"]) == (360, "p1", 1, 0)
    tl = res.timeline.set_index("time_s")
    assert tl["installed_gpus"].to_dict() == {0: 16, 50: 16, 100: 8, 360: 8}
    # Idle power of the retired node stops at 100 s: 10.2 kW + 10.2 kW, then one idle node, then a.
    assert (tl["power_kw"] * 1000).round(6).to_dict() == {0: 20400.0, 50: 15640.0, 100: 10200.0, 360: 5440.0}
    assert res.summary["gpu_utilization"] == pytest.approx((8 * 100 + 8 * 50 + 8 * 260) / (8 * 100 + 8 * 360))
    price = res.summary["capex_usd"] / (100 + 360)  # the same price per pool-second for both pools
    assert res.summary["capex_usd"] == pytest.approx(price * 460)


@pytest.mark.parametrize("policy", SCHEDULING)
def test_refresh_cycle_under_failures_keeps_the_books(policy):
    # An old pool retires at 6 days as a new one arrives at 4: work moves, nothing is lost or stranded.
    scen = scenario_dict([(2, 8), (2, 8)], [{
        "kind": "synthetic", "until": "10d", "arrival": {"process": "poisson", "rate_per_hour": 1.5},
        "gpus": {"choice": [1, 4, 8], "weights": [0.5, 0.3, 0.2]},
        "duration": {"dist": "exponential", "mean": "4h"}}], policy)
    scen["cluster"]["pools"][0]["available_until"] = "6d"
    scen["cluster"]["pools"][1]["available_from"] = "4d"
    scen["failures"] = {"device_mtbf": "1000h", "repair": "3h"}
    scen["scheduler"]["preemption"] = {"checkpoint_on_preempt": True}
    res = simulator.run(scen, progress=False)
    assert res.summary["jobs_completed"] == res.summary["jobs_submitted"]
    tl = res.timeline
    assert (tl["busy_gpus"] + tl["down_gpus"] <= tl["installed_gpus"]).all()
    first = res.jobs["submit_time"].min()
    late = tl[tl["time_s"] >= first + 6 * 86400]
    assert (late["installed_gpus"] == 16).all()  # only the new pool after the retirement
    finished_late = res.jobs[res.jobs["end_time"] > first + 6 * 86400]
    assert (finished_late["pool"] == "p1").all()


def test_available_until_must_follow_available_from():
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "synthetic", "jobs": 5, "gpus": 1,
                                              "arrival": {"process": "poisson", "rate_per_hour": 1},
                                              "duration": {"dist": "exponential", "mean": "1h"}}])
    scen["cluster"]["pools"][1].update(available_from="2d", available_until="1d")
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].*available_until must come after"):
        simulator.run(scen, progress=False)


def test_hand_worked_drain(tmp_path):
    # The first pool retires at 100 s and drains from 50 s. a (0-30 s) and c (40-60 s, started before
    # the drain) run on it; d arrives at 60 s to a free but draining pool and waits for the second pool,
    # which b holds until 300 s; e (at 85 s) queues behind d. Nothing is interrupted.
    js = jobs(submit_time=[0, 0, 40, 60, 85], gpus=[8, 8, 8, 8, 8], duration=[30, 300, 20, 20, 50])
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}])
    scen["cluster"]["pools"][0].update(available_until=100, drain_before=50)
    drained = simulator.run(scen, progress=False).jobs.set_index("job_id")
    assert drained["start_time"].to_dict() == {"a": 0, "b": 0, "c": 40, "d": 300, "e": 320}
    assert drained["pool"].to_dict() == {"a": "p0", "b": "p1", "c": "p0", "d": "p1", "e": "p1"}
    assert (drained["preemptions"] == 0).all()
    # Without the drain, d runs on the old pool at once and e starts there too, to be cut at 100 s.
    retired = run_refresh(tmp_path, js).jobs.set_index("job_id")
    assert retired.loc["d", "start_time"] == 60 and retired.loc["e", "preemptions"] == 1


@pytest.mark.parametrize("policy", SCHEDULING)
def test_nothing_starts_on_a_draining_pool(policy):
    scen = scenario_dict([(2, 8), (2, 8)], [{
        "kind": "synthetic", "until": "10d", "arrival": {"process": "poisson", "rate_per_hour": 1.5},
        "gpus": {"choice": [1, 4, 8], "weights": [0.5, 0.3, 0.2]},
        "duration": {"dist": "exponential", "mean": "4h"}}], policy)
    scen["cluster"]["pools"][0].update(available_until="6d", drain_before="2d")
    res = simulator.run(scen, progress=False)
    assert res.summary["jobs_completed"] == res.summary["jobs_submitted"]
    first = res.jobs["submit_time"].min()
    on_old = res.jobs[res.jobs["pool"] == "p0"]
    # the last start of a job that ended on the old pool: before the drain (restarts would move it)
    assert (on_old["start_time"] < first + 4 * 86400).all()


def test_drain_before_is_validated():
    scen = scenario_dict([(1, 8), (1, 8)], [{"kind": "synthetic", "jobs": 5, "gpus": 1,
                                              "arrival": {"process": "poisson", "rate_per_hour": 1},
                                              "duration": {"dist": "exponential", "mean": "1h"}}])
    scen["cluster"]["pools"][1].update(drain_before="1d")
    with pytest.raises(simulator.CapsimError, match=r"cluster.pools\[1\].*drain_before needs available_until"):
        simulator.run(scen, progress=False)
    scen["cluster"]["pools"][1].update(available_from="2d", available_until="3d", drain_before="2d")
    with pytest.raises(simulator.CapsimError, match=r"draining before the pool enters service"):
        simulator.run(scen, progress=False)


@pytest.mark.parametrize("policy", BUILTIN)
def test_a_job_stranded_by_a_retirement_ends_the_run_queued_with_a_warning(policy, tmp_path):
    # a (16 GPUs) runs on the two-node pool until it retires at 100 s; no pool left can ever hold it
    # again. The run must still end (a policy with rounds would otherwise wake forever); b completes.
    js = jobs(submit_time=[0, 10], gpus=[16, 8], duration=[500, 50], recorded_start_time=[0, 10])
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict([(2, 8), (1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}], policy)
    scen["cluster"]["pools"][0]["available_until"] = 100
    with pytest.warns(UserWarning, match=r"1 job\(s\) never finished.*: a$"):
        res = simulator.run(scen, progress=False)
    assert res.jobs.set_index("job_id")["status"].to_dict() == {"a": "queued", "b": "completed"}


def test_rounds_shorter_than_the_checkpoint_interval_warn_when_preemptions_lose_work():
    scen = scenario_dict([(1, 8)], [{"kind": "synthetic", "jobs": 5, "gpus": 1,
                                     "arrival": {"process": "poisson", "rate_per_hour": 1},
                                     "duration": {"dist": "exponential", "mean": "1h"}}], "gavel", round="1m",
                         preemption={"checkpoint_interval": "10m"})
    with pytest.warns(UserWarning, match=r"gavel moves jobs every 1m.*checkpoint_on_preempt: true"):
        simulator.run(scen, progress=False)
    # Preemptions that checkpoint lose nothing; a round of 1m then needs only a restore well under it.
    scen["scheduler"]["preemption"].update(checkpoint_on_preempt=True, restore=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulator.run(scen, progress=False)
