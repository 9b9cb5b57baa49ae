"""The per-service summary by hand: replica-hours, busy time, energy, cost, KV occupancy and SLO
attainment of small request lists whose schedule is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.perf.profile import load_profile

TDP_W, NODE_W = 700.0, 10200.0  # h100-sxm's profile: TDP, and an 8-device node's maximum power
OVERHEAD_W = (NODE_W - 8 * TDP_W) / 8  # 575 W of platform per device, drawn busy or idle


def assert_load_columns(tl, req):
    """The timeline's serving load columns, integrated up to every whole second and to the last event,
    equal the exact integrals of the requests in the system and of those waiting for their first token
    (each column is that count's mean over each second)."""
    t = tl["time_s"].to_numpy()
    last = float(req["end_s"].max())
    for column, leave in (("serving_requests", "end_s"), ("serving_waiting_requests", "first_token_s")):
        v = tl[column].to_numpy()
        for s in [*np.arange(1.0, np.ceil(last)), last]:
            got = float((v[:-1] * np.clip(np.minimum(t[1:], s) - t[:-1], 0.0, None)).sum())
            exact = float(np.clip(np.minimum(req[leave], s) - req["arrival_s"], 0.0, None).sum())
            assert got == pytest.approx(exact, rel=1e-9, abs=1e-9), (column, s)


def run(tmp_path, rows, replicas=1, tp=2, slo=None, max_num_seqs=1, cost=True):
    path = tmp_path / "requests.csv"
    pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"]).to_csv(path, index=False)
    service = {"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": replicas, "layout": {"tp": tp},
               "scheduler": {"max_num_seqs": max_num_seqs, "max_batched_tokens": 2048, "kv_tokens": 1600,
                             "block_size": 16}}
    if slo:
        service["slo"] = slo
    scenario = {"name": "by-hand", "seed": 1,
                "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8,
                                       "usd_per_device_hour": 3.0}]},
                "power": {"idle_fraction": 0.0, "pue": 1.0},
                "services": [service],
                "requests": [{"kind": "trace", "service": "chat", "format": "csv", "path": str(path)}]}
    if cost:
        scenario["cost"] = {"usd_per_kwh": 0.10}
    return simulator.run(scenario, progress=False)


def test_the_profile_values_used_by_hand():
    profile = load_profile("h100-sxm")
    assert (profile.tdp_w, profile.node_w, profile.devices_per_node) == (TDP_W, NODE_W, 8)


def test_always_busy_replica_energy_cost_and_hours(tmp_path):
    """Twenty requests at 0 on one batch-1 replica of 2 devices: it is busy from 0 to the last end E,
    so it draws 2 x (575 + 700) W for E seconds; the pool's other 6 devices draw their 575 W."""
    res = run(tmp_path, [(0.0, 100, 20)] * 20)
    svc, req = res.summary["services"]["chat"], res.requests
    e = req["end_s"].max()
    assert svc["replica_hours"] == pytest.approx(e / 3600, rel=1e-12)
    assert svc["gpu_hours"] == pytest.approx(2 * e / 3600, rel=1e-12)
    assert svc["busy_fraction"] == pytest.approx(1.0, rel=1e-12)
    joules = 2 * (OVERHEAD_W + TDP_W) * e
    assert svc["energy_kwh"] == pytest.approx(joules / 3.6e6, rel=1e-12)
    assert svc["mean_power_kw"] == pytest.approx(2 * (OVERHEAD_W + TDP_W) / 1000, rel=1e-12)
    assert svc["energy_per_token_j"] == pytest.approx(joules / 400, rel=1e-12)
    cost = 2 * 3.0 * e / 3600 + joules / 3.6e6 * 0.10
    assert svc["cost_usd"] == pytest.approx(cost, rel=1e-12)
    assert svc["usd_per_million_tokens"] == pytest.approx(cost / 400 * 1e6, rel=1e-12)
    # the cluster: 8 devices' overhead and the 2 busy devices' TDP, over the same span (the timeline
    # now runs to the replicas' release); 8 rented devices for E seconds
    cluster = (8 * OVERHEAD_W + 2 * TDP_W) * e
    assert res.summary["energy_kwh"] == pytest.approx(cluster / 3.6e6, rel=1e-12)
    assert res.summary["cost_usd"] == pytest.approx(8 * 3.0 * e / 3600 + cluster / 3.6e6 * 0.10, rel=1e-12)
    tl = res.timeline
    assert tl["time_s"].iloc[0] == 0.0 and tl["time_s"].iloc[-1] == pytest.approx(e)
    assert (tl["serving_gpus"].iloc[:-1] == 2).all() and (tl["serving_busy_gpus"].iloc[:-1] == 2).all()
    assert tl["serving_gpus"].iloc[-1] == tl["serving_busy_gpus"].iloc[-1] == 0
    # all arrived at 0: in the system until their end, waiting until their first token (per-second means)
    assert_load_columns(tl, req)
    assert tl["serving_requests"].iloc[-1] == 0 and tl["serving_waiting_requests"].iloc[-1] == 0



def test_a_quiet_quarter_adds_no_load_rows(tmp_path):
    """Two requests 90 days apart: the per-second load means change only in the seconds around each
    request, so the timeline stays a few rows long (a row per second would be 7.8 million) and still
    integrates to the requests' time in the system and waiting for their first token."""
    gap = 90 * 86400.0
    res = run(tmp_path, [(0.0, 300, 50), (gap, 500, 30)])
    tl, req = res.timeline, res.requests
    assert len(tl) < 20
    t = tl["time_s"].to_numpy()
    for column, leave in (("serving_requests", "end_s"), ("serving_waiting_requests", "first_token_s")):
        v = tl[column].to_numpy()
        exact = float((req[leave] - req["arrival_s"]).sum())  # (each second's mean is kept on a grid of 2^-30)
        assert float((v[:-1] * np.diff(t)).sum()) == pytest.approx(exact, abs=len(t) * 2.0**-30)
        assert (v[(t >= 1.0) & (t < gap)] == 0.0).all() and v[-1] == 0.0

def test_an_idle_gap_draws_idle_power_and_holds_no_kv(tmp_path):
    """One request at 0, one at 100 s: the replica is busy [0, e0] and [100, e1], idle between; the
    devices are held [0, e1]. KV: each request reserves ceil((prompt + output) / 16) blocks from its
    arrival (an idle replica admits at once) to its end, of 100 blocks."""
    res = run(tmp_path, [(0.0, 300, 50), (100.0, 500, 30)])
    svc, req = res.summary["services"]["chat"], res.requests
    e0, e1 = req["end_s"].tolist()
    busy = e0 + (e1 - 100.0)
    assert svc["busy_fraction"] == pytest.approx(busy / e1, rel=1e-12)
    joules = 2 * OVERHEAD_W * e1 + 2 * TDP_W * busy
    assert svc["energy_kwh"] == pytest.approx(joules / 3.6e6, rel=1e-12)
    area = math.ceil(350 / 16) * e0 + math.ceil(530 / 16) * (e1 - 100.0)
    assert svc["kv_mean_fraction"] == pytest.approx(area / (100 * e1), rel=1e-12)
    assert svc["kv_peak_fraction"] == pytest.approx(34 / 100)
    f0, f1 = req["first_token_s"].tolist()
    tl = res.timeline
    busy = tl[["time_s", "serving_busy_gpus", "serving_busy_replicas"]]
    busy = busy[busy["serving_busy_gpus"].diff().fillna(1) != 0]  # the rows where the replica's state changes
    assert busy["time_s"].tolist() == pytest.approx([0.0, e0, 100.0, e1])
    assert busy["serving_busy_gpus"].tolist() == [2, 0, 2, 0]
    assert busy["serving_busy_replicas"].tolist() == [1, 0, 1, 0]
    assert e0 < 1.0 and e1 < 101.0  # so the per-second means are, by hand: the first second [0, 1) holds
    at = tl.set_index("time_s")  # the first request for e0 (waiting f0); the last bin, [100, e1), the second
    assert at.loc[0.0, "serving_requests"] == pytest.approx(e0) and at.loc[0.0, "serving_waiting_requests"] == \
        pytest.approx(f0)
    assert at.loc[100.0, "serving_requests"] == pytest.approx(1.0)
    assert at.loc[100.0, "serving_waiting_requests"] == pytest.approx((f1 - 100.0) / (e1 - 100.0))
    assert at.loc[e1, "serving_requests"] == at.loc[e1, "serving_waiting_requests"] == 0.0
    assert f1 not in at.index  # the load columns change only on whole seconds and at the last event
    assert_load_columns(tl, req)
    # without a cost section there is no price, and the energy is still counted
    plain = run(tmp_path, [(0.0, 300, 50), (100.0, 500, 30)], cost=False).summary["services"]["chat"]
    assert "cost_usd" not in plain and plain["energy_kwh"] == svc["energy_kwh"]


@pytest.mark.parametrize("slo", [{"ttft_s": 5.0}, {"tpot_s": 0.00563}, {"e2e_s": 8.0},
                                 {"ttft_s": 10.0, "tpot_s": 0.00565}, {"ttft_s": 1e9, "tpot_s": 1e9}])
def test_slo_attainment_and_goodput_count_requests_meeting_every_threshold(tmp_path, slo):
    """Requests queue behind each other on a batch-1 replica, so TTFT grows down the list; a prompt
    over max_batched_tokens is rejected and misses any SLO; a one-token output has no TPOT to miss."""
    rng = np.random.default_rng(0)
    rows = [(float(t), int(p), int(o)) for t, p, o in zip(np.sort(rng.uniform(0, 5, 40)),
                                                         rng.integers(16, 1500, 40), rng.integers(1, 200, 40),
                                                         strict=True)]
    rows[7] = (rows[7][0], 4000, 10)  # rejected
    rows[9] = (rows[9][0], 100, 1)
    res = run(tmp_path, rows, max_num_seqs=4, slo=slo)
    svc, req = res.summary["services"]["chat"], res.requests
    met = []
    for r in req.itertuples():
        ok = r.status == "completed"
        if ok and "ttft_s" in slo:
            ok = r.first_token_s - r.arrival_s <= slo["ttft_s"]
        if ok and "tpot_s" in slo and r.output_tokens > 1:
            ok = (r.end_s - r.first_token_s) / (r.output_tokens - 1) <= slo["tpot_s"]
        if ok and "e2e_s" in slo:
            ok = r.end_s - r.arrival_s <= slo["e2e_s"]
        met.append(ok)
    met = np.array(met)
    assert (req["status"] == "rejected").sum() == 1
    span = req["end_s"].max()
    assert svc["slo_met"] == met.sum()
    assert svc["slo_attainment"] == pytest.approx(met.mean())
    assert svc["goodput_requests_per_s"] == pytest.approx(met.sum() / span)
    assert svc["goodput_tokens_per_s"] == pytest.approx(req["output_tokens"][met].sum() / span)
    if slo.get("ttft_s") == 1e9:  # every completed request meets it
        assert svc["slo_attainment"] == pytest.approx(39 / 40)
        assert svc["goodput_tokens_per_s"] == pytest.approx(svc["tokens_per_s"])
    else:
        assert 0 < met.sum() < 39  # the thresholds split the requests: the test tells them apart


def test_an_slo_needs_a_finite_threshold():
    from simulator.errors import CapsimError
    from tests.serving.test_serving_run import scenario

    for bad in ({}, {"ttft_s": float("inf")}, {"tpot_s": -1}, {"ttft": 1}):
        with pytest.raises(CapsimError, match="slo"):
            simulator.run(scenario(services__0__slo=bad), progress=False)


def test_busy_replicas_column_integrates_to_the_busy_time(tmp_path):
    """Three replicas of 2 devices under load: the timeline's busy replicas stay within 0..3, its devices
    are twice the replicas, and its integral over time is the replicas' busy time in the summary."""
    rng = np.random.default_rng(1)
    rows = [(float(t), int(p), int(o)) for t, p, o in zip(np.sort(rng.uniform(0, 20, 200)),
                                                         rng.integers(16, 1500, 200), rng.integers(1, 300, 200),
                                                         strict=True)]
    res = run(tmp_path, rows, replicas=3, max_num_seqs=8)
    tl, svc = res.timeline, res.summary["services"]["chat"]
    busy = tl["serving_busy_replicas"].to_numpy()
    assert busy.min() == 0 and busy.max() <= 3 and (tl["serving_busy_gpus"] == 2 * busy).all()
    area = float((busy[:-1] * np.diff(tl["time_s"].to_numpy())).sum())
    span = res.requests["end_s"].max()
    assert area == pytest.approx(svc["busy_fraction"] * 3 * span, rel=1e-9)
    assert (tl["serving_gpus"].iloc[:-1] == 6).all() and tl["serving_gpus"].iloc[-1] == 0
