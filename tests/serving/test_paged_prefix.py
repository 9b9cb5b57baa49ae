"""Prefix caching on the paged KV cache (serving/prefix.py's PagedCachingReplica): a two-session schedule
worked by hand, the jump against the per-iteration reference loop (tests/serving/reference.py) request by
request under Hypothesis, the cache never holding more than its blocks, and tokens conserved."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.serving.fleet import ServiceRuntime, simulate
from tests.serving.reference import AffineCost, PrefixCache, reference_paged
from tests.serving.test_sessions_routing import Hand, session_requests


def service(cost, replicas=1, router="round-robin", kv_blocks=100, block_size=4, max_num_seqs=4,
            max_batched_tokens=200, swap=None):
    return ServiceRuntime("s", replicas, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, router,
                          paged_kv=True, swap_s_per_block=swap, prefix_caching=True)


def test_two_sessions_by_hand_on_the_paged_cache():
    """One replica, 4-token blocks, 100 blocks (nothing preempted or evicted).
    A1 (r0) at 0, prompt 10, output 3: prefill(1, 10) = 0.6 -> first 0.6; decodes at contexts 11, 12:
      0.161 + 0.162 -> end 0.923; A's entry (10 + 3 - 1) // 4 = 3 blocks.
    B1 (r1) at 1, prompt 20, output 2: prefill(1, 20) = 0.7 -> first 1.7; decode at 21: 0.171 -> end 1.871;
      B's entry 21 // 4 = 5 blocks.
    B2 (r2) at 10, prompt 30: cached 4 min(5, 29 // 4) = 20, prefills 10: 0.6 -> first 10.6.
    A2 (r3) at 10.2 waits for that prefill's end and is admitted at 10.6, prompt 20: cached 4 min(3, 19 // 4)
      = 12, prefills 8: 0.58 -> first 11.18. B2 and A2 then decode together at contexts 31 + 21:
      0.2 + 0.052 = 0.252 -> both end 11.432, entering the cache in request order: B (7 blocks), then A (5)."""
    fleet = simulate([service(Hand())], np.array([0.0, 1.0, 10.0, 10.2]), np.array([10, 20, 30, 20]),
                     np.array([3, 2, 2, 2]), session=np.array([0, 1, 1, 0]))
    assert fleet.cached == [0, 0, 20, 12]
    assert fleet.first == pytest.approx([0.6, 1.7, 10.6, 11.18], rel=1e-12)
    assert fleet.end == pytest.approx([0.923, 1.871, 11.432, 11.432], rel=1e-12)
    rep = fleet.replicas[0][0]
    assert list(rep.entries.items()) == [(1, (30 + 2 - 1) // 4), (0, (20 + 2 - 1) // 4)]
    assert rep.kv_used == 0 and rep.cached_blocks == 7 + 5


def test_a_decode_step_evicts_the_least_recently_used_entry():
    """A 6-block cache of 2-token blocks. A1 (session 0, prompt 3, output 2) leaves an entry of
    (3 + 2 - 1) // 2 = 2 blocks at its end; X (no session, prompt 2, output 8) arrives then: its prompt takes
    1 block (free: 6 - 0 - 2 cached = 4 not cached, so no eviction), its decodes take a block at each of
    g = 2, 4, 6, 8 written... X holds ceil((2 + g - 1) / 2) blocks: 5 at g = 8, so A's 2 blocks no longer fit
    beside them and A's entry is evicted; A2 then prefills its whole prompt."""
    arrival = np.array([0.0, 1.0, 10.0])
    prompt, output, session = np.array([3, 2, 7]), np.array([2, 9, 1]), np.array([0, -1, 0])
    fleet = simulate([service(Hand(), kv_blocks=6, block_size=2)], arrival, prompt, output, session=session)
    assert fleet.cached == [0, 0, 0]
    kept = simulate([service(Hand(), kv_blocks=7, block_size=2)], arrival, prompt, output, session=session)
    assert kept.cached == [0, 0, 4]  # on 7 blocks: X's 5 + A's 2 fit, and A2 finds 2 min(2, 6 // 2) tokens


def test_a_preempted_turn_finds_its_own_blocks_when_recomputed():
    """Blocks of 2 tokens, 7 blocks: A (session 0) and B (session 1), prompt 2, output 6, arrive at 0.
    A sequence that has generated g tokens holds ceil((2 + g - 1) / 2) blocks; the step writing token 2 + g
    takes one when g is odd.
    0: both admitted, prefill(2, 4) = 0.54 -> first 0.54 (1 block each, g = 1).
    g = 1 -> 2: both take a block (4 held), 0.2 + 0.001 (3 + 3) = 0.206 -> 0.746; g = 2 -> 3: 0.208 -> 0.954;
    g = 3 -> 4: both take one (6 held), 0.210 -> 1.164; g = 4 -> 5: 0.212 -> 1.376.
    1.376, g = 5: two blocks needed, one free: B (the newest) is preempted by recompute. It wrote 2 + 5 - 1
    = 6 tokens: its 3 blocks stay cached as session 1's entry (3 held by A, + 1 for A's step, + 3 cached =
    7). A decodes alone: 0.15 + 0.001 x 7 = 0.157 -> A ends at 1.533 (its entry: (2 + 6 - 1) // 2 = 3).
    1.533: B's recompute (prompt 2 + 5 generated = 7) finds 2 min(3, 6 // 2) = 6 tokens and prefills one:
    prefill(1, 1) = 0.51 -> its sixth token, B ends at 2.043 (without the cache: prefill(1, 7) -> 2.103)."""
    arrival, prompt, output = np.array([0.0, 0.0]), np.array([2, 2]), np.array([6, 6])
    plain = simulate([ServiceRuntime("s", 1, Hand(), 4, 64, 7, 2, paged_kv=True)], arrival, prompt, output)
    fleet = simulate([service(Hand(), kv_blocks=7, block_size=2, max_batched_tokens=64)], arrival, prompt,
                     output, session=np.array([0, 1]))
    assert fleet.preemptions == plain.preemptions == [0, 1]
    assert fleet.cached == [0, 0]  # the first admission's hit is what is recorded
    assert fleet.first == pytest.approx([0.54, 0.54], rel=1e-12)
    assert fleet.end == pytest.approx([1.533, 2.043], rel=1e-12)
    assert plain.end == pytest.approx([1.533, 2.103], rel=1e-12)
    assert list(fleet.replicas[0][0].entries.items()) == [(0, 3), (1, 3)]
    reqs = [(r, arrival[r], int(prompt[r]), int(output[r])) for r in range(2)]
    cache = PrefixCache({0: 0, 1: 1}, 2, 7)
    expected, preempted, _ = reference_paged(reqs, Hand(), 4, 64, 7, 2, cache=cache)
    assert preempted == {1: 1}
    assert [v for r in range(2) for v in expected[r]] == pytest.approx([0.54, 1.533, 0.54, 2.043], rel=1e-12)


workloads = st.lists(  # arrival (ms), new prompt tokens, output, session (-1: none)
    st.tuples(st.integers(0, 4000), st.integers(1, 40), st.integers(1, 30), st.integers(-1, 5)),
    min_size=1, max_size=35)


@settings(max_examples=300, deadline=None)
@given(workloads, st.integers(1, 3), st.integers(1, 6), st.integers(16, 160), st.integers(6, 60),
       st.sampled_from([1, 2, 4, 16]), st.floats(0.0, 1e-4),
       st.sampled_from(["round-robin", "least-outstanding-tokens", "session-affinity"]),
       st.sampled_from([None, 0.0, 1e-3]))
def test_paged_prefix_caching_jump_equals_the_reference_loop(rows, replicas, max_num_seqs, max_tokens, kv_blocks,
                                                             block_size, slope, router, swap):
    arrival, prompt, output, session = session_requests(rows)
    cost = AffineCost(slope=slope)
    svc = service(cost, replicas, router, kv_blocks, block_size, max_num_seqs, max_tokens, swap)
    fleet = simulate([svc], arrival, prompt, output, session=session)
    by_replica = {}
    for r in range(len(arrival)):
        if fleet.rejected[r]:
            assert math.ceil((prompt[r] + output[r]) / block_size) > kv_blocks or prompt[r] > max_tokens
            continue
        by_replica.setdefault(fleet.replica[r], []).append((r, arrival[r], int(prompt[r]), int(output[r])))
    sessions = {r: int(session[r]) for r in range(len(arrival))}
    for rep, reqs in by_replica.items():
        cache = PrefixCache(sessions, block_size, kv_blocks)
        expected, preempted, peak = reference_paged(reqs, cost, max_num_seqs, max_tokens, kv_blocks, block_size,
                                                    swap, cache=cache)
        assert set(expected) == {r for r, *_ in reqs}
        for r, (first, end) in expected.items():
            assert fleet.first[r] == pytest.approx(first, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.end[r] == pytest.approx(end, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.preemptions[r] == preempted.get(r, 0), (rep, r)
            assert fleet.cached[r] == cache.cached[r], (rep, r)
        replica = fleet.replicas[0][rep]
        assert replica.kv_peak == peak <= kv_blocks
        assert replica.kv_used == 0 and not replica.swapped and not replica.waiting
        # the same entries, least recently used first, fitting beside the blocks held (none at the end)
        assert list(replica.entries.items()) == list(cache.entries.items())
        assert replica.cached_blocks == sum(replica.entries.values()) <= kv_blocks
    served = [r for r in range(len(arrival)) if not fleet.rejected[r]]
    assert sum(rep.tokens for rep in fleet.replicas[0]) == int(output[served].sum())  # tokens conserved
    for r in served:
        c = fleet.cached[r]
        assert c % block_size == 0 and c < prompt[r] and (c == 0 or session[r] >= 0)
        assert fleet.end[r] >= fleet.first[r] >= arrival[r]
