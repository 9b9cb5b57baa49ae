"""Node failures and checkpointing against closed forms: the Poisson failure count, the bound on work
lost per interruption, and the expected run time of a checkpointed job under exponential failures."""

import math
import warnings

import numpy as np
import pytest

import simulator
from simulator.policies.builtin import BUILTIN
from tests.helpers import jobs, scenario_dict
from tests.policies.test_policy_invariants import (
    OPTIONS,
    assert_timeline_conserves_work,
    with_recorded_starts,
)


def run_failing(tmp_path, js, pools=((1, 8),), failures=None, **preemption):
    path = tmp_path / "jobs.csv"
    js.to_csv(path, index=False)
    scen = scenario_dict(list(pools), [{"kind": "trace", "format": "csv", "path": str(path)}],
                         preemption={"restore": 0, **preemption})
    scen["failures"] = failures or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return simulator.run(scen, progress=False)


def test_failures_arrive_as_a_poisson_process_of_the_cluster_rate(tmp_path):
    # 32 devices, each failing once per 3,200 s: one failure per 100 s while jobs run. 1-GPU jobs
    # keep the cluster working for ~100,000 s; repairs are instant so no failure hits a down node.
    n = 4000
    js = jobs(submit_time=np.arange(n) * 25.0, gpus=[1] * n, duration=[600.0] * n)
    res = run_failing(tmp_path, js, pools=((4, 8),), failures={"device_mtbf": 3200, "repair": 0})
    span = res.timeline["time_s"].iloc[-1] - res.timeline["time_s"].iloc[0]
    expected = span / 100.0
    assert abs(res.summary["failures"] - expected) < 4 * math.sqrt(expected)
    assert (res.jobs["status"] == "completed").all()
    assert res.summary["failure_interruptions"] == res.jobs["failures"].sum() > 0


def test_an_interruption_loses_less_than_one_checkpoint_interval(tmp_path):
    js = jobs(submit_time=[0, 0, 0, 0], gpus=[8, 4, 2, 8], duration=[5000, 4000, 3000, 2000])
    res = run_failing(tmp_path, js, pools=((2, 8),), failures={"device_mtbf": 8000, "repair": 60},
                      checkpoint_interval=300)
    out = res.jobs
    assert out["failures"].sum() > 0
    assert (out["lost_gpu_s"] <= out["failures"] * 300 * out["gpus"] + 1e-6).all()
    # The work still gets done: every job runs at least its duration, plus what it redid.
    assert (out["end_time"] - out["start_time"] >= out["duration"]).all()


def test_no_interval_means_no_work_is_lost(tmp_path):
    js = jobs(submit_time=[0, 0], gpus=[8, 8], duration=[5000, 5000])
    res = run_failing(tmp_path, js, failures={"device_mtbf": 8000, "repair": 0})
    assert res.jobs["failures"].sum() > 0 and res.jobs["lost_gpu_s"].sum() == 0
    # With nothing lost and instant restarts, the node never idles: the makespan is the work.
    assert res.summary["makespan_s"] == pytest.approx(10_000)


@pytest.mark.parametrize("interval", [50.0, 100.0, 250.0])
def test_checkpointed_run_time_matches_the_exponential_failure_closed_form(tmp_path, interval):
    # One 8-GPU node, failures at rate 1/M (M = 1,000 s), checkpoints of C = 10 s every tau of work,
    # instant repair and restore. Each of the W/tau segments of tau + C must finish without a failure,
    # so E[time per job] = (W / tau) * M * (exp((tau + C) / M) - 1) (e.g. Daly 2006, eq. 10 with R = 0).
    # Jobs queue back to back, so the makespan is the sum of the jobs' run times.
    m, c, work, n = 1000.0, 10.0, 1000.0, 1500
    js = jobs(submit_time=[0.0] * n, gpus=[8] * n, duration=[work] * n)
    res = run_failing(tmp_path, js, failures={"device_mtbf": 8 * m, "repair": 0},
                      checkpoint_interval=interval, checkpoint_cost=c)
    expected = work / interval * m * math.expm1((interval + c) / m)
    assert res.summary["makespan_s"] / n == pytest.approx(expected, rel=0.03)


def test_checkpoint_cost_without_an_interval_is_an_error(tmp_path):
    with pytest.raises(simulator.CapsimError, match="checkpoint_cost needs a checkpoint_interval"):
        run_failing(tmp_path, jobs(submit_time=[0], gpus=[1], duration=[1]), checkpoint_cost=5)


@pytest.mark.parametrize("policy", BUILTIN)
def test_every_policy_survives_failures_and_finishes_every_job(policy, tmp_path):
    rng = np.random.default_rng(5)
    n = 60
    js = jobs(submit_time=np.sort(rng.uniform(0, 3000, n)), gpus=rng.choice([1, 2, 4, 8], n),
              duration=rng.uniform(50, 900, n), vc=rng.choice(list("xyz"), n), user=rng.choice(list("xyz"), n))
    js["min_gpus"] = np.maximum(1, js["gpus"] // 2)
    js["deadline"] = js["submit_time"] + 50 * js["duration"]
    path = tmp_path / "jobs.csv"
    with_recorded_starts(js).to_csv(path, index=False)
    scen = scenario_dict([(1, 8), (2, 4)], [{"kind": "trace", "format": "csv", "path": str(path)}], policy,
                         preemption={"restore": 5, "checkpoint_interval": 20}, **OPTIONS.get(policy, {}))
    scen["failures"] = {"device_mtbf": "2h", "repair": "10m"}
    res = simulator.run(scen, progress=False)
    out = res.jobs
    assert res.summary["failures"] > 0
    assert ((out["status"] == "completed") | (out["status"] == "rejected")).all()
    assert (out["status"] == "completed").sum() >= (n if policy != "edf" else 1)
    assert_timeline_conserves_work(res)


def test_failures_are_reproducible_from_the_seed(tmp_path):
    js = jobs(submit_time=[0, 10, 20, 30], gpus=[8, 4, 2, 8], duration=[5000, 4000, 3000, 2000])

    def run(seed_dir):
        d = tmp_path / seed_dir
        d.mkdir()
        return run_failing(d, js, pools=((2, 8),), failures={"device_mtbf": 8000, "repair": 60},
                           checkpoint_interval=300).jobs

    first, second = run("a"), run("b")
    assert first["failures"].sum() > 0
    assert first.equals(second)


def test_graceful_preemptions_keep_their_work_and_failures_do_not(tmp_path):
    # srtf: a (8 GPUs, 1000 s) runs from 0; b (8 GPUs, 10 s) arrives at 250 and preempts it. With
    # checkpoints every 100 s, a loses 50 s x 8 GPUs, unless the scheduler lets it checkpoint first.
    js = jobs(submit_time=[0, 250], gpus=[8, 8], duration=[1000, 10])

    def lost(graceful):
        path = tmp_path / "jobs.csv"
        js.to_csv(path, index=False)
        scen = scenario_dict([(1, 8)], [{"kind": "trace", "format": "csv", "path": str(path)}], "srtf",
                             preemption={"restore": 0, "checkpoint_interval": 100, "checkpoint_on_preempt": graceful})
        return simulator.run(scen, progress=False).jobs.set_index("job_id").loc["a", "lost_gpu_s"]

    assert lost(False) == pytest.approx(400)
    assert lost(True) == 0


def test_down_devices_are_never_busy_and_add_up_to_the_repair_time(tmp_path):
    rng = np.random.default_rng(11)
    n = 80
    js = jobs(submit_time=np.sort(rng.uniform(0, 5000, n)), gpus=rng.choice([1, 2, 4, 8], n),
              duration=rng.uniform(100, 1500, n))
    res = run_failing(tmp_path, js, pools=((4, 8),), failures={"device_mtbf": 20_000, "repair": 300},
                      checkpoint_interval=100)
    tl = res.timeline
    assert res.summary["failures"] > 0
    assert (tl["busy_gpus"] + tl["down_gpus"] <= 32).all()
    down_s = float((tl["down_gpus"].to_numpy()[:-1] * np.diff(tl["time_s"].to_numpy())).sum())
    # Every outage is 8 devices x 300 s, cut short only if the last job left during a repair.
    assert 0 < down_s <= res.summary["down_gpu_hours"] * 3600 + 1e-6


def test_failures_start_with_the_first_job_on_a_unix_clock(tmp_path):
    # A trace on unix time: nothing may fail (or draw power) in the decades before its first job.
    t0 = 1.6e9
    js = jobs(submit_time=[t0, t0 + 10], gpus=[8, 8], duration=[3000, 3000])
    res = run_failing(tmp_path, js, failures={"device_mtbf": 8000, "repair": 60})
    assert res.timeline["time_s"].iloc[0] == t0
    assert res.summary["failures"] < 50
