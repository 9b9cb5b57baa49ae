"""A paged KV cache with chunked prefill (simulator/serving/paged.py, vLLM V1's default): the closed-form
jump equals the per-iteration reference loop (tests/serving/reference.py) request by request, a
three-request schedule preempts the prompt in progress at the iteration worked out by hand, the cache
never holds more blocks than it has, and every output token is counted once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.serving.fleet import ServiceRuntime, simulate
from tests.serving.reference import AffineCost, reference_paged


def service(cost, replicas=1, max_num_seqs=4, max_batched_tokens=16, kv_blocks=40, block_size=4,
            router="round-robin"):
    return ServiceRuntime("s", replicas, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, router,
                          chunked_prefill=True, paged_kv=True)


workloads = st.lists(
    st.tuples(st.integers(0, 3000), st.integers(1, 60), st.integers(1, 60)),  # arrival (ms), prompt, output
    min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(workloads, st.integers(1, 3), st.integers(1, 8), st.integers(1, 40), st.integers(4, 60),
       st.sampled_from([1, 2, 4, 16]), st.floats(0.0, 1e-4), st.sampled_from(["round-robin", "least-outstanding"]))
def test_jump_equals_the_reference_loop(rows, replicas, max_num_seqs, budget, kv_blocks, block_size, slope, router):
    arrival = np.array([r[0] for r in rows]) * 1e-3 * math.sqrt(2)
    prompt = np.array([r[1] for r in rows])
    output = np.array([r[2] for r in rows])
    cost = AffineCost(slope=slope)
    fleet = simulate([service(cost, replicas, max_num_seqs, budget, kv_blocks, block_size, router)],
                     arrival, prompt, output)
    by_replica = {}
    for r in range(len(rows)):
        if fleet.rejected[r]:  # only a KV larger than the cache: a chunked replica takes any prompt
            assert math.ceil((prompt[r] + output[r]) / block_size) > kv_blocks
            continue
        by_replica.setdefault(fleet.replica[r], []).append((r, arrival[r], int(prompt[r]), int(output[r])))
    for rep, reqs in by_replica.items():
        expected, preempted, peak = reference_paged(reqs, cost, max_num_seqs, budget, kv_blocks, block_size,
                                                    chunked=True)
        assert set(expected) == {r for r, *_ in reqs}
        for r, (first, end) in expected.items():
            assert fleet.first[r] == pytest.approx(first, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.end[r] == pytest.approx(end, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.preemptions[r] == preempted.get(r, 0), (rep, r)
        replica = fleet.replicas[0][rep]
        assert replica.kv_peak == peak <= kv_blocks  # never more blocks held than the cache has
        assert replica.kv_used == 0 and not replica.waiting and replica.pf < 0
    served = [r for r in range(len(rows)) if not fleet.rejected[r]]
    # tokens conserved: every output token generated once, a recompute's tokens not counted again
    assert sum(rep.tokens for rep in fleet.replicas[0]) == int(output[served].sum())
    assert all(fleet.end[r] >= fleet.first[r] >= arrival[r] for r in served)


class Hand:
    """prefill unused; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum); a mixed iteration of b decodes
    (contexts T) and a chunk of c tokens: 0.2 + (c + b) / 100 + 0.001 T."""

    def prefill(self, n, tokens):
        raise AssertionError("a chunked replica has no prefill-only iteration")

    def decode(self, b):
        return 0.1 + 0.05 * b, 0.001

    def mixed(self, b, context, chunk):
        return 0.2 + (chunk + b) / 100 + 0.001 * context


def test_three_requests_by_hand():
    """Blocks of 2 tokens, 4 blocks, a budget of 4 tokens. A (prompt 2, output 5) and B (prompt 6, output 2)
    arrive at 0, C (prompt 1, output 2) at 0.5. A decoding sequence of prompt p with g tokens holds
    ceil((p + g - 1) / 2) blocks and its step takes a new one when p + g - 1 is even; a prompt prefilled
    q tokens holds ceil(q / 2).

    t=0      A admitted, chunk 2 (1 block): mixed(0, 0, 2) = 0.22            -> 0.22, A's first token
    t=0.22   A crosses (1 block); B admitted, chunk min(6, 4 - 1) = 3 (2 blocks): 4 of 4 held;
             mixed(1, 3, 3) = 0.243                                           -> 0.463
    t=0.463  B's next chunk (3) needs ceil(6/2) - ceil(3/2) = 1 block, none free: it waits; A decodes,
             crossing at its next step with none free, so the stretch is one step: 0.15 + 0.004 -> 0.617
             (C arrives at 0.5 behind B's prompt: no earlier boundary)
    t=0.617  A crosses, no block free: B, the prompt in progress and the newest, is preempted (frees 2)
             and goes back to the front of the queue; nothing is admitted; A decodes alone, contexts 5
             and 6: 0.155 + 0.156 (B's first chunk, 2 blocks, does not fit at 0.772: 1 free) -> 0.928, A leaves
    t=0.928  B re-admitted from its start, chunk 4 (2 blocks): mixed(0, 0, 4) = 0.24 -> 1.168
    t=1.168  B's last chunk, 2 (1 block): mixed(0, 0, 2) = 0.22               -> 1.388, B's first token
    t=1.388  B crosses (1 block, 1 free); C's first chunk (1 block) does not fit beside it; B decodes,
             context 7: 0.157                                                 -> 1.545, B leaves
    t=1.545  C admitted, chunk 1: mixed(0, 0, 1) = 0.21                       -> 1.755, C's first token
    t=1.755  C decodes, context 2: 0.152                                      -> 1.907, C leaves
    """
    arrival, prompt, output = np.array([0.0, 0.0, 0.5]), np.array([2, 6, 1]), np.array([5, 2, 2])
    fleet = simulate([service(Hand(), 1, max_num_seqs=4, max_batched_tokens=4, kv_blocks=4, block_size=2)],
                     arrival, prompt, output)
    assert fleet.first == pytest.approx([0.22, 1.388, 1.755], abs=1e-12)
    assert fleet.end == pytest.approx([0.928, 1.545, 1.907], abs=1e-12)
    assert fleet.preemptions == [0, 1, 0]
    rep = fleet.replicas[0][0]
    assert rep.tokens == 9 and rep.preemptions == 1 and rep.kv_peak == 4 and rep.kv_used == 0
    expected, preempted, peak = reference_paged([(r, arrival[r], int(prompt[r]), int(output[r])) for r in range(3)],
                                                Hand(), 4, 4, 4, 2, chunked=True)
    assert [v for r in range(3) for v in expected[r]] == pytest.approx([0.22, 0.928, 1.388, 1.545, 1.755, 1.907],
                                                                       abs=1e-12)
    assert preempted == {1: 1} and peak == 4


def test_a_scenario_with_paged_chunked_prefill():
    """vLLM V1's default in a scenario: long prompts go through in chunks on a small paged cache, requests
    are preempted and all complete, the summary counts the preemptions and the KV peak stays in the cache;
    the same scenario with swap is refused with the key path."""
    import copy

    import simulator
    from simulator.errors import CapsimError
    from tests.serving.test_paged import SCENARIO

    scenario = copy.deepcopy(SCENARIO)
    scenario["services"][0]["scheduler"].update(chunked_prefill=True, max_batched_tokens=512)
    scenario["requests"][0]["prompt_tokens"] = 1500  # three chunks or more each, beyond the budget
    sim = simulator.build(scenario, progress=False)
    sim.run()
    res = simulator.collect(sim)
    req, chat = res.requests, res.summary["services"]["chat"]
    assert (req["status"] == "completed").all()
    assert req["preemptions"].sum() == chat["preemptions"] > 0
    assert 0 < chat["kv_peak_fraction"] <= 1.0
    scenario["services"][0]["scheduler"]["preemption"] = "swap"
    with pytest.raises(CapsimError, match=r"services\[0\]\.scheduler: preemption: swap does not go with chunked"):
        simulator.build(scenario, progress=False)
