"""Disaggregated prefill and decode (simulator/serving/disagg.py): a hand-worked pair of requests to their
exact first tokens and ends, Little's law and token conservation on a random workload, and a scenario."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.perf.inference import kv_cache_bytes
from simulator.perf.profile import load_profile
from simulator.perf.zoo import load_model
from simulator.serving.fleet import ServiceRuntime, simulate
from tests.serving.reference import AffineCost


class Hand:
    """prefill(n, tokens) = 0.5 + tokens / 100; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum)."""

    def prefill(self, n, tokens):
        return 0.5 + tokens / 100

    def decode(self, b):
        return 0.1 + 0.05 * b, 0.001


def service(cost, prefill=1, decode=1, transfer=0.001, router="round-robin", max_num_seqs=4, kv_blocks=1000):
    return ServiceRuntime("s", prefill + decode, cost, max_num_seqs, 4096, kv_blocks, 16, router,
                          disaggregated=(prefill, decode), transfer_s_per_token=transfer)


def test_one_request_by_hand():
    """A: prompt 100, output 4, at 0; the KV goes at 1 ms per prompt token.

    t=0      prefill replica: prefill(1, 100) = 1.5                    -> 1.5, A's first token (TTFT 1.5)
    t=1.5    KV transfer, 100 x 0.001 = 0.1                             -> 1.6, at the decode replica
    t=1.6    decode b=1, contexts 101, 102, 103: 0.251 + 0.252 + 0.253   -> 2.356, A's 4th token
    """
    fleet = simulate([service(Hand())], np.array([0.0]), np.array([100]), np.array([4]))
    assert fleet.first == pytest.approx([1.5], abs=1e-12)
    assert fleet.end == pytest.approx([2.356], abs=1e-12)
    prefill, decode = fleet.replicas[0]
    assert (prefill.tokens, decode.tokens) == (1, 3)
    assert prefill.busy_s == pytest.approx(1.5) and decode.busy_s == pytest.approx(0.756)
    assert fleet.disagg[0].decode_replica == [1]


def test_prefill_and_decode_overlap_on_separate_replicas():
    """B (prompt 50, output 2) arrives at 1.0: its prefill waits for A's (1.5 to 2.5) while A decodes on the
    other replica from 1.6 to 2.356; B's KV arrives at 2.55 and its one decode step (context 51) takes
    0.201 -> 2.751. C (output 1) is done at its prefill and sends nothing."""
    fleet = simulate([service(Hand())], np.array([0.0, 1.0, 2.0]), np.array([100, 50, 10]), np.array([4, 2, 1]))
    assert fleet.first == pytest.approx([1.5, 2.5, 3.1], abs=1e-12)
    assert fleet.end == pytest.approx([2.356, 2.751, 3.1], abs=1e-12)
    assert fleet.disagg[0].decode_replica == [1, 1, -1]


@pytest.mark.parametrize("router", ["round-robin", "least-outstanding"])
def test_littles_law_and_conservation_on_a_random_workload(router):
    """2 prefill and 3 decode replicas, 2,000 random requests: the time-average of requests in the system
    (the fleet's running integral) is lambda W; every token is counted once; each decode starts after
    its KV transfer; the decode replicas' KV stays within their caches."""
    rng = np.random.default_rng(11)
    n = 2000
    arrival = np.cumsum(rng.exponential(0.05, n))
    prompt, output = rng.integers(1, 500, n), rng.integers(1, 200, n)
    fleet = simulate([service(AffineCost(), 2, 3, 2e-5, router, max_num_seqs=16, kv_blocks=400)],
                     arrival, prompt, output)
    end, first = np.array(fleet.end), np.array(fleet.first)
    served = ~np.array(fleet.rejected)
    assert served.all()
    span = end.max() - arrival.min()
    w = (end - arrival).mean()
    assert fleet.area / span == pytest.approx(n / span * w, rel=1e-9)
    assert sum(r.tokens for r in fleet.replicas[0]) == output.sum()
    group = fleet.disagg[0]
    prefill_end = np.array(group.prefill_end)
    assert np.array_equal(prefill_end, first)  # TTFT ends at the prefill
    multi = output > 1
    # a decode of o - 1 steps takes at least (o - 1) x the batch-1 step, after the transfer
    step = AffineCost().decode(1)[0]
    assert (end[multi] >= first[multi] + prompt[multi] * 2e-5 + (output[multi] - 1) * step - 1e-9).all()
    assert sorted(set(group.decode_replica) - {-1}) == [2, 3, 4]
    assert all(r.kv_peak <= r.kv_blocks for r in fleet.replicas[0])


BASE = {
    "name": "disagg",
    "seed": 3,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 4,
                  "disaggregated": {"prefill_replicas": 1, "decode_replicas": 3},
                  "scheduler": {"max_num_seqs": 64, "max_batched_tokens": 8192}}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 300,
                  "arrival": {"process": "poisson", "rate_per_s": 5.0}, "prompt_tokens": 1024, "output_tokens": 64}],
}


def test_a_disaggregated_scenario():
    """The transfer is prompt x KV bytes per token per device over the device's scale-out bandwidth: a
    lone request's end is its prefill, that transfer and 63 decode steps."""
    res = simulator.run(copy.deepcopy(BASE), progress=False)
    req, chat = res.requests, res.summary["services"]["chat"]
    assert (req["status"] == "completed").all() and chat["replicas"] == 4
    assert set(req["replica"]) == {0}  # routed to the prefill group
    one = copy.deepcopy(BASE)
    one["requests"][0]["requests"] = 1
    lone = simulator.run(one, progress=False).requests.iloc[0]
    from simulator.serving.cost import PerfCost

    model = load_model("llama3-8b").model_spec()
    cost = PerfCost("h100-sxm", model)
    transfer = 1024 * kv_cache_bytes(model, 1, 1, 1, "bf16") / (load_profile("h100-sxm").scale_out_bw_gbs * 1e9)
    a, b = cost.decode(1)
    decode = sum(a + b * (1024 + g) for g in range(1, 64))
    assert lone.first_token_s - lone.arrival_s == pytest.approx(cost.prefill(1, 1024), rel=1e-12)
    assert lone.end_s - lone.first_token_s == pytest.approx(transfer + decode, rel=1e-9)


def test_disaggregated_settings_are_checked():
    for change, words in ((lambda s: s.update(replicas=5), "must equal replicas"),
                          (lambda s: s["scheduler"].update(chunked_prefill=True), "default scheduler")):
        scenario = copy.deepcopy(BASE)
        change(scenario["services"][0])
        with pytest.raises(CapsimError, match=words):
            simulator.run(scenario, progress=False)
