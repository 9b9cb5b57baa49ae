"""The paged KV cache (simulator/serving/paged.py): blocks allocated as tokens are written, the newest
running sequences preempted by recompute or swap when a step's blocks do not fit. The closed-form jump
equals the per-iteration reference loop (tests/serving/reference.py) request by request, a three-request
schedule on a five-block cache preempts at the iteration worked out by hand, and the cache never holds
more blocks than it has."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.serving.fleet import ServiceRuntime, simulate
from tests.serving.reference import AffineCost, reference_paged


def service(cost, replicas=1, max_num_seqs=4, max_batched_tokens=64, kv_blocks=40, block_size=4,
            router="round-robin", swap=None):
    return ServiceRuntime("s", replicas, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, router,
                          paged_kv=True, swap_s_per_block=swap)


workloads = st.lists(
    st.tuples(st.integers(0, 3000), st.integers(1, 60), st.integers(1, 60)),  # arrival (ms), prompt, output
    min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(workloads, st.integers(1, 3), st.integers(1, 8), st.integers(2, 128), st.integers(4, 60),
       st.sampled_from([1, 2, 4, 16]), st.floats(0.0, 1e-4), st.sampled_from(["round-robin", "least-outstanding"]),
       st.sampled_from([None, 0.0, 1e-3]))
def test_jump_equals_the_reference_loop(rows, replicas, max_num_seqs, max_tokens, kv_blocks, block_size, slope,
                                        router, swap):
    arrival = np.array([r[0] for r in rows]) * 1e-3 * math.sqrt(2)
    prompt = np.array([r[1] for r in rows])
    output = np.array([r[2] for r in rows])
    cost = AffineCost(slope=slope)
    fleet = simulate([service(cost, replicas, max_num_seqs, max_tokens, kv_blocks, block_size, router, swap)],
                     arrival, prompt, output)
    by_replica = {}
    for r in range(len(rows)):
        if fleet.rejected[r]:
            assert math.ceil((prompt[r] + output[r]) / block_size) > kv_blocks or prompt[r] > max_tokens
            continue
        by_replica.setdefault(fleet.replica[r], []).append((r, arrival[r], int(prompt[r]), int(output[r])))
    for rep, reqs in by_replica.items():
        expected, preempted, peak = reference_paged(reqs, cost, max_num_seqs, max_tokens, kv_blocks, block_size,
                                                    swap)
        assert set(expected) == {r for r, *_ in reqs}
        for r, (first, end) in expected.items():
            assert fleet.first[r] == pytest.approx(first, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.end[r] == pytest.approx(end, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.preemptions[r] == preempted.get(r, 0), (rep, r)
        replica = fleet.replicas[0][rep]
        assert replica.kv_peak == peak <= kv_blocks  # never more blocks held than the cache has
        assert replica.kv_used == 0 and not replica.swapped and not replica.waiting
    served = [r for r in range(len(rows)) if not fleet.rejected[r]]
    assert sum(rep.tokens for rep in fleet.replicas[0]) == int(output[served].sum())
    assert all(fleet.end[r] >= fleet.first[r] >= arrival[r] for r in served)


class Hand:
    """prefill(n, tokens) = 0.5 + tokens / 100; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum)."""

    def prefill(self, n, tokens):
        return 0.5 + tokens / 100

    def decode(self, b):
        return 0.1 + 0.05 * b, 0.001


ARRIVAL, PROMPT, OUTPUT = np.array([0.0, 0.0, 0.3]), np.array([2, 2, 1]), np.array([6, 6, 2])


def test_one_preemption_by_recompute_at_a_worked_iteration():
    """Blocks of 2 tokens, 5 blocks. A and B (prompt 2, output 6) arrive at 0, C (prompt 1, output 2) at 0.3.
    A sequence of prompt p with g tokens holds ceil((p + g - 1) / 2) blocks; its step takes a new one
    when p + g - 1 is even.

    t=0      A, B admitted (1 block each): prefill(2, 4) = 0.54          -> 0.54, A and B's first tokens
    t=0.54   C (waiting since 0.3) admitted (1 block): prefill(1, 1) = 0.51 -> 1.05, C's first token; 3 blocks
    t=1.05   step (A, B cross: 2 new blocks, 2 free): contexts 3+3+2: 0.1 + 0.15 + 0.008 -> 1.308, C leaves
             (frees 1): 4 blocks held
    t=1.308  step (no crossing), contexts 4+4: 0.208                       -> 1.516, A and B have 3 tokens
    t=1.516  A and B cross (2 blocks needed, 1 free): B, the newest, is preempted (frees 2) and goes
             back to the queue with its 3 tokens; A alone, context 5: 0.155 -> 1.671
    t=1.671  B's recompute needs ceil((2 + 3) / 2) = 3 blocks, 2 free: it waits; A, context 6: 0.156 -> 1.827
    t=1.827  B still waits; A crosses (1 free of 2), context 7: 0.157   -> 1.984, A's 6th token: A leaves
    t=1.984  B re-prefilled, 5 tokens: prefill(1, 5) = 0.55             -> 2.534, B's 4th token
    t=2.534  B, context 6: 0.156                                        -> 2.690
    t=2.690  B crosses, context 7: 0.157                                -> 2.847, B's 6th token: B leaves
    """
    svc = service(Hand(), 1, max_num_seqs=4, max_batched_tokens=100, kv_blocks=5, block_size=2)
    fleet = simulate([svc], ARRIVAL, PROMPT, OUTPUT)
    assert fleet.first == pytest.approx([0.54, 0.54, 1.05], abs=1e-12)
    assert fleet.end == pytest.approx([1.984, 2.847, 1.308], abs=1e-12)
    assert fleet.preemptions == [0, 1, 0]
    rep = fleet.replicas[0][0]
    assert rep.tokens == 14 and rep.preemptions == 1 and rep.kv_peak == 5
    # reserving each request's whole KV up front (4 blocks for A and B) serves A and B one after the other
    reserve = simulate([ServiceRuntime("s", 1, Hand(), 4, 100, 5, 2)], ARRIVAL, PROMPT, OUTPUT)
    assert reserve.preemptions == [0, 0, 0] and reserve.first[1] > fleet.first[1]


def test_one_preemption_by_swap_at_a_worked_iteration():
    """The same three requests, preempting by swap at 0.01 s per block each way.

    t=1.516  B swapped out (2 blocks, 0.02 s); A alone from 1.536, context 5: 0.155    -> 1.691
    t=1.691  B back needs its 2 blocks and 1 for its step: 3 > 2 free; A, context 6    -> 1.847
    t=1.847  A crosses; B still does not fit; context 7: 0.157                         -> 2.004, A leaves
    t=2.004  B swapped in (0.02 s), its step from 2.024, context 5: 0.155              -> 2.179
             then contexts 6 and 7: 0.156 + 0.157                                      -> 2.492, B leaves
    """
    svc = service(Hand(), 1, max_num_seqs=4, max_batched_tokens=100, kv_blocks=5, block_size=2, swap=0.01)
    fleet = simulate([svc], ARRIVAL, PROMPT, OUTPUT)
    assert fleet.first == pytest.approx([0.54, 0.54, 1.05], abs=1e-12)
    assert fleet.end == pytest.approx([2.004, 2.492, 1.308], abs=1e-12)
    assert fleet.preemptions == [0, 1, 0]
    rep = fleet.replicas[0][0]
    assert rep.swapped_blocks == 4 and rep.tokens == 14
    assert rep.busy_s == pytest.approx(2.492, abs=1e-12)  # busy from 0 to the end, copies included


def test_paged_admits_more_at_once_than_reserving():
    """Long outputs on a cache that holds every prompt but not every output: the paged cache runs more
    sequences at once, so the queue drains sooner (mean end-to-end latency lower) even with preemptions."""
    rng = np.random.default_rng(3)
    n = 200
    arrival = np.sort(rng.uniform(0, 20, n))
    prompt, output = rng.integers(10, 50, n), rng.integers(50, 300, n)
    common = dict(max_num_seqs=64, max_batched_tokens=2048, kv_blocks=100, block_size=16)
    paged = simulate([service(AffineCost(), **common)], arrival, prompt, output)
    reserve = simulate([ServiceRuntime("s", 1, AffineCost(), 64, 2048, 100, 16)], arrival, prompt, output)
    e2e = lambda f: np.mean(np.array(f.end) - arrival)  # noqa: E731
    assert sum(paged.preemptions) > 0
    assert e2e(paged) < e2e(reserve)


SCENARIO = {
    "name": "paged",
    "seed": 2,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 2,
                  "scheduler": {"max_num_seqs": 64, "max_batched_tokens": 4096, "kv_tokens": 6000,
                                "kv_allocation": "paged"}}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 400,
                  "arrival": {"process": "poisson", "rate_per_s": 20.0}, "prompt_tokens": 200,
                  "output_tokens": {"dist": "uniform", "low": 50, "high": 600}}],
}


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_a_scenario_with_a_paged_cache(preemption):
    """A cache of 6,000 tokens per replica under long outputs: requests are preempted, every one completes,
    the requests table counts each one's preemptions, the summary their sum, and KV never overflows."""
    import copy

    import simulator

    scenario = copy.deepcopy(SCENARIO)
    scenario["services"][0]["scheduler"]["preemption"] = preemption
    sim = simulator.build(scenario, progress=False)
    sim.run()
    res = simulator.collect(sim)
    req, chat = res.requests, res.summary["services"]["chat"]
    assert (req["status"] == "completed").all()
    assert req["preemptions"].sum() == chat["preemptions"] > 0
    assert 0 < chat["kv_peak_fraction"] <= 1.0
    fleet = next(m for m in sim.context.meters if hasattr(m, "fleet")).fleet
    reps = fleet.replicas[0]
    assert all(r.kv_peak <= r.kv_blocks for r in reps)
    assert all(r.swapped_blocks > 0 for r in reps) == (preemption == "swap")


def test_paged_settings_are_checked():
    import copy

    import simulator
    from simulator.errors import CapsimError

    for extra, words in (({"chunked_prefill": True, "preemption": "swap"}, "recompute only"),
                         ({"kv_allocation": "reserve", "preemption": "swap"}, "needs kv_allocation: paged")):
        scenario = copy.deepcopy(SCENARIO)
        scenario["services"][0]["scheduler"].update(extra)
        with pytest.raises(CapsimError, match=words):
            simulator.build(scenario, progress=False)
