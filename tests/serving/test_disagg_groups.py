"""Disaggregated groups each with a layout of its own (`prefill_layout`, `decode_layout`) and autoscaled on
pools of their own (features/serving.py, serving/disagg.py). A group's iteration times and KV capacity at
its tp are those of a plain service at that tp under the same cost model; a lone request is worked to its
end by hand (prefill at the prefill tp, the transfer at the slower side's shard, decode steps at the decode
tp); layouts equal to the service's change nothing, to the byte; autoscaled on separate pools each group
stays in its range and holds replicas x its tp devices of its own pool at every row of the timeline,
evicting training only from its own pool; bad settings are refused at their key paths."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.perf.inference import kv_cache_bytes, weight_bytes
from simulator.perf.profile import load_profile
from simulator.perf.zoo import load_model
from simulator.serving.cost import PerfCost, kv_capacity_tokens
from tests.serving.test_disagg import BASE
from tests.serving.test_disagg_autoscale import DECODES
from tests.serving.test_disagg_autoscale import scenario as autoscaled

MODEL = load_model("llama3-8b").model_spec()


def lone(prefill_tp=2, decode_tp=4, requests=1):
    """BASE (llama3-8b on 8 H100s, prompt 1024, output 64) with one prefill replica of prefill_tp devices and
    one decode replica of decode_tp."""
    s = copy.deepcopy(BASE)
    svc = s["services"][0]
    svc["replicas"] = 2
    svc["disaggregated"] = {"prefill_replicas": 1, "decode_replicas": 1, "prefill_layout": {"tp": prefill_tp},
                            "decode_layout": {"tp": decode_tp}}
    s["requests"][0]["requests"] = requests
    return s


def plain(tp):
    """BASE as one plain replica of tp devices, one request."""
    s = copy.deepcopy(BASE)
    svc = s["services"][0]
    del svc["disaggregated"]
    svc["replicas"], svc["layout"] = 1, {"tp": tp}
    s["requests"][0]["requests"] = 1
    return s


def build(s):
    sim = simulator.build(s, progress=False)
    serving = next(m for m in sim.context.meters if hasattr(m, "fleet"))
    sim.run()
    return simulator.collect(sim), serving


def test_a_lone_request_at_each_groups_tp_by_hand():
    """Prefill tp 2, decode tp 4 (llama3-8b: 8 KV heads, so shards of 4 and 2 heads). TTFT is prefill(1, 1024)
    at tp 2; the transfer alone is 1024 x the larger shard per token (the prefill side's, tp 2) over a device's
    scale-out bandwidth; then 63 decode steps at tp 4, contexts 1025 ... 1087. The prefill replica's KV
    capacity is a tp-2 replica's (memory x 0.9 minus the tp-2 weights, per tp-2 token), the decode replica's a
    tp-4 one's, and the summary reports the decode replica's; the two replicas hold 2 + 4 devices."""
    res, serving = build(lone())
    req, chat = res.requests.iloc[0], res.summary["services"]["chat"]
    pf, dec = PerfCost("h100-sxm", MODEL, 2), PerfCost("h100-sxm", MODEL, 4)
    bw = load_profile("h100-sxm").scale_out_bw_gbs
    transfer = 1024 * kv_cache_bytes(MODEL, 2, 1, 1, "bf16") / (bw * 1e9)
    assert kv_cache_bytes(MODEL, 2, 1, 1, "bf16") == 2 * kv_cache_bytes(MODEL, 4, 1, 1, "bf16")
    a, b = dec.decode(1)
    steps = sum(a + b * (1024 + g) for g in range(1, 64))
    assert req.first_token_s - req.arrival_s == pytest.approx(pf.prefill(1, 1024), rel=1e-12)
    assert req.end_s - req.first_token_s == pytest.approx(transfer + steps, rel=1e-9)
    memory = load_profile("h100-sxm").memory_gib
    rt = serving.runtimes[0]
    assert rt.kv_blocks == kv_capacity_tokens(memory, MODEL, 2, "bf16", "bf16", 0.9)[0] // 16
    assert rt.decode_kv_blocks == kv_capacity_tokens(memory, MODEL, 4, "bf16", "bf16", 0.9)[0] // 16
    assert chat["kv_capacity_tokens"] == rt.decode_kv_blocks * 16
    assert [(h.alloc.devices, h.tp) for h in serving.holds[0]] == [(2, 2), (4, 4)]
    assert set(res.timeline["serving_gpus"].iloc[:-1]) == {6}
    span = req.end_s  # the service holds its replicas from 0 to its last request's end
    assert chat["replica_hours"] == pytest.approx(2 * span / 3600, rel=1e-12)
    assert chat["gpu_hours"] == pytest.approx(6 * span / 3600, rel=1e-12)


def test_each_group_matches_a_plain_service_at_its_tp():
    """The prefill group at tp 2 gives the TTFT and the KV capacity of a plain tp-2 replica; the decode group at
    tp 4 the decode steps and KV capacity of a plain tp-4 replica (its TPOT less the transfer)."""
    res, serving = build(lone())
    req = res.requests.iloc[0]
    p2, s2 = build(plain(2))
    p4, s4 = build(plain(4))
    r2, r4 = p2.requests.iloc[0], p4.requests.iloc[0]
    rt = serving.runtimes[0]
    assert req.first_token_s - req.arrival_s == r2.first_token_s - r2.arrival_s
    assert rt.kv_blocks == s2.runtimes[0].kv_blocks
    assert res.summary["services"]["chat"]["kv_capacity_tokens"] == p4.summary["services"]["chat"]["kv_capacity_tokens"]
    transfer = 1024 * kv_cache_bytes(MODEL, 2, 1, 1, "bf16") / (load_profile("h100-sxm").scale_out_bw_gbs * 1e9)
    assert req.end_s - req.first_token_s - transfer == pytest.approx(r4.end_s - r4.first_token_s, rel=1e-9)


def test_a_larger_decode_tp_receives_faster_than_it_would_send():
    """Decode tp 4 into prefill tp 4 (shards equal): the transfer is 1024 x the tp-4 shard per token, half the
    tp-2 one; prefill tp 4, decode tp 2: the decode side's larger shard sets it."""
    bw = load_profile("h100-sxm").scale_out_bw_gbs * 1e9
    for prefill_tp, decode_tp, shard_tp in ((4, 4, 4), (4, 2, 2)):
        res, _ = build(lone(prefill_tp, decode_tp))
        req = res.requests.iloc[0]
        a, b = PerfCost("h100-sxm", MODEL, decode_tp).decode(1)
        steps = sum(a + b * (1024 + g) for g in range(1, 64))
        transfer = 1024 * kv_cache_bytes(MODEL, shard_tp, 1, 1, "bf16") / bw
        assert req.end_s - req.first_token_s == pytest.approx(transfer + steps, rel=1e-9)


@pytest.mark.parametrize("split", [False, True])
def test_layouts_equal_to_the_services_change_nothing(split):
    """Group layouts that repeat the service's layout give the same requests, timeline and summary as none, on
    one pool and with the decode group on a pool of its own."""
    s = copy.deepcopy(BASE)
    s["requests"][0]["requests"] = 200
    if split:
        s["cluster"]["pools"].append({"name": "big", "device": "h200-sxm", "nodes": 1, "devices_per_node": 8})
        s["services"][0]["disaggregated"]["decode_pool"] = "big"
    before = simulator.run(copy.deepcopy(s), progress=False)
    s["services"][0]["disaggregated"].update(prefill_layout={"tp": 1}, decode_layout={"tp": 1, "dtype": "bf16"})
    after = simulator.run(s, progress=False)
    assert before.requests.equals(after.requests) and before.timeline.equals(after.timeline)
    assert before.summary == after.summary


def two_pools(tmp_path, training=False):
    """DECODES on an autoscaled service, queue metric, target 2: prefill {1, 3} at tp 2 on H100s (pool pf),
    decode {1, 2} at tp 4 on H200s (pool dec), 8 devices each; with `training`, 2-device jobs arriving from
    t = 0 that fill what the replicas leave."""
    s = autoscaled(tmp_path, [], decode={"min": 1, "max": 2})
    s["cluster"]["pools"] = [{"name": "pf", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8},
                             {"name": "dec", "device": "h200-sxm", "nodes": 1, "devices_per_node": 8}]
    svc = s["services"][0]
    svc["pool"] = "pf"
    svc["disaggregated"].update(decode_pool="dec", prefill_layout={"tp": 2}, decode_layout={"tp": 4})
    if training:
        s["workload"] = [{"kind": "synthetic", "jobs": 10, "gpus": 2, "arrival": {"process": "poisson",
                                                                                 "rate_per_hour": 36000},
                          "duration": {"dist": "exponential", "mean": "2h"}}]
    return s


def with_rows(s, tmp_path, rows):
    import pandas as pd

    path = tmp_path / "requests.csv"
    pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"]).to_csv(path, index=False)
    s["requests"] = [{"kind": "trace", "service": "chat", "format": "csv", "path": str(path)}]
    return s


def devices_at(holds, pool, t):
    return sum(h.alloc.devices for h in holds if h.alloc.pool.name == pool and h.taken <= t < h.released)


@pytest.mark.parametrize("training", [False, True])
def test_autoscaled_on_two_pools_each_group_uses_its_own(tmp_path, training):
    """The six long decodes at t = 5: at 10 the decode group has 6 outstanding, wants ceil(6 / 2) = 3, held to
    its max 2: one decode replica of 4 H200s is placed on pool dec (beside training: evicting training from
    dec only, never from pf), ready after boot + the weights over the load bandwidth; the prefill group stays
    at 1 on pf. At every timeline row each pool holds its group's replicas x its tp, each group within its
    range until the service's end, and the timeline's serving devices are the two pools' together."""
    res, serving = build(with_rows(two_pools(tmp_path, training), tmp_path, DECODES))
    svc, tl = res.summary["services"]["chat"], res.timeline
    assert (res.requests["status"] == "completed").all()
    assert (svc["decode_scale_ups"], svc["prefill_scale_ups"]) == (1, 0)
    assert (svc["decode_replicas_peak"], svc["prefill_replicas_peak"]) == (2, 1)
    holds = serving.holds[0]
    decode = serving.fleet.disagg[0].decode
    new = holds[2]
    t0, end = serving.held[0]  # the run's start (a training workload's first submission) and the service's end
    assert new.replica in decode and new.alloc.pool.name == "dec" and new.alloc.devices == 4
    assert new.taken == t0 + 10.0
    boot, gbs = 20.0, 16.0  # the autoscale tests' boot_time and weight_load_gbs
    assert new.ready - new.taken == boot + weight_bytes(MODEL, 4, "bf16") * 4 / (gbs * 1e9)
    for h in holds:
        assert (h.alloc.pool.name, h.alloc.devices) == (("dec", 4) if h.replica in decode else ("pf", 2))
    for t in tl["time_s"][tl["time_s"] < end]:
        live = [h for h in holds if h.taken <= t < h.released]
        n_dec = sum(h.replica in decode for h in live)
        n_pf = len(live) - n_dec
        assert 1 <= n_pf <= 3 and 1 <= n_dec <= 2
        assert devices_at(holds, "pf", t) == 2 * n_pf and devices_at(holds, "dec", t) == 4 * n_dec
        assert tl.loc[tl["time_s"] <= t, "serving_gpus"].iloc[-1] == 2 * n_pf + 4 * n_dec
    assert (tl["serving_gpus"] + tl["busy_gpus"] <= 16).all()
    dt = np.diff(tl["time_s"].to_numpy())
    assert (tl["serving_gpus"].to_numpy()[:-1] * dt).sum() == pytest.approx(svc["gpu_hours"] * 3600, rel=1e-9)
    replica_s = sum(h.released - h.taken for h in holds)
    assert svc["replica_hours"] == pytest.approx(replica_s / 3600, rel=1e-12)
    units = {serving.scaling[u].group: serving.scaling[u] for u in serving.units_of[0]}
    assert (units["prefill"].pool.name, units["prefill"].tp, units["decode"].pool.name, units["decode"].tp) == \
        ("pf", 2, "dec", 4)
    if training:
        assert units["decode"].preempted > 0 and units["prefill"].preempted == 0
        assert svc["training_preemptions"] == units["decode"].preempted


def test_autoscaled_on_two_pools_costs_each_group_at_its_pool(tmp_path):
    """With a cost section, the devices are priced group by group: each group's replica-seconds x its tp x its
    own pool's price per device-second (H100 and H200 priced apart), plus the energy at the kWh price."""
    s = with_rows(two_pools(tmp_path), tmp_path, DECODES)
    s["cost"] = {"usd_per_kwh": 0.1, "amortization_years": 4}  # the devices' prices from the hardware profiles
    res, serving = build(s)
    svc = res.summary["services"]["chat"]
    groups = serving._groups(0)
    usd = sum(g.tp * g.replica_s * g.prices.usd_per_device_s for g in groups)
    assert groups[0].prices.usd_per_device_s != groups[1].prices.usd_per_device_s
    assert [g.tp for g in groups] == [2, 4]
    holds = serving.holds[0]
    decode = serving.fleet.disagg[0].decode
    assert groups[1].replica_s == sum(h.released - h.taken for h in holds if h.replica in decode)
    assert svc["cost_usd"] == pytest.approx(usd + svc["energy_kwh"] * groups[0].prices.usd_per_kwh, rel=1e-12)


@pytest.mark.parametrize("change, words, where", [
    (lambda d: d.update(decode_layout={"tp": 16}), "needs 16 devices of one node",
     "services[0].disaggregated.decode_layout.tp"),
    (lambda d: d.update(prefill_layout={"tp": 3, "dtype": "fp8"}) or d.update(prefill_replicas=2),
     "cannot hold 1 replicas of 4 device", "services[0].disaggregated.decode_replicas"),
    (lambda d: d.update(prefill_layout={"tp": 0}), "greater than or equal to 1", None),
    (lambda d: d.update(decode_layout={"pp": 2}), "decode_layout.pp: unknown key", None),
])
def test_bad_group_layouts_are_refused_at_their_keys(change, words, where):
    s = lone()
    change(s["services"][0]["disaggregated"])
    if s["services"][0]["disaggregated"]["prefill_replicas"] == 2:
        s["services"][0]["replicas"] = 3
    with pytest.raises(CapsimError, match=words) as err:
        simulator.run(s, progress=False)
    if where is not None:
        assert err.value.where == where
    assert "\n" not in str(err.value).strip() or "disaggregated" in str(err.value)


def test_a_model_that_does_not_fit_a_groups_tp_is_refused_at_its_layout():
    """llama3-70b: its bf16 weights leave no KV on one H100 (prefill tp 1) but do at tp 4."""
    s = lone(prefill_tp=1, decode_tp=4)
    s["services"][0]["model"] = "llama3-70b"
    with pytest.raises(CapsimError, match="does not fit") as err:
        simulator.run(s, progress=False)
    assert err.value.where == "services[0].disaggregated.prefill_layout"
