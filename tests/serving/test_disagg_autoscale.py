"""Autoscaled disaggregated services (features/serving.py, serving/disagg.py): the prefill and the decode
group each scale on their own signal within their own range. A step of long decodes scales the decode
group alone, at the evaluation and readiness times worked out by hand, and back down after the delay;
a burst of long prompts scales the prefill group alone, whose new replicas are routed to once ready;
both beside training, devices conserved and the same seed giving the same files; the settings that
still do not go together are refused with their key paths."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from tests.serving.test_autoscale import DELAY, INTERVAL, at, provisioning_s
from tests.serving.test_autoscale import scenario as one_service


def scenario(tmp_path, rows, prefill=None, decode=None, **kw):
    """The autoscale tests' service (queue metric, target 2 per replica), disaggregated on tp-1 replicas:
    each group {min: 1, max: 3} unless given."""
    s = one_service(tmp_path, rows, tp=1, **kw)
    svc = s["services"][0]
    prefill, decode = prefill or {"min": 1, "max": 3}, decode or {"min": 1, "max": 3}
    svc["disaggregated"] = {"prefill_replicas": prefill, "decode_replicas": decode}
    svc["replicas"] = {"min": prefill["min"] + decode["min"], "max": prefill["max"] + decode["max"],
                       "initial": prefill.get("initial", prefill["min"]) + decode.get("initial", decode["min"])}
    return s


def run(s):
    """The run's tables and summary, and its serving feature (the replicas' Held records, the fleet)."""
    sim = simulator.build(s, progress=False)
    sim.run()
    serving = next(m for m in sim.context.meters if hasattr(m, "fleet"))
    return simulator.collect(sim), serving


# Six long outputs at t = 5 (prefilled together in a few ms, then decoding on decode replica 1 until E) and a
# short request at 200 that keeps the service alive after them.
DECODES = [(5.0, 512, 2000)] * 6 + [(200.0, 512, 10)]


def test_long_decodes_scale_the_decode_group_alone(tmp_path):
    """At the evaluation t = 10 the six requests are past their prefill: the decode group has 6 outstanding,
    wants ceil(6 / 2) = 3 and takes two replicas' devices at 10, ready at exactly 10 + boot + weights /
    bandwidth; the prefill group has none outstanding and stays at its min, 1. The six end together at E on
    decode replica 1 (already routed); the last evaluation that saw them is t_h, the last grid point
    before E, and the two new decode replicas (indices 2 and 3, after the prefill 0 and decode 1) are
    given back at t_h + 30. The request at 200 goes to prefill 0 and decode 1."""
    res, serving = run(scenario(tmp_path, DECODES))
    req, tl, svc = res.requests, res.timeline, res.summary["services"]["chat"]
    e = req["end_s"].iloc[:6]
    assert (e == e.iloc[0]).all() and (req["first_token_s"].iloc[:6] < 10).all()
    e = e.iloc[0]
    assert 10 < e < 200 and e % INTERVAL != 0
    t_h = math.floor(e / INTERVAL) * INTERVAL
    ready, down = 10.0 + provisioning_s(1), t_h + DELAY
    assert at(tl, 9.99, "serving_gpus") == 2 and at(tl, 10.0, "serving_gpus") == 4
    assert at(tl, 10.0, "serving_provisioning_replicas") == 2
    assert at(tl, ready, "serving_ready_replicas") == 4 and at(tl, ready - 1e-6, "serving_ready_replicas") == 2
    assert at(tl, down - 1e-6, "serving_ready_replicas") == 4 and at(tl, down, "serving_gpus") == 2
    holds = serving.holds[0]
    assert [(h.replica.index, h.taken, h.released) for h in holds[2:]] == [(2, 10.0, down), (3, 10.0, down)]
    assert all(type(h.replica).__name__ == "DecodeReplica" for h in holds[1:])
    group = serving.fleet.disagg[0]
    assert group.decode_replica == [1] * 7 and req["replica"].tolist() == [0] * 7
    assert group.decoding == 0
    assert (svc["decode_scale_ups"], svc["decode_scale_downs"], svc["prefill_scale_ups"]) == (2, 2, 0)
    assert (svc["decode_replicas_peak"], svc["prefill_replicas_peak"], svc["replicas_peak"]) == (3, 1, 4)
    assert svc["scale_ups"] == 2 and svc["scale_downs"] == 2
    end = req["end_s"].max()
    assert svc["replica_hours"] == pytest.approx((2 * end + 2 * (down - 10.0)) / 3600, rel=1e-12)
    assert svc["prefill_replicas_mean"] == pytest.approx(1.0, rel=1e-12)
    assert svc["decode_replicas_mean"] == pytest.approx((end + 2 * (down - 10.0)) / end, rel=1e-12)


# Long prompts at 10 per second for 30 s: one prefill replica takes about 0.23 s each, so its queue grows;
# each has two output tokens, so the decode group holds almost nothing.
PROMPTS = [(5.0 + 0.1 * i, 8000, 2) for i in range(300)]


def test_a_prompt_backlog_scales_the_prefill_group_alone(tmp_path):
    """At t = 10 more than four prompts wait at the prefill group: it wants 3, and two prefill replicas (2 and
    3) take their devices then and are routed to from their readiness, round robin with replica 0; the
    decode group, at most a request or two outstanding, stays at 1. Every request completes."""
    res, serving = run(scenario(tmp_path, PROMPTS))
    req, svc = res.requests, res.summary["services"]["chat"]
    arrived = req["arrival_s"] <= 10.0
    assert (arrived & (req["first_token_s"] > 10.0)).sum() >= 5  # the prefill group's outstanding at 10
    assert (svc["prefill_scale_ups"], svc["decode_scale_ups"]) == (2, 0)
    ready = 10.0 + provisioning_s(1)
    holds = serving.holds[0]
    assert [(h.replica.index, h.taken, h.ready) for h in holds[2:4]] == [(2, 10.0, ready), (3, 10.0, ready)]
    assert all(type(h.replica).__name__ == "Replica" for h in holds[2:4])
    assert set(req.loc[req["arrival_s"] < ready, "replica"]) == {0}
    late = req.loc[req["arrival_s"] > ready + 1e-9, "replica"].tolist()
    assert set(late) == {0, 2, 3} and late[:3] in ([0, 2, 3], [2, 3, 0], [3, 0, 2])
    assert (req["status"] == "completed").all()
    assert set(serving.fleet.disagg[0].decode_replica) == {1}


def test_beside_training_devices_are_conserved_and_runs_repeat(tmp_path):
    """A diurnal load on a disaggregated service beside a training backlog on 8 devices: replicas and
    training never hold more than the pool, the timeline's serving devices integrate to the summary's
    GPU-hours, each group stays within its range, and the same seed gives identical tables."""
    s = scenario(tmp_path, DECODES, prefill={"min": 1, "max": 2}, decode={"min": 1, "max": 4},
                 autoscale={"metric": "utilization", "target": 0.5})
    s["requests"] = [{"kind": "synthetic", "service": "chat", "until": 1800,
                      "arrival": {"process": "poisson", "rate_per_s": 3, "sinusoid": {"peak_to_trough": 6,
                                                                                      "period": 900}},
                      "prompt_tokens": {"dist": "lognormal", "median": 2000, "sigma": 0.6, "max": 8000},
                      "output_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6, "max": 2000}}]
    s["workload"] = [{"kind": "synthetic", "jobs": 40, "gpus": {"choice": [1, 2, 4], "weights": [0.5, 0.3, 0.2]},
                      "arrival": {"process": "poisson", "rate_per_hour": 600},
                      "duration": {"dist": "exponential", "mean": "20m"}}]
    first, serving = run(copy.deepcopy(s))
    again, _ = run(copy.deepcopy(s))
    assert first.requests.equals(again.requests) and first.timeline.equals(again.timeline)
    assert first.jobs.equals(again.jobs)
    tl, svc = first.timeline, first.summary["services"]["chat"]
    assert (tl["serving_gpus"] + tl["busy_gpus"] <= 8).all()
    dt = np.diff(tl["time_s"].to_numpy())
    assert (tl["serving_gpus"].to_numpy()[:-1] * dt).sum() == pytest.approx(svc["gpu_hours"] * 3600, rel=1e-9)
    assert (first.requests["status"] == "completed").all()
    assert svc["scale_ups"] > 0 and svc["scale_ups"] == svc["prefill_scale_ups"] + svc["decode_scale_ups"]
    assert 1 <= svc["prefill_replicas_peak"] <= 2 and 1 <= svc["decode_replicas_peak"] <= 4
    group = serving.fleet.disagg[0]
    assert group.decoding == 0
    for h in serving.holds[0]:
        assert (h.replica in group.decode) != (h.replica in group.prefill)


@pytest.mark.parametrize("change, words", [
    (lambda svc: svc.pop("autoscale") and svc.update(replicas=4),
     r"services\[0\]: .*prefill_replicas or decode_replicas \{min, max\} needs an autoscale"),
    (lambda svc: svc["disaggregated"].update(decode_replicas=2),
     r"services\[0\]: .*disaggregated.decode_replicas must be \{min, max\}"),
    (lambda svc: svc["disaggregated"].update(prefill_replicas={"min": 0, "max": 2}),
     r"services\[0\]: .*disaggregated.prefill_replicas.min must be at least 1"),
    (lambda svc: svc.update(replicas={"min": 2, "max": 5}),
     r"services\[0\]: .*replicas must be the groups' sums, \{min: 2, max: 6, initial: 2\}"),
    (lambda svc: svc["scheduler"].update(chunked_prefill=True),
     r"services\[0\]: .*disaggregated goes with the default scheduler only"),
])
def test_settings_that_do_not_go_together_are_refused(tmp_path, change, words):
    s = scenario(tmp_path, DECODES)
    svc = s["services"][0]
    svc.setdefault("scheduler", {})
    change(svc)
    with pytest.raises(CapsimError, match=words):
        simulator.build(s, progress=False)
