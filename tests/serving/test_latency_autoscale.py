"""Autoscaling on a latency metric (`metric: ttft`, serving/autoscale.py LatencyWindow): a hand-worked
backlog on one replica whose evaluations observe exactly the quantile worked out from the arrivals and
scale up at the expected evaluation; every evaluation of a longer run equal to the definition computed
from requests.parquet by brute force; the nearest-rank rule equal to numpy's "inverted_cdf"; waiting
requests counting their age, in and after the window; resting between bursts changing nothing; bad
settings refused with their key paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.errors import CapsimError
from simulator.serving.autoscale import LatencyWindow, Scaler, nearest_rank
from simulator.serving.spec import Autoscale
from tests.serving.test_autoscale import INTERVAL, at, provisioning_s, scenario
from tests.serving.test_autoscale import test_resting_between_bursts_changes_nothing as resting_case


@pytest.fixture
def evaluations(monkeypatch):
    """Every metric-ttft evaluation of the runs in the test: (now, outstanding, observed, current, want)."""
    calls = []
    original = Scaler.recommend_latency

    def recorded(self, now, outstanding, observed, current):
        want = original(self, now, outstanding, observed, current)
        calls.append((now, outstanding, observed, current, want))
        return want

    monkeypatch.setattr(Scaler, "recommend_latency", recorded)
    return calls


def serial(tmp_path, rows, autoscale, replicas=None):
    """The autoscale tests' service on one replica that runs one sequence at a time (max_num_seqs 1): each
    request's first token comes after the previous request's last."""
    s = scenario(tmp_path, rows, replicas=replicas, autoscale=autoscale)
    s["services"][0]["scheduler"] = {"max_num_seqs": 1}
    return s


# Six requests one second apart from t = 1, each decoding 4,000 tokens (over 20 s alone), one at a time; one
# short request at 200 keeps the service alive after them.
BACKLOG = [(float(k), 512, 4000) for k in range(1, 7)] + [(200.0, 512, 10)]


def test_a_backlog_on_one_replica_scales_up_at_the_first_evaluation_by_the_hpa_formula(tmp_path, evaluations):
    """p50 TTFT, target 2 s, window one interval (10 s). At t = 10 request 0 has its first token (a prefill,
    well under a second) and requests 1-5, arrived at 2..6, still wait: their ages are 8, 7, 6, 5, 4. The
    six values sorted are [ttft0, 4, 5, 6, 7, 8]; nearest rank ceil(0.5 x 6) = 3rd: observed 5 s. One
    replica (ready, none provisioning): want ceil(1 x 5 / 2) = 3, so two replicas take their devices at 10
    and are ready 10 + provisioning later. At t = 20 no request arrived in (10, 20]; requests 1-5 still
    wait (request 0 decodes until past 20) and count with their ages 18..14: observed the 3rd of five, 16
    s, and ceil(3 x 16 / 2) = 24 is clipped to max 4."""
    res = simulator.run(serial(tmp_path, BACKLOG, {"metric": "ttft", "target": "2s", "quantile": 0.5}),
                        progress=False)
    req, tl = res.requests, res.timeline
    first = req["first_token_s"].to_numpy()
    assert first[0] - 1.0 < 1.0 and (first[1:6] > 20.0).all()  # the premises of the hand computation
    assert evaluations[0] == (10.0, 6, 5.0, 1, 3)
    assert evaluations[1] == (20.0, 6, 16.0, 3, 4)
    assert at(tl, 9.99, "serving_provisioning_replicas") == 0 and at(tl, 9.99, "serving_gpus") == 2
    assert at(tl, 10.0, "serving_provisioning_replicas") == 2 and at(tl, 10.0, "serving_gpus") == 6
    ready = 10.0 + provisioning_s(2)
    assert ready in set(tl["time_s"]) and at(tl, ready, "serving_ready_replicas") >= 3
    assert res.summary["services"]["chat"]["replicas_peak"] == 4


def test_a_target_over_the_observed_quantile_does_not_scale(tmp_path, evaluations):
    """The same backlog with a target of 6 s (written "6000ms"): 1 x 5 / 6 rounds up to 1 at t = 10, so
    nothing scales then; at t = 20, 16 / 6 asks for 3."""
    res = simulator.run(serial(tmp_path, BACKLOG, {"metric": "ttft", "target": "6000ms", "quantile": 0.5}),
                        progress=False)
    assert evaluations[0] == (10.0, 6, 5.0, 1, 1)
    assert evaluations[1] == (20.0, 6, 16.0, 1, 3)
    tl = res.timeline
    assert at(tl, 19.99, "serving_gpus") == 2 and at(tl, 20.0, "serving_provisioning_replicas") == 2


def reference(req, t: float, window: float, q: float) -> float:
    """The definition by brute force over requests.parquet: the requests arrived in (t - window, t], and the
    earlier ones still without their first token at t; each first - arrival, or t - arrival without it."""
    arrival, first = req["arrival_s"].to_numpy(), req["first_token_s"].to_numpy()
    has = first <= t  # NaN (never) compares False
    counted = (req["status"].to_numpy() != "rejected") & (arrival <= t) & ((arrival > t - window) | ~has)
    values = np.where(has, first - arrival, t - arrival)[counted]
    return float(np.quantile(values, q, method="inverted_cdf")) if len(values) else 0.0


@pytest.mark.parametrize(("q", "window"), [(0.9, 20.0), (0.95, None), (1.0, 10.0)])
def test_every_evaluation_observes_the_definition_and_recommends_the_hpa_formula(tmp_path, evaluations, q, window):
    """Poisson arrivals at 3/s for two minutes on replicas of 8 sequences, some prompts too long for a
    replica (refused, never counted): every evaluation's observed value equals the brute-force definition
    over the run's requests, and its recommendation ceil(current x observed / target) clipped to [1, 4]."""
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.exponential(1 / 3.0, 360))
    prompt = np.where(rng.random(360) < 0.03, 20000, rng.integers(100, 2000, 360))
    rows = list(zip(t.tolist(), prompt.tolist(), rng.integers(50, 800, 360).tolist(), strict=True))
    target = 0.25
    spec = {"metric": "ttft", "target": target, "quantile": q}
    if window is not None:
        spec["window"] = window
    s = scenario(tmp_path, rows, autoscale=spec)
    s["services"][0]["scheduler"] = {"max_num_seqs": 8}
    res = simulator.run(s, progress=False)
    req = res.requests
    assert (req["status"] == "rejected").any() and (req["status"] == "completed").sum() > 300
    assert len(evaluations) >= 10 and any(e[4] > e[3] for e in evaluations)
    for now, outstanding, observed, current, want in evaluations:
        assert observed == reference(req, now, window or INTERVAL, q), now
        expect = math.ceil(current * observed / target - 1e-9) if current else 0
        assert want == min(max(expect, 1 if outstanding else 0, 1), 4), now


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60),
       st.one_of(st.floats(1e-9, 1.0), st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0, 1 / 3])))
def test_nearest_rank_is_numpys_inverted_cdf(values, q):
    assert nearest_rank(values, q) == np.quantile(np.array(values), q, method="inverted_cdf")


def test_waiting_requests_count_their_age_in_and_after_the_window():
    """Columns by hand: arrivals 0, 1, 2, 3; first tokens 0.5, none, 2.2, none."""
    nan = float("nan")
    arrival, first = [0.0, 1.0, 2.0, 3.0], [0.5, nan, 2.2, nan]
    w = LatencyWindow([0, 1, 2, 3], arrival, first, 10.0, 1.0)
    assert w.observe(5.0) == 4.0 and w.count == 4  # request 1 waiting: age 5 - 1
    w.q = 0.5
    assert w.observe(5.0) == 0.5  # [0.2, 0.5, 2, 4]: the 2nd
    # a 2 s window at t = 5 holds none of them (arrival 3 <= 5 - 2): the two still waiting count their age
    w = LatencyWindow([0, 1, 2, 3], arrival, first, 2.0, 1.0)
    assert w.observe(5.0) == 4.0 and w.count == 2
    first[1] = 5.5  # request 1's first token: it leaves
    assert w.observe(6.0) == 3.0 and w.count == 1
    first[3] = 6.5
    assert w.observe(7.0) == 0.0 and w.count == 0  # nobody: observed 0
    # before any arrival, and at an arrival's instant (age 0)
    w = LatencyWindow([0, 1], [4.0, 9.0], [nan, nan], 10.0, 0.95)
    assert w.observe(3.0) == 0.0 and w.count == 0
    assert w.observe(4.0) == 0.0 and w.count == 1


def test_the_ttft_recommendation():
    sc = Scaler("ttft", 0.5, 15.0, None, 60.0, 1, 10, 0.0, 1)
    assert sc.recommend_latency(15.0, 3, 1.2, 2) == 5  # ceil(2 x 1.2 / 0.5 = 4.8)
    assert sc.recommend_latency(15.0, 3, 1.0, 2) == 4  # exactly 4: not 5
    assert sc.recommend_latency(15.0, 3, 0.1, 2) == 1  # at least min
    assert sc.recommend_latency(15.0, 3, 100.0, 2) == 10  # at most max
    sc = Scaler("ttft", 0.5, 15.0, None, 60.0, 0, 10, 0.0, 0)
    assert sc.recommend_latency(15.0, 0, 0.0, 0) == 0
    assert sc.recommend_latency(15.0, 2, 7.0, 0) == 1  # no replica to multiply: one while requests wait
    assert Scaler("ttft", 1e-320, 15.0, None, 60.0, 0, 6, 0.0, 0).recommend_latency(15.0, 1, 1.0, 2) == 6


def test_the_spec_reads_durations_and_defaults():
    a = Autoscale(metric="ttft", target="500ms")
    assert a.target == 0.5 and a.ttft_quantile == 0.95 and a.window is None
    assert Autoscale(metric="ttft", target=2, quantile=0.99, window="30s", interval="15s").window == 30.0
    assert Autoscale(metric="queue", target=3).ttft_quantile == 0.95


@pytest.mark.parametrize("lo", [0, 1])
def test_resting_between_bursts_changes_nothing_with_ttft(tmp_path, monkeypatch, lo):
    """The autoscale tests' bursts an hour apart, scaled on p95 TTFT over two intervals: resting between
    them gives the same files as evaluating every interval throughout."""
    resting_case(tmp_path, monkeypatch, {"metric": "ttft", "target": "20ms", "window": 20.0}, lo)


@pytest.mark.parametrize(("autoscale", "where", "message"), [
    ({"metric": "ttft", "target": 1, "quantile": 0}, "services[0].autoscale.quantile", "greater than 0"),
    ({"metric": "ttft", "target": 1, "quantile": 1.5}, "services[0].autoscale.quantile", "less than or equal to 1"),
    ({"metric": "ttft", "target": 0}, "services[0].autoscale.target", "greater than 0"),
    ({"metric": "ttft", "target": "-5ms"}, "services[0].autoscale.target", "greater than 0"),
    ({"metric": "ttft", "target": "soon"}, "services[0].autoscale.target", "expected a duration"),
    ({"metric": "ttft", "target": 1, "interval": 10, "window": 25}, "services[0].autoscale", "whole number"),
    ({"metric": "ttft", "target": 1, "interval": 10, "window": 5}, "services[0].autoscale", "whole number"),
    ({"metric": "queue", "target": 2, "quantile": 0.9}, "services[0].autoscale", "quantile goes with metric: ttft"),
    ({"metric": "queue", "target": "500ms"}, "services[0].autoscale.target", "valid number"),
])
def test_bad_latency_settings_are_refused_with_their_path(tmp_path, autoscale, where, message):
    s = scenario(tmp_path, BACKLOG)
    s["services"][0]["autoscale"] = autoscale
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(s, progress=False)
    assert where in str(info.value)
    assert len(str(info.value).strip().splitlines()) == 1


def test_ttft_with_a_disaggregated_service_or_closed_loop_sessions_is_refused(tmp_path):
    s = scenario(tmp_path, BACKLOG, tp=1, autoscale={"metric": "ttft", "target": 1})
    svc = s["services"][0]
    svc["disaggregated"] = {"prefill_replicas": {"min": 1, "max": 2}, "decode_replicas": {"min": 1, "max": 2}}
    svc["replicas"] = {"min": 2, "max": 4}
    with pytest.raises(CapsimError, match="ttft does not go with disaggregated") as info:
        simulator.run(s, progress=False)
    assert "services[0]" in str(info.value) and len(str(info.value).strip().splitlines()) == 1
    s = scenario(tmp_path, BACKLOG, autoscale={"metric": "ttft", "target": 1})
    s["requests"] = [{"kind": "synthetic", "service": "chat", "requests": 20,
                      "arrival": {"process": "poisson", "rate_per_s": 1}, "prompt_tokens": 100, "output_tokens": 50,
                      "sessions": {"turns": 3, "think_time": 5, "closed_loop": True}}]
    with pytest.raises(CapsimError, match="ttft does not go with closed_loop") as info:
        simulator.run(s, progress=False)
    assert info.value.where == "services[0].autoscale.metric"
    assert len(str(info.value).strip().splitlines()) == 1


def test_a_service_does_not_rest_while_its_window_holds_requests(tmp_path, monkeypatch, evaluations):
    """Nine short requests at 1..9 then two at 11 on one replica running one sequence at a time: the second
    at 11 waits for the first (TTFT about its 100 tokens' decode). p90, target 0.3 s, window 20 s: at t = 20
    the window holds the eleven, the 10th smallest a short one's, so want 1 = min with nothing outstanding
    and the replica idle; at t = 30 it holds only the two of 11 and the 2nd (the one that waited) asks for 2
    replicas. Resting at 20 would skip that evaluation: the service waits for its window to empty, and
    gives the same files as evaluating every interval."""
    from simulator.features import serving

    rows = [(float(k), 64, 10) for k in range(1, 10)] + [(11.0, 64, 100)] * 2 + [(200.0, 64, 10)]
    s = serial(tmp_path, rows, {"metric": "ttft", "target": 0.3, "quantile": 0.9, "window": 20.0})
    resting = simulator.run(s, progress=False)
    waited = resting.requests["first_token_s"].iloc[10] - 11.0
    assert waited > 0.3 and resting.requests["end_s"].iloc[:11].max() < 20.0
    assert [e[:2] + e[3:] for e in evaluations[:2]] == [(10.0, 0, 1, 1), (20.0, 0, 1, 1)]
    assert evaluations[2] == (30.0, 0, waited, 1, math.ceil(waited / 0.3))
    assert resting.summary["services"]["chat"]["scale_ups"] >= 1
    monkeypatch.setattr(serving.Serving, "_at_rest", lambda self, s: False)  # never at rest
    busy = simulator.run(s, progress=False)
    assert resting.requests.equals(busy.requests) and resting.timeline.equals(busy.timeline)
    assert resting.summary["services"] == busy.summary["services"]
