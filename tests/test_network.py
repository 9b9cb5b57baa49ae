"""The scale-out fabric as a shared resource: max-min fair sharing (closed forms and Hypothesis), a
hand-worked schedule, and the identity that a job's run takes its duration plus its network delay."""


import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulator
from simulator.errors import CapsimError
from simulator.network.fabric import Fabric, Flow
from simulator.policies.builtin import BUILTIN
from tests.helpers import jobs, run_jobs, scenario_dict
from tests.policies.test_policy_invariants import (
    OPTIONS,
    assert_timeline_conserves_work,
    with_recorded_starts,
)

H100_GBS = 50.0  # scale-out GB/s per H100 (hardware_profiles/h100-sxm.yaml)


def fabric_with(demands, capacity):
    fabric = Fabric(capacity, H100_GBS)
    for i, d in enumerate(demands):
        fabric.flows[i] = Flow(d, 1.0, 0.0)
    return fabric


@given(demands=st.lists(st.floats(0.01, 1e4), min_size=1, max_size=30), capacity=st.floats(0.01, 1e5))
def test_fair_rates_are_max_min_fair(demands, capacity):
    rates = {job: rate for job, _, rate in fabric_with(demands, capacity).fair_rates()}
    grants = np.array([rates[i] * d for i, d in enumerate(demands)])
    assert (grants <= np.array(demands) * (1 + 1e-12)).all()  # nobody gets more than it asks
    assert grants.sum() <= capacity * (1 + 1e-9)  # the fabric is not over-used
    unmet = [i for i, d in enumerate(demands) if rates[i] < 1.0]
    if unmet:  # max-min: the capacity is all given out, and every unmet flow has the largest grant
        assert grants.sum() == pytest.approx(capacity, rel=1e-9)
        assert all(grants[i] == pytest.approx(grants.max(), rel=1e-9) for i in unmet)
    else:
        assert sum(demands) <= capacity * (1 + 1e-9)


def test_fair_rates_closed_form():
    # 1000 GB/s for demands 100, 600, 900: 100 is met; the rest split 900 evenly, 450 each.
    rates = [rate for _, _, rate in fabric_with([100, 600, 900], 1000).fair_rates()]
    assert rates == pytest.approx([1.0, 450 / 600, 450 / 900])


def run_net(tmp_path, js, oversubscription=2.0, pools=((4, 8),), policy="fifo", failures=None, **scheduler):
    network = {} if oversubscription is None else {"network": {"oversubscription": oversubscription}}
    return run_jobs(js, pools, policy, pool_keys=network,
                    extra={"failures": failures} if failures else None, **scheduler)


def test_hand_worked_contention(tmp_path):
    # 5 nodes x 8 H100 behind a 2:1 fabric: 40 x 50 / 2 = 1000 GB/s. a and b each span two nodes and
    # communicate all the time (16 x 50 = 800 GB/s each): 500 each, rate 5/8, until a's 100 s of work
    # are done at 160 s; then b runs alone at full speed, 200 - 100 = 100 s of work left, ending at 260.
    # c (one node) never touches the fabric.
    js = jobs(submit_time=[0, 0, 0], gpus=[16, 16, 8], duration=[100, 200, 50], comm_fraction=[1.0, 1.0, 1.0])
    res = run_net(tmp_path, js, pools=((5, 8),))
    by_id = res.jobs.set_index("job_id")
    assert by_id["end_time"].to_dict() == pytest.approx({"a": 160.0, "b": 260.0, "c": 50.0})
    assert by_id["network_delay_s"].to_dict() == pytest.approx({"a": 60.0, "b": 60.0, "c": 0.0})
    assert res.summary["network_delay_gpu_hours"] == pytest.approx(2 * 60 * 16 / 3600)
    assert res.summary["network_delayed_jobs"] == 2


def test_a_job_within_one_node_or_without_traffic_is_not_slowed(tmp_path):
    js = jobs(submit_time=[0, 0, 0, 0], gpus=[8, 8, 16, 16], duration=[100, 100, 100, 100],
              comm_fraction=[1.0, 1.0, 0.0, 0.0])
    res = run_net(tmp_path, js, oversubscription=64, pools=((6, 8),))
    assert (res.jobs["end_time"] == 100).all()
    assert (res.jobs["network_delay_s"] == 0).all()


def mixed_jobs(seed, n=80):
    rng = np.random.default_rng(seed)
    return jobs(submit_time=np.sort(rng.uniform(0, 2000, n)).round(3), gpus=rng.choice([4, 8, 16, 24], n),
                duration=rng.uniform(50, 600, n).round(3), comm_fraction=rng.uniform(0, 1, n).round(3))


def test_a_non_blocking_fabric_changes_nothing(tmp_path):
    js = mixed_jobs(1)
    plain = run_net(tmp_path, js, oversubscription=None)
    non_blocking = run_net(tmp_path, js, oversubscription=1.0)
    pd.testing.assert_frame_equal(plain.jobs, non_blocking.jobs)
    pd.testing.assert_frame_equal(plain.timeline, non_blocking.timeline)
    assert non_blocking.summary["network_delay_gpu_hours"] == 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), oversubscription=st.floats(1.0, 16.0))
def test_a_run_takes_its_duration_plus_its_network_delay(seed, oversubscription, tmp_path):
    res = run_net(tmp_path, mixed_jobs(seed, 40), oversubscription=oversubscription)
    out = res.jobs
    assert (out["status"] == "completed").all()
    ran = out["end_time"] - out["start_time"]
    np.testing.assert_allclose(ran, out["duration"] + out["network_delay_s"], rtol=1e-9, atol=1e-6)
    assert (out["network_delay_s"] >= 0).all()
    assert_timeline_conserves_work(res)


@pytest.mark.parametrize("policy", BUILTIN)
def test_every_policy_finishes_every_job_on_a_contended_fabric_with_failures(policy, tmp_path):
    js = mixed_jobs(7, 60)
    js["gpus"] = np.minimum(js["gpus"], 16)
    js["min_gpus"] = np.maximum(1, js["gpus"] // 2)
    js["deadline"] = js["submit_time"] + 50 * js["duration"]
    res = run_net(tmp_path, with_recorded_starts(js), oversubscription=4, pools=((4, 8),), policy=policy,
                  failures={"device_mtbf": "4h", "repair": "10m"},
                  preemption={"restore": 5, "checkpoint_interval": 20}, **OPTIONS.get(policy, {}))
    out = res.jobs
    assert ((out["status"] == "completed") | (out["status"] == "rejected")).all()
    assert (out["status"] == "completed").sum() >= (len(js) if policy != "edf" else 1)
    assert res.summary["network_delay_gpu_hours"] > 0
    assert_timeline_conserves_work(res)


def test_network_is_validated(tmp_path):
    scen = scenario_dict([(2, 8)], [{"kind": "synthetic", "jobs": 5, "arrival": {"process": "poisson",
                         "rate_per_hour": 1}, "duration": {"dist": "exponential", "mean": "1h"}}])
    scen["cluster"]["pools"][0]["network"] = {"oversubscription": 0.5}
    with pytest.raises(CapsimError, match=r"cluster\.pools\[0\]\.network\.oversubscription"):
        simulator.run(scen, progress=False)
    js = jobs(submit_time=[0], gpus=[8], duration=[10], comm_fraction=[1.5])
    with pytest.raises(CapsimError, match=r"job 'a' \(row 1\).*comm_fraction.*>= 0 and <= 1, got 1.5"):
        run_net(tmp_path, js)


def test_a_model_jobs_traffic_comes_from_the_performance_model():
    # Llama 3 70B on 256 H100s: the model says what share of its run is traffic between nodes, f.
    # Alone on a 32-node pool whose fabric is oversubscribed k = 2/f, it gets 1/(k f) = half of what it
    # asks: it runs exactly twice as long as the model's uncontended run time.
    from simulator.perf.jobs import model_job_comm_fraction, model_job_seconds

    tokens = 2e9
    fraction = model_job_comm_fraction("h100-sxm", "llama3-70b", 256, tokens=tokens)
    assert 0.01 < fraction < 0.5
    scen = scenario_dict([(32, 8)], [{"kind": "synthetic", "jobs": 1, "arrival": {"process": "poisson",
                         "rate_per_hour": 1}, "gpus": 256, "model": "llama3-70b", "tokens": tokens}])
    scen["cluster"]["pools"][0]["network"] = {"oversubscription": 2 / fraction}
    job = simulator.run(scen, progress=False).jobs.iloc[0]
    uncontended = model_job_seconds("h100-sxm", "llama3-70b", 256, tokens=tokens)
    assert job["end_time"] - job["start_time"] == pytest.approx(2 * uncontended, rel=1e-9)
    assert job["network_delay_s"] == pytest.approx(uncontended, rel=1e-9)


@pytest.mark.parametrize("layout", [{"tp": 8}, {"tp": 8, "pp": 4}, {"tp": 4, "pp": 2, "zero": 3},
                                    {"tp": 8, "overlap_grad_reduce": False}])
def test_a_jobs_traffic_is_at_least_its_exposed_communication(layout):
    # What crosses the fabric is every byte of data-parallel and pipeline traffic, hidden behind
    # compute or not: never less than the exposed part, and all of it when nothing overlaps.
    from simulator.perf import predict_training
    from simulator.perf.zoo import load_model

    spec = load_model("llama3-70b").model_spec()
    b = predict_training("h100-sxm", spec, 256, 256, **layout).breakdown
    assert b.scale_out_comm_s >= b.dp_comm_s + b.pp_comm_s - 1e-12
    assert b.scale_out_comm_s > 0
    if layout.get("overlap_grad_reduce") is False:
        assert b.scale_out_comm_s == pytest.approx(b.dp_comm_s + b.pp_comm_s, rel=1e-12)
