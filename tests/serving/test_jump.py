"""The closed-form jump equals the per-iteration reference loop, request by request, and a hand-worked
schedule of three requests has exactly the iteration boundaries worked out below."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.serving.fleet import ServiceRuntime, simulate
from tests.serving.reference import AffineCost, reference_replica


def service(cost, replicas=1, max_num_seqs=4, max_batched_tokens=64, kv_blocks=40, block_size=4,
            router="round-robin", chunked=False):
    return ServiceRuntime("s", replicas, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, router,
                          chunked)


workloads = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(1, 60), st.integers(1, 40)),  # arrival (ms), prompt, output
    min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(workloads, st.integers(1, 3), st.integers(1, 6), st.integers(2, 128), st.integers(8, 80),
       st.sampled_from([1, 4, 16]), st.floats(0.0, 1e-4), st.sampled_from(["round-robin", "least-outstanding"]),
       st.booleans())
def test_jump_equals_the_reference_loop(rows, replicas, max_num_seqs, max_tokens, kv_blocks, block_size, slope,
                                        router, chunked):
    # arrivals on a millisecond grid plus an irrational offset, so none falls exactly on a boundary
    arrival = np.array([r[0] for r in rows]) * 1e-3 * math.sqrt(2)
    prompt = np.array([r[1] for r in rows])
    output = np.array([r[2] for r in rows])
    cost = AffineCost(slope=slope)
    svc = service(cost, replicas, max_num_seqs, max_tokens, kv_blocks, block_size, router, chunked)
    fleet = simulate([svc], arrival, prompt, output)
    by_replica = {}
    for r in range(len(rows)):
        if fleet.rejected[r]:
            assert math.ceil((prompt[r] + output[r]) / block_size) > kv_blocks or (prompt[r] > max_tokens
                                                                                  and not chunked)
            continue
        by_replica.setdefault(fleet.replica[r], []).append((r, arrival[r], int(prompt[r]), int(output[r])))
    for rep, reqs in by_replica.items():
        expected = reference_replica(reqs, cost, max_num_seqs, max_tokens, kv_blocks, block_size, chunked)
        assert set(expected) == {r for r, *_ in reqs}  # every routed request is served
        for r, (first, end) in expected.items():
            assert fleet.first[r] == pytest.approx(first, rel=1e-9, abs=1e-12), (rep, r)
            assert fleet.end[r] == pytest.approx(end, rel=1e-9, abs=1e-12), (rep, r)
        assert fleet.replicas[0][rep].kv_peak <= kv_blocks
    # tokens are conserved: every generated token belongs to a finished request
    served = [r for r in range(len(rows)) if not fleet.rejected[r]]
    assert sum(rep.tokens for rep in fleet.replicas[0]) == int(output[served].sum())
    assert all(fleet.end[r] >= fleet.first[r] >= arrival[r] for r in served)


def test_three_requests_by_hand():
    """Constant costs: prefill 1 s + 0.1 s per prompt token / 100 ... worked out iteration by iteration.

    prefill(n, tokens) = 0.5 + tokens / 100; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum).
    A: arrives 0, prompt 100, output 3.  B: arrives 0.2, prompt 50, output 2.  C: arrives 5, prompt 20, output 1.
    max_num_seqs 2, max_batched_tokens 200, KV room for everything.

    t=0      A admitted: prefill(1, 100) = 1.5            -> t=1.5, A's first token (A has 1 of 3)
    t=1.5    B (waiting since 0.2) admitted: prefill(1, 50) = 1.0 -> t=2.5, B's first token
    t=2.5    decode b=2, contexts A 101 + B 51 = 152: 0.1 + 0.1 + 0.152 = 0.352 -> t=2.852; A 2/3, B 2/2 leaves
    t=2.852  decode b=1, context A 102: 0.1 + 0.05 + 0.102 = 0.252 -> t=3.104, A 3/3 leaves
    t=5      C arrives at an idle replica: prefill(1, 20) = 0.7 -> t=5.7, first token and end (output 1)
    """

    class Hand:
        def prefill(self, n, tokens):
            return 0.5 + tokens / 100

        def decode(self, b):
            return 0.1 + 0.05 * b, 0.001

    svc = service(Hand(), 1, max_num_seqs=2, max_batched_tokens=200, kv_blocks=1000, block_size=16)
    fleet = simulate([svc], np.array([0.0, 0.2, 5.0]), np.array([100, 50, 20]), np.array([3, 2, 1]))
    assert fleet.first == pytest.approx([1.5, 2.5, 5.7], abs=1e-12)
    assert fleet.end == pytest.approx([3.104, 2.852, 5.7], abs=1e-12)
    assert fleet.replicas[0][0].tokens == 6


def test_an_arrival_mid_stretch_is_admitted_at_the_next_boundary():
    """A decodes alone from t=1 in steps of 0.1 s (output 50); B arrives at 1.234 and is admitted at the
    boundary 1.3, so its first token is at 1.3 + its prefill 1.0."""

    class Flat:
        def prefill(self, n, tokens):
            return 1.0

        def decode(self, b):
            return 0.1, 0.0

    svc = service(Flat(), 1, max_num_seqs=4, max_batched_tokens=200, kv_blocks=1000, block_size=16)
    fleet = simulate([svc], np.array([0.0, 1.234]), np.array([10, 10]), np.array([50, 2]))
    assert fleet.first[1] == pytest.approx(2.3)
    # A: 3 steps before B's prefill, a 1 s pause, then 46 more; B decodes 1 step alongside A
    assert fleet.end[1] == pytest.approx(2.4)
    assert fleet.end[0] == pytest.approx(1.0 + 49 * 0.1 + 1.0)


class Hand:
    """prefill(n, tokens) = 0.5 + tokens / 100; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum);
    a mixed iteration of b decodes (contexts T) and a chunk of c tokens: prefill(1, c + b) + 0.001 T."""

    def prefill(self, n, tokens):
        return 0.5 + tokens / 100

    def decode(self, b):
        return 0.1 + 0.05 * b, 0.001

    def mixed(self, b, context, chunk):
        return self.prefill(1, chunk + b) + 0.001 * context


def test_three_requests_by_hand_with_chunked_prefill():
    """The three requests above with chunked prefill and a budget of 64 tokens per iteration (A's prompt
    of 100 is longer: it is no longer refused), max_num_seqs 4.

    t=0      A admitted, chunk 64 of 100, no decodes: 0.5 + 0.64 = 1.14     -> t=1.14
    t=1.14   B waits (arrived 0.2: one prompt at a time); A's last 36: 0.86 -> t=2.0, A's first token
    t=2.0    B admitted; A decodes (context 101), B's chunk min(50, 64 - 1) = 50:
             0.5 + 51/100 + 0.101 = 1.111                                  -> t=3.111: A 2/3, B's first token
    t=3.111  decode b=2, contexts A 102 + B 51: 0.1 + 0.1 + 0.153 = 0.353   -> t=3.464: A 3/3, B 2/2 leave
    t=5      C at an idle replica, one chunk of 20: 0.7                    -> t=5.7, first token and end
    """
    svc = service(Hand(), 1, max_num_seqs=4, max_batched_tokens=64, kv_blocks=1000, block_size=16, chunked=True)
    fleet = simulate([svc], np.array([0.0, 0.2, 5.0]), np.array([100, 50, 20]), np.array([3, 2, 1]))
    assert fleet.first == pytest.approx([2.0, 3.111, 5.7], abs=1e-12)
    assert fleet.end == pytest.approx([3.464, 3.464, 5.7], abs=1e-12)
    assert fleet.replicas[0][0].tokens == 6
    assert fleet.replicas[0][0].busy_s == pytest.approx(3.464 + 0.7, abs=1e-12)
    # without chunked prefill the 100-token prompt does not fit the 64-token iteration: refused
    plain = simulate([service(Hand(), 1, 4, 64, 1000, 16)], np.array([0.0]), np.array([100]), np.array([3]))
    assert plain.rejected == [True]


def test_a_full_budget_holds_the_chunk_until_a_decode_leaves():
    """Budget 3 with 3 sequences decoding leaves no room for a chunk: D's prompt waits for the first of
    them to finish, then goes through in chunks of 3 - 2 = 1 token."""
    svc = service(Hand(), 1, max_num_seqs=8, max_batched_tokens=3, kv_blocks=1000, block_size=16, chunked=True)
    arrival, prompt, output = np.array([0.0, 0.0, 0.0, 0.01]), np.array([1, 1, 1, 2]), np.array([3, 5, 5, 1])
    fleet = simulate([svc], arrival, prompt, output)
    reqs = [(r, arrival[r], int(prompt[r]), int(output[r])) for r in range(4)]
    expected = reference_replica(reqs, Hand(), 8, 3, 1000, 16, chunked=True)
    assert [fleet.first[r] for r in range(4)] == pytest.approx([expected[r][0] for r in range(4)], abs=1e-12)
    assert [fleet.end[r] for r in range(4)] == pytest.approx([expected[r][1] for r in range(4)], abs=1e-12)
    assert fleet.first[3] > fleet.end[0]  # D's prompt started only once A had left
