"""Autoscaled services sharing the cluster with training: hand-worked scale-up, readiness and scale-down
times; a training run preempted exactly when a replica needs its devices and resumed when it is given
back; scale to zero; devices conserved over the timeline; the same seed, the same files; key errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.perf.inference import weight_bytes
from simulator.perf.zoo import load_model
from simulator.serving.autoscale import Scaler

INTERVAL, DELAY, BOOT, GBS = 10.0, 30.0, 20.0, 16.0


def provisioning_s(tp: int) -> float:
    """Boot time + llama3-8b's bf16 weights (all tp shards) over the load bandwidth."""
    return BOOT + weight_bytes(load_model("llama3-8b").model_spec(), tp, "bf16") * tp / (GBS * 1e9)


def scenario(tmp_path, rows, tp=2, replicas=None, autoscale=None, devices=8):
    path = tmp_path / "requests.csv"
    pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"]).to_csv(path, index=False)
    scale = {"metric": "queue", "target": 2, "interval": INTERVAL, "scale_down_delay": DELAY, "boot_time": BOOT,
             "weight_load_gbs": GBS}
    scale.update(autoscale or {})
    return {"name": "autoscale", "seed": 1,
            "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": devices}]},
            "services": [{"name": "chat", "model": "llama3-8b", "pool": "main",
                          "replicas": replicas or {"min": 1, "max": 4}, "layout": {"tp": tp},
                          "autoscale": scale}],
            "requests": [{"kind": "trace", "service": "chat", "format": "csv", "path": str(path)}]}


def at(timeline: pd.DataFrame, t: float, column: str):
    """A timeline column's value at time t (the state after the last instant at or before t)."""
    row = timeline[timeline["time_s"] <= t].iloc[-1]
    return row[column]


# Six long requests at t = 5 on the one replica (one batch, so they end together at E), and one short
# request at 200 that keeps the service alive after them.
STEP = [(5.0, 512, 2000)] * 6 + [(200.0, 512, 10)]


def test_step_in_load_scales_up_at_the_next_evaluation_and_down_after_the_delay(tmp_path):
    """queue metric, target 2 per replica. At the evaluation t = 10 six requests are outstanding: want
    ceil(6 / 2) = 3, so two replicas take their devices at 10 and are ready at exactly 10 + boot +
    weights / bandwidth. The six end together at E; the last evaluation that saw them is t_h, the last
    grid point before E; every later one wants min = 1, so the two newest replicas (idle) are given back
    at the first evaluation with no higher recommendation in the last 30 s: t_h + 30."""
    res = simulator.run(scenario(tmp_path, STEP), progress=False)
    req, tl, svc = res.requests, res.timeline, res.summary["services"]["chat"]
    e = req["end_s"].iloc[:6]
    assert (e == e.iloc[0]).all() and (req["replica"].iloc[:6] == 0).all()
    e = e.iloc[0]
    assert 10 < e < 200 and e % INTERVAL != 0
    t_h = math.floor(e / INTERVAL) * INTERVAL
    ready = 10.0 + provisioning_s(2)
    # scale-up at 10: devices taken, two provisioning; ready at exactly 10 + delay
    assert at(tl, 9.99, "serving_gpus") == 2 and at(tl, 10.0, "serving_gpus") == 6
    assert at(tl, 10.0, "serving_provisioning_replicas") == 2 and at(tl, 10.0, "serving_ready_replicas") == 1
    assert ready in set(tl["time_s"])
    assert at(tl, ready, "serving_ready_replicas") == 3 and at(tl, ready, "serving_provisioning_replicas") == 0
    assert tl[(tl["time_s"] > 10.0) & (tl["time_s"] < ready)]["serving_ready_replicas"].eq(1).all()
    # scale-down at t_h + 30 exactly: back to one replica and 2 devices
    down = t_h + DELAY
    assert at(tl, down - 1e-6, "serving_ready_replicas") == 3
    assert at(tl, down, "serving_ready_replicas") == 1 and at(tl, down, "serving_gpus") == 2
    # the request at 200 goes to the one replica left (replica 0, round robin over the ready ones)
    assert req["replica"].iloc[6] == 0
    end = req["end_s"].max()
    assert svc["scale_ups"] == 2 and svc["scale_downs"] == 2 and svc["replicas_peak"] == 3
    assert svc["provisioning_s"] == pytest.approx(provisioning_s(2), rel=1e-12)
    # replica-hours: replica 0 for the whole span, two more from 10 to t_h + 30
    assert svc["replica_hours"] == pytest.approx((end + 2 * (down - 10.0)) / 3600, rel=1e-12)
    assert svc["gpu_hours"] == pytest.approx(2 * svc["replica_hours"], rel=1e-12)
    # and the timeline's serving_gpus integrates to the same device-time
    dt = np.diff(tl["time_s"].to_numpy())
    assert (tl["serving_gpus"].to_numpy()[:-1] * dt).sum() == pytest.approx(svc["gpu_hours"] * 3600, rel=1e-12)


def test_a_replica_scaled_down_drains_then_gives_its_devices_back(tmp_path):
    """Two replicas from the start (initial 2), one long request on each (round robin). Every evaluation
    wants ceil(2 / 2) = 1; the initial 2 leaves the 30 s window at t = 30, when the newest replica is
    scaled down while it still serves its request: routed nothing more (the request at 35 goes to replica
    0), it gives its 2 devices back at exactly that request's end."""
    rows = [(1.0, 64, 6000), (2.0, 64, 6000), (35.0, 64, 3000)]
    res = simulator.run(scenario(tmp_path, rows, replicas={"min": 1, "max": 2, "initial": 2}), progress=False)
    req, tl, svc = res.requests, res.timeline, res.summary["services"]["chat"]
    assert req["replica"].tolist() == [0, 1, 0]
    b_end = req["end_s"].iloc[1]
    assert b_end > 35.0
    assert at(tl, 30.0, "serving_gpus") == 4 and at(tl, 30.0, "serving_ready_replicas") == 2
    assert at(tl, b_end - 1e-6, "serving_gpus") == 4 and at(tl, b_end, "serving_gpus") == 2
    assert svc["scale_downs"] == 1 and svc["scale_ups"] == 0
    assert svc["replica_hours"] == pytest.approx((req["end_s"].max() + b_end) / 3600, rel=1e-12)


def test_training_is_preempted_exactly_when_serving_needs_its_devices_and_resumes_after_scale_down(tmp_path):
    """8 devices: one tp-2 replica, and a 6-device training job of 1,000 s on the rest from 0. The
    scale-up at t = 10 needs 4 devices: the job is evicted at 10 (no periodic checkpoints: it keeps its
    10 s of work) and waits; the replicas are given back at t_h + 30 and it restarts then, paying the
    60 s restore: it ends at t_h + 30 + 60 + 990. Lost to serving: 6 devices x 60 s."""
    jobs = pd.DataFrame([{"job_id": "train", "submit_time": 0.0, "gpus": 6, "duration": 1000.0}])
    res = simulator.run(scenario(tmp_path, STEP), jobs=jobs, progress=False)
    job = res.jobs.iloc[0]
    e = res.requests["end_s"].iloc[0]
    restart = math.floor(e / INTERVAL) * INTERVAL + DELAY
    assert job["start_time"] == 0.0 and job["preemptions"] == 1
    assert job["end_time"] == pytest.approx(restart + 60.0 + 990.0, rel=1e-12)
    tl = res.timeline
    assert at(tl, 10.0, "busy_gpus") == 0 and at(tl, 10.0, "queued_jobs") == 1
    assert at(tl, restart, "busy_gpus") == 6 and at(tl, restart - 1e-6, "busy_gpus") == 0
    svc = res.summary["services"]["chat"]
    assert svc["training_preemptions"] == 1 == res.summary["serving_training_preemptions"]
    assert svc["training_gpu_hours_lost"] == pytest.approx(6 * 60 / 3600, rel=1e-12)
    assert res.summary["serving_training_gpu_hours_lost"] == svc["training_gpu_hours_lost"]
    assert (tl["busy_gpus"] + tl["serving_gpus"] <= tl["installed_gpus"]).all()


def test_a_checkpointed_job_loses_its_work_since_the_last_checkpoint(tmp_path):
    """With a checkpoint every 4 s of work and no checkpoint on preemption, the job evicted at 10 keeps
    8 s and redoes 2: 6 x (2 + 60) device-seconds lost."""
    s = scenario(tmp_path, STEP)
    s["scheduler"] = {"preemption": {"checkpoint_interval": 4.0}}
    jobs = pd.DataFrame([{"job_id": "train", "submit_time": 0.0, "gpus": 6, "duration": 1000.0}])
    res = simulator.run(s, jobs=jobs, progress=False)
    svc = res.summary["services"]["chat"]
    assert svc["training_gpu_hours_lost"] == pytest.approx(6 * (2 + 60) / 3600, rel=1e-12)
    restart = math.floor(res.requests["end_s"].iloc[0] / INTERVAL) * INTERVAL + DELAY
    assert res.jobs.iloc[0]["end_time"] == pytest.approx(restart + 60.0 + 992.0, rel=1e-12)


def test_scale_to_zero_a_request_waits_for_a_replica_to_be_provisioned(tmp_path):
    """min 0: no replica at the start. The request at 100 finds none; one is placed at once and is ready
    at 100 + delay, when the request is admitted: TTFT = delay + its prefill. Idle after, the service
    goes back to zero replicas; the second request at 500 wakes it again."""
    rows = [(100.0, 512, 4), (500.0, 512, 4), (500.0, 256, 4)]
    res = simulator.run(scenario(tmp_path, rows, replicas={"min": 0, "max": 2}), progress=False)
    req, tl, svc = res.requests, res.timeline, res.summary["services"]["chat"]
    delay = provisioning_s(2)
    ttft = req["first_token_s"] - req["arrival_s"]
    assert (ttft >= delay).all()
    assert ttft.iloc[0] < delay + 0.1 and (req["status"] == "completed").all()
    assert tl["time_s"].iloc[0] == 100.0  # nothing held before: the timeline's first change
    assert at(tl, 100.0, "serving_provisioning_replicas") == 1 and at(tl, 100.0, "serving_gpus") == 2
    assert at(tl, 100.0 + delay, "serving_ready_replicas") == 1
    assert at(tl, 450.0, "serving_gpus") == 0  # scaled to zero between the two
    assert at(tl, 500.0, "serving_provisioning_replicas") == 1
    assert svc["scale_ups"] == 2 and svc["scale_downs"] == 1 and svc["replicas_peak"] == 1


def test_utilization_metric_scales_with_busy_replicas(tmp_path):
    """One replica busy through a whole 10 s window (load 1) against a 0.5 target wants 2; idle after, it
    returns to 1."""
    rows = [(0.0, 512, 3000)] + [(300.0, 16, 2)]
    res = simulator.run(scenario(tmp_path, rows, autoscale={"metric": "utilization", "target": 0.5}),
                        progress=False)
    tl, svc = res.timeline, res.summary["services"]["chat"]
    assert at(tl, 9.99, "serving_gpus") == 2 and at(tl, 10.0, "serving_gpus") == 4
    assert svc["scale_ups"] == 1 and svc["scale_downs"] == 1
    assert at(tl, 299.0, "serving_gpus") == 2


def test_devices_are_conserved_and_replica_hours_match_the_timeline(tmp_path):
    """A day of diurnal load on an autoscaled service and a stream of training jobs on 2 nodes: at every
    instant training and replicas together hold at most the pool, the replica-hours equal the timeline's
    ready and provisioning replicas integrated, and the run is the same twice."""
    s = {"name": "diurnal", "seed": 4,
         "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 2, "devices_per_node": 8}]},
         "workload": [{"kind": "synthetic", "jobs": 40, "gpus": {"choice": [1, 2, 4, 8]},
                       "arrival": {"process": "poisson", "rate_per_hour": 2},
                       "duration": {"dist": "exponential", "mean": "3h"}}],
         "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": {"min": 1, "max": 8},
                       "layout": {"tp": 2}, "scheduler": {"max_num_seqs": 32},
                       "autoscale": {"metric": "queue", "target": 8, "interval": "1m", "scale_down_delay": "10m"}}],
         "requests": [{"kind": "synthetic", "service": "chat", "until": "1d",
                       "arrival": {"process": "poisson", "rate_per_s": 1.0,
                                   "sinusoid": {"peak_to_trough": 8, "peak_hour": 14}},
                       "prompt_tokens": 1024, "output_tokens": {"dist": "lognormal", "median": 400, "sigma": 0.6}}]}
    res = simulator.run(s, progress=False)
    tl, svc = res.timeline, res.summary["services"]["chat"]
    assert svc["scale_ups"] > 0 and svc["scale_downs"] > 0
    assert (tl["busy_gpus"] + tl["serving_gpus"] <= tl["installed_gpus"]).all()
    assert (tl["serving_gpus"] == 2 * (tl["serving_ready_replicas"] + tl["serving_provisioning_replicas"])).all()
    dt = np.diff(tl["time_s"].to_numpy())
    replicas = (tl["serving_ready_replicas"] + tl["serving_provisioning_replicas"]).to_numpy()[:-1]
    assert (replicas * dt).sum() == pytest.approx(svc["replica_hours"] * 3600, rel=1e-9)
    again = simulator.run(s, progress=False)
    assert again.requests.equals(res.requests) and again.jobs.equals(res.jobs) and again.timeline.equals(tl)


def test_same_seed_same_files(tmp_path):
    jobs = pd.DataFrame([{"job_id": "train", "submit_time": 0.0, "gpus": 6, "duration": 1000.0}])
    s = scenario(tmp_path, STEP)
    a, b = tmp_path / "a", tmp_path / "b"
    simulator.run(s, jobs=jobs, progress=False).write(a)
    simulator.run(s, jobs=jobs, progress=False).write(b)
    for name in ("requests.parquet", "jobs.parquet", "timeline.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_scaler_grid_and_stabilization():
    sc = Scaler("queue", 2.0, 15.0, None, 60.0, 0, 10, 100.0, 1)
    assert sc.next_time(100.0) == 115.0 and sc.next_time(114.9) == 115.0 and sc.next_time(115.0) == 130.0
    assert sc.recommend(115.0, 7, 0.0) == 4 and sc.recommend(115.0, 1, 0.0) == 1 and sc.recommend(1, 0, 0.0) == 0
    assert sc.recommend(115.0, 100, 0.0) == 10  # clipped to max
    recs = [sc.stable(100.0 + 15 * k, w) for k, w in enumerate([1, 5, 2, 2, 2, 2, 2], start=1)]
    # 5 at t = 130 is kept for 60 s: down to 2 at 190 (window (130, 190])
    assert recs == [1, 5, 5, 5, 5, 2, 2]


@pytest.mark.parametrize(("service", "where", "message"), [
    ({"replicas": {"min": 1, "max": 4}}, "services[0]", "needs an autoscale"),
    ({"replicas": 2, "autoscale": {"metric": "queue", "target": 2}}, "services[0]", "needs replicas: {min, max}"),
    ({"replicas": {"min": 3, "max": 2}, "autoscale": {"metric": "queue", "target": 2}}, "services[0].replicas",
     "must be at least min"),
    ({"replicas": {"min": 0, "max": 2}, "autoscale": {"metric": "utilization", "target": 1.5}},
     "services[0].autoscale", "busy fraction"),
    ({"replicas": {"min": 0, "max": 2}, "autoscale": {"metric": "utilization", "target": 0.5, "interval": 10,
                                                       "window": 25}}, "services[0].autoscale", "whole number"),
    ({"replicas": {"min": 0, "max": 2}, "autoscale": {"metric": "queue", "target": 2, "window": 20}},
     "services[0].autoscale", "window goes with metric: utilization"),
    ({"replicas": {"min": 0, "max": 2}, "autoscale": {"metric": "queue", "target": 2, "boot_time": -1}},
     "services[0].autoscale.boot_time", "greater than or equal"),
])
def test_bad_autoscale_keys_are_refused_with_their_path(tmp_path, service, where, message):
    s = scenario(tmp_path, STEP)
    s["services"][0].pop("autoscale")
    s["services"][0].update(service)
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(s, progress=False)
    assert where in str(info.value)
    assert len(str(info.value).strip().splitlines()) == 1


def test_more_replicas_than_the_pool_is_refused(tmp_path):
    with pytest.raises(CapsimError, match="cannot hold 5 replicas") as info:
        simulator.run(scenario(tmp_path, STEP, replicas={"min": 1, "max": 5}), progress=False)
    assert info.value.where == "services[0].replicas.max"


@pytest.mark.parametrize("scale", [{"metric": "utilization", "target": 0.6, "window": 30.0},
                                   {"metric": "queue", "target": 3}])
@pytest.mark.parametrize("lo", [0, 1])
def test_resting_between_bursts_changes_nothing(tmp_path, monkeypatch, scale, lo):
    """Bursts of requests an hour apart: between them the service rests (its least replicas, idle) and
    its evaluations stop until the next arrival. The same run evaluating at every interval throughout
    gives the same requests, timeline and figures, with many more evaluations (one per interval)."""
    from simulator.features import serving

    rng = np.random.default_rng(3)
    rows = [(3600.0 * k + float(x), 512, int(o)) for k in range(4)
            for x, o in zip(np.sort(rng.uniform(0, 60, 30)), rng.integers(50, 1500, 30), strict=True)]
    s = scenario(tmp_path, rows, replicas={"min": lo, "max": 4}, autoscale=scale)
    calls = []
    original = serving.Serving._evaluate

    def counted(self, due):
        calls.append(self.sim.now)
        original(self, due)

    monkeypatch.setattr(serving.Serving, "_evaluate", counted)
    resting = simulator.run(s, progress=False)
    rested = len(calls)
    monkeypatch.setattr(serving.Serving, "_at_rest", lambda self, s: False)  # never at rest
    calls.clear()
    busy = simulator.run(s, progress=False)
    assert len(calls) > 4 * rested
    end = busy.requests["end_s"].max()
    assert len(calls) <= end / INTERVAL + 1  # one per interval, never per request
    assert resting.requests.equals(busy.requests) and resting.timeline.equals(busy.timeline)
    assert resting.summary["services"] == busy.summary["services"]
    assert resting.summary["services"]["chat"]["scale_ups"] >= (4 if lo == 0 else 1)  # each burst wakes it


def test_a_replica_that_would_take_more_than_a_day_is_refused(tmp_path):
    s = scenario(tmp_path, STEP, autoscale={"weight_load_gbs": 1e-6})
    with pytest.raises(CapsimError, match="more than a day") as info:
        simulator.run(s, progress=False)
    assert info.value.where == "services[0].autoscale"


def test_a_tiny_target_asks_for_max():
    sc = Scaler("queue", 1e-320, 15.0, None, 60.0, 0, 6, 0.0, 0)
    assert sc.recommend(15.0, 1, 0.0) == 6 and sc.recommend(30.0, 0, 0.0) == 0
    sc = Scaler("utilization", 1e-320, 15.0, None, 60.0, 1, 6, 0.0, 1)
    assert sc.recommend(15.0, 0, 3.0) == 6


def test_an_autoscaled_service_with_the_paged_cache_scales_up_and_preempts_within_its_blocks(tmp_path):
    """Autoscaling and the paged KV cache together: the same step in load on replicas whose cache holds
    6,000 tokens (six requests of 2,512 need 15,072). Every request completes, more replicas come and
    go, a replica's blocks never pass its cache, and requests preempted for blocks are counted."""
    spec = scenario(tmp_path, STEP)
    spec["services"][0]["scheduler"] = {"kv_allocation": "paged", "kv_tokens": 6000}
    res = simulator.run(spec, progress=False)
    svc = res.summary["services"]["chat"]
    assert (res.requests["status"] == "completed").all()
    assert svc["scale_ups"] >= 1 and svc["replicas_peak"] >= 2
    assert svc["kv_peak_fraction"] <= 1.0
    assert svc["preemptions"] == int(res.requests["preemptions"].sum()) >= 1


def test_the_report_of_an_autoscaled_run_says_its_replica_range(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import main

    res = simulator.run(scenario(tmp_path, STEP), progress=False)
    res.write(tmp_path / "run")
    out = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    assert "1 to 4 replicas (autoscaled)" in (tmp_path / "run" / "report.html").read_text()
