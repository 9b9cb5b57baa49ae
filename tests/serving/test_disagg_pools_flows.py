"""Disaggregated services' KV transfers as flows sharing the replicas' scale-out links max-min fairly
(serving/disagg.py), worked by hand; and the prefill and decode groups on pools of their own
(features/serving.py), each at its own device's costs, with their settings checked."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.perf.inference import kv_cache_bytes
from simulator.perf.profile import load_profile
from simulator.perf.zoo import load_model
from simulator.serving.cost import PerfCost
from simulator.serving.fleet import simulate
from tests.serving.test_disagg import BASE, Hand, service


def test_a_transfer_alone_takes_prompt_times_the_per_token_time():
    """A: prompt 100, output 2: prefill(1, 100) = 1.5; its transfer alone 100 x 0.001 = 0.1 (exactly, the
    same float as before transfers were flows); one decode step, context 101: 0.251 -> 1.851."""
    fleet = simulate([service(Hand())], np.array([0.0]), np.array([100]), np.array([2]))
    assert fleet.first == [1.5]
    assert fleet.end == [1.5 + 100 * 0.001 + (0.1 + 0.05 + 0.001 * 101)]


def test_two_transfers_out_of_one_prefill_replica_take_twice_as_long():
    """A and B (prompt 100, output 2) at 0 on the one prefill replica: prefilled together, prefill(2, 200) =
    2.5. Their KV goes to decode replicas 1 and 2 (round-robin) at once: the prefill replica's link is
    shared, each at half rate, so each transfer takes 2 x 0.1 = 0.2 (arriving at 2.7), then one decode
    step each on its own replica: 0.251 -> 2.951."""
    fleet = simulate([service(Hand(), prefill=1, decode=2)], np.array([0.0, 0.0]), np.array([100, 100]),
                     np.array([2, 2]))
    assert fleet.first == pytest.approx([2.5, 2.5], abs=1e-12)
    assert fleet.disagg[0].decode_replica == [1, 2]
    assert fleet.end == pytest.approx([2.5 + 0.2 + 0.251] * 2, abs=1e-12)
    assert fleet.disagg[0].flows == []


def test_transfers_from_two_prefill_replicas_contend_only_where_they_meet():
    """Two prefill and two decode replicas: A and B go to prefill 0 and 1, then to decode 2 and 3; their
    links are all their own, so each transfer takes 0.1 as alone. With one decode replica they meet on its
    link: A (prompt 100, prefill 1.5) and B (prompt 95, prefill 1.45, transfer alone 0.095) into decode 2.
    B alone from 1.45 to 1.5 sends 0.05 of its 0.095; then both at half rate: B ends at 1.5 + 2 x 0.045 =
    1.59, A has sent 0.045 of 0.1 and ends at 1.59 + 0.055 = 1.645. B decodes one step (context 96: 0.246,
    to 1.836); A, arrived during it, decodes one step from there (context 101: 0.251, to 2.087)."""
    apart = simulate([service(Hand(), prefill=2, decode=2)], np.array([0.0, 0.0]), np.array([100, 100]),
                     np.array([2, 2]))
    assert apart.disagg[0].decode_replica == [2, 3]
    assert apart.end == [1.5 + 100 * 0.001 + 0.251] * 2
    met = simulate([service(Hand(), prefill=2, decode=1)], np.array([0.0, 0.0]), np.array([100, 95]),
                   np.array([2, 2]))
    assert met.first == pytest.approx([1.5, 1.45], abs=1e-12)
    assert met.end == pytest.approx([2.087, 1.836], abs=1e-12)


def test_unequal_links_share_the_slower_one():
    """A decode replica's ingress twice a prefill replica's egress (link_gbs 1 : 2): a transfer alone runs at
    the egress (transfer_s is at that rate). Two transfers from two prefill replicas into the one decode
    replica need 1 + 1 of its 2: neither is slowed (0.1 each), where with equal links they take 0.2."""
    rts = {}
    for ingress in (1.0, 2.0):
        rt = service(Hand(), prefill=2, decode=1)
        rt.link_gbs = (1.0, ingress)
        rts[ingress] = simulate([rt], np.array([0.0, 0.0]), np.array([100, 100]), np.array([2, 2]))
    # both prefilled at 1.5, decoded together from their arrival: b = 2, contexts 202: 0.2 + 0.202
    assert rts[2.0].end == pytest.approx([1.5 + 0.1 + 0.402] * 2, abs=1e-12)
    assert rts[1.0].end == pytest.approx([1.5 + 0.2 + 0.402] * 2, abs=1e-12)


def split_scenario(prefill="h100-sxm", decode="h200-sxm", requests=1):
    s = copy.deepcopy(BASE)
    s["cluster"]["pools"] = [{"name": "pf", "device": prefill, "nodes": 1, "devices_per_node": 8},
                             {"name": "dec", "device": decode, "nodes": 1, "devices_per_node": 8}]
    svc = s["services"][0]
    svc["pool"] = "pf"
    svc["disaggregated"] = {"prefill_replicas": 1, "decode_replicas": 3, "decode_pool": "dec"}
    s["requests"][0]["requests"] = requests
    return s


def test_separate_pools_use_each_pools_device():
    """Prefill on H100, decode on H200 (llama3-8b, tp 1): a lone request's TTFT is the H100 prefill, and its
    TPOT the H200 decode cost model's steps over the transfer (the same scale-out bandwidth on both);
    the replicas hold devices of their own pools, and the decode replicas' KV is the H200's."""
    res = simulator.run(split_scenario(), progress=False)
    lone, chat = res.requests.iloc[0], res.summary["services"]["chat"]
    model = load_model("llama3-8b").model_spec()
    h100, h200 = PerfCost("h100-sxm", model), PerfCost("h200-sxm", model)
    bw = min(load_profile("h100-sxm").scale_out_bw_gbs, load_profile("h200-sxm").scale_out_bw_gbs)
    transfer = 1024 * kv_cache_bytes(model, 1, 1, 1, "bf16") / (bw * 1e9)
    a, b = h200.decode(1)
    decode = sum(a + b * (1024 + g) for g in range(1, 64))
    assert lone.first_token_s - lone.arrival_s == pytest.approx(h100.prefill(1, 1024), rel=1e-12)
    assert chat["tpot_p50_s"] == pytest.approx((transfer + decode) / 63, rel=1e-9)
    assert h200.decode(1) != h100.decode(1)  # the devices differ, so the check tells them apart
    mixed = simulator.run(copy.deepcopy(BASE) | {"requests": [dict(BASE["requests"][0], requests=1)]},
                          progress=False).requests.iloc[0]
    assert mixed.end_s - mixed.first_token_s != pytest.approx(lone.end_s - lone.first_token_s, rel=1e-9)
    sim = simulator.build(split_scenario(), progress=False)
    serving = next(m for m in sim.context.meters if hasattr(m, "fleet"))
    sim.run()
    pools = [h.alloc.pool.name for h in serving.holds[0]]
    assert pools == ["pf", "dec", "dec", "dec"]
    rt = serving.runtimes[0]
    assert rt.decode_kv_blocks > rt.kv_blocks  # 141 GiB against 80
    assert chat["kv_capacity_tokens"] == rt.decode_kv_blocks * rt.block_size


def test_separate_pool_settings_are_checked():
    cases = [
        (lambda s: s["services"][0]["disaggregated"].update(decode_pool="nope"), "no pool named 'nope'",
         "services[0].disaggregated.decode_pool"),
        (lambda s: s["services"][0]["disaggregated"].update(prefill_pool="nope"), "no pool named 'nope'",
         "services[0].disaggregated.prefill_pool"),
        (lambda s: s["services"][0]["disaggregated"].update(decode_replicas=9, prefill_replicas=1) or
         s["services"][0].update(replicas=10), "cannot hold 9 replicas", "services[0].disaggregated.decode_replicas"),
    ]
    for change, words, where in cases:
        s = split_scenario()
        change(s)
        with pytest.raises(CapsimError, match=words) as err:
            simulator.run(s, progress=False)
        assert err.value.where == where
    s = split_scenario()
    svc = s["services"][0]
    svc["disaggregated"].update(prefill_replicas={"min": 1, "max": 2}, decode_replicas={"min": 1, "max": 2})
    svc["replicas"] = {"min": 2, "max": 4}
    svc["autoscale"] = {"metric": "queue", "target": 2}
    # once refused ("do not autoscale yet"); now each group scales on its own pool (test_disagg_groups.py)
    res = simulator.run(s, progress=False)
    assert (res.requests["status"] == "completed").all()
    # llama3-70b on one device: fits neither an 80 GiB H100 nor (at memory_utilization 0.9) a 141 GiB H200
    s = split_scenario()
    s["services"][0]["model"] = "llama3-70b"
    with pytest.raises(CapsimError, match="does not fit") as err:
        simulator.run(s, progress=False)
    assert err.value.where == "services[0].pool"
    s = split_scenario(decode="a100-sxm-40gb")
    s["services"][0]["model"] = "llama3-8b"
    s["services"][0]["scheduler"]["memory_utilization"] = 0.37
    with pytest.raises(CapsimError, match="of a a100-sxm-40gb") as err:
        simulator.run(s, progress=False)
    assert err.value.where == "services[0].disaggregated.decode_pool"
