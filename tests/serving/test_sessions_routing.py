"""Sessions, prefix caching and the least-outstanding-tokens and session-affinity routers: schedules worked
by hand, the jump against the per-iteration reference with a prefix cache, routing picks against a brute
force over the requests table, conservation, Little's law, determinism and validation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.errors import CapsimError
from simulator.serving.fleet import ServiceRuntime, simulate
from simulator.serving.requests import request_table
from simulator.serving.spec import SyntheticRequests, TraceRequests
from tests.serving.reference import AffineCost, PrefixCache, reference_replica


class Hand:
    """prefill(n, tokens) = 0.5 + tokens / 100; decode(b) = 0.1 + 0.05 b + 0.001 x (contexts' sum)."""

    def prefill(self, n, tokens):
        return 0.5 + tokens / 100

    def decode(self, b):
        return 0.1 + 0.05 * b, 0.001


def service(cost, replicas, router, kv_blocks=100, block_size=4, chunked=False, max_num_seqs=4,
            max_batched_tokens=200, prefix_caching=True):
    return ServiceRuntime("s", replicas, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, router,
                          chunked, prefix_caching=prefix_caching)


# Two sessions of two turns: A (session 0) and B (session 1); B's second turn arrives first.
# r0: A1 at 0,    prompt 10, output 3      r2: B2 at 10,   prompt 20 + 2 + 8 = 30, output 2
# r1: B1 at 0.1,  prompt 20, output 2      r3: A2 at 10.2, prompt 10 + 3 + 7 = 20, output 2
TWO_SESSIONS = dict(arrival=[0.0, 0.1, 10.0, 10.2], prompt=[10, 20, 30, 20], output=[3, 2, 2, 2],
                    session=[0, 1, 1, 0])


def run_two_sessions(router):
    d = TWO_SESSIONS
    return simulate([service(Hand(), 2, router)], np.array(d["arrival"]), np.array(d["prompt"]),
                    np.array(d["output"]), session=np.array(d["session"]))


def test_two_sessions_by_hand_session_affinity():
    """r0 -> replica 0 (both empty: the first), r1 -> replica 1 (fewer outstanding).
    Replica 0: r0 prefill(1, 10) = 0.6 -> first 0.6; decodes at context 11 and 12: 0.161 + 0.162 -> end 0.923;
      A's entry: (10 + 3 - 1) // 4 = 3 blocks.
    Replica 1: r1 prefill(1, 20) = 0.7 -> first 0.8; decode at 21: 0.171 -> end 0.971; B's entry: 21 // 4 = 5.
    r2 (B) -> replica 1: cached 4 min(5, 29 // 4) = 20, prefills 10: 0.6 -> first 10.6; decode at 31: 0.181.
    r3 (A) -> replica 0: cached 4 min(3, 19 // 4) = 12, prefills 8: 0.58 -> first 10.78; decode at 21: 0.171."""
    fleet = run_two_sessions("session-affinity")
    assert fleet.replica == [0, 1, 1, 0]
    assert fleet.cached == [0, 0, 20, 12]
    for got, want in zip(fleet.first, [0.6, 0.8, 10.6, 10.78], strict=True):
        assert got == pytest.approx(want, rel=1e-12)
    for got, want in zip(fleet.end, [0.923, 0.971, 10.781, 10.951], strict=True):
        assert got == pytest.approx(want, rel=1e-12)


def test_two_sessions_by_hand_least_outstanding_misses():
    """The same requests by fewest outstanding: r2 (B) -> replica 0 (both idle: the first), which holds A's
    context only: prefill(1, 30) = 0.8 -> first 10.8, end 10.8 + 0.181; r3 (A) -> replica 1 (replica 0 has
    one outstanding), which holds B's only: prefill(1, 20) = 0.7 -> first 10.9, end 10.9 + 0.171."""
    fleet = run_two_sessions("least-outstanding")
    assert fleet.replica == [0, 1, 0, 1]
    assert fleet.cached == [0, 0, 0, 0]
    assert fleet.first[2:] == pytest.approx([10.8, 10.9], rel=1e-12)
    assert fleet.end[2:] == pytest.approx([10.981, 11.071], rel=1e-12)


@pytest.mark.parametrize(("kv_blocks", "cached"), [(12, 0), (13, 12)])
def test_an_admission_evicts_the_cache_it_needs(kv_blocks, cached):
    """One replica, 4-token blocks. A1 (prompt 10, output 3) leaves an entry of 3 blocks; X (no session,
    prompt 30 + output 10 = 10 blocks) is admitted at 5 and leaves 12 - 10 = 2 blocks unreserved on a
    12-block cache: A's entry is evicted, and A2 at 20 prefills its whole prompt; on 13 blocks it stays
    and A2 finds 4 min(3, 19 // 4) = 12 tokens."""
    fleet = simulate([service(Hand(), 1, "round-robin", kv_blocks=kv_blocks)], np.array([0.0, 5.0, 20.0]),
                     np.array([10, 30, 20]), np.array([3, 10, 2]), session=np.array([0, -1, 0]))
    assert fleet.cached == [0, 0, cached]
    assert fleet.first[2] == pytest.approx(20 + 0.5 + (20 - cached) / 100, rel=1e-12)


workloads = st.lists(  # arrival (ms), new prompt tokens, output, session (-1: none)
    st.tuples(st.integers(0, 4000), st.integers(1, 40), st.integers(1, 30), st.integers(-1, 5)),
    min_size=1, max_size=35)


def session_requests(rows):
    """Rows in arrival order; a session's turn prompts extend its previous turn's prompt and output, except
    those drawing more than 30 new tokens, which are that many alone (a request list's session may do so:
    then the cached part is cut to the prompt's whole blocks before its last token)."""
    rows = sorted(rows, key=lambda r: r[0])
    arrival, prompt, output, session, context = [], [], [], [], {}
    for ms, new, out, s in rows:
        p = context.get(s, 0) + new if s >= 0 and new <= 30 else new
        if s >= 0:
            context[s] = p + out
        arrival.append(ms * 1e-3 * math.sqrt(2))  # irrational: no arrival falls on a boundary
        prompt.append(p)
        output.append(out)
        session.append(s)
    return np.array(arrival), np.array(prompt), np.array(output), np.array(session)


@settings(max_examples=200, deadline=None)
@given(workloads, st.integers(1, 3), st.integers(1, 6), st.integers(16, 160), st.integers(10, 120),
       st.sampled_from([1, 4, 16]), st.floats(0.0, 1e-4),
       st.sampled_from(["round-robin", "least-outstanding-tokens", "session-affinity"]), st.booleans())
def test_prefix_caching_jump_equals_the_reference_loop(rows, replicas, max_num_seqs, max_tokens, kv_blocks,
                                                       block_size, slope, router, chunked):
    arrival, prompt, output, session = session_requests(rows)
    cost = AffineCost(slope=slope)
    svc = service(cost, replicas, router, kv_blocks, block_size, chunked, max_num_seqs, max_tokens)
    fleet = simulate([svc], arrival, prompt, output, session=session)
    by_replica = {}
    for r in range(len(arrival)):
        if not fleet.rejected[r]:
            by_replica.setdefault(fleet.replica[r], []).append((r, arrival[r], int(prompt[r]), int(output[r])))
    sessions = {r: int(session[r]) for r in range(len(arrival))}
    for reqs in by_replica.values():
        cache = PrefixCache(sessions, block_size, kv_blocks)
        expected = reference_replica(reqs, cost, max_num_seqs, max_tokens, kv_blocks, block_size, chunked, cache)
        assert set(expected) == {r for r, *_ in reqs}
        for r, (first, end) in expected.items():
            assert fleet.first[r] == pytest.approx(first, rel=1e-9, abs=1e-12)
            assert fleet.end[r] == pytest.approx(end, rel=1e-9, abs=1e-12)
            assert fleet.cached[r] == cache.cached[r]
    served = [r for r in range(len(arrival)) if not fleet.rejected[r]]
    assert sum(rep.tokens for rep in fleet.replicas[0]) == int(output[served].sum())
    for r in served:  # a hit is whole blocks of an earlier turn of its session, and leaves a token to prefill
        c = fleet.cached[r]
        assert c % block_size == 0 and c < prompt[r]
        assert c == 0 or session[r] >= 0
    # every replica's entries fit in the blocks nobody reserves (nothing is reserved at the end)
    assert all(rep.cached_blocks <= rep.kv_blocks - rep.kv_used for rep in fleet.replicas[0])


# -- in scenario runs ------------------------------------------------------------------------------------
BASE = {
    "name": "sessions",
    "seed": 11,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 4,
                  "scheduler": {"max_num_seqs": 32, "max_batched_tokens": 16384, "prefix_caching": True},
                  "router": "session-affinity"}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 150,
                  "arrival": {"process": "poisson", "rate_per_s": 3.0},
                  "prompt_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6, "max": 1500},
                  "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.6, "max": 800},
                  "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 5},
                               "think_time": {"dist": "exponential", "mean": "15s"}}}],
}


def scenario(router="session-affinity", **scheduler):
    s = copy.deepcopy(BASE)
    s["services"][0]["router"] = router
    s["services"][0]["scheduler"].update(scheduler)
    return s


def test_synthetic_sessions_extend_their_previous_turn():
    spec = SyntheticRequests(**BASE["requests"][0])
    table = request_table([spec], ["chat"], [np.random.default_rng(4)], ".")
    assert table["session"].nunique() == 150 and table["session"].min() == 0
    counts = table.groupby("session").size()
    assert counts.between(1, 5).all()
    for _, turns in table.groupby("session"):
        p, o, a = (turns[c].to_numpy() for c in ("prompt_tokens", "output_tokens", "arrival_s"))
        assert (p[1:] > p[:-1] + o[:-1]).all()  # the previous prompt and output, then new tokens
        assert (np.diff(a) >= 0).all()
    firsts = table.drop_duplicates("session")["arrival_s"].to_numpy()
    assert (np.diff(firsts) >= 0).all()  # sessions start in the arrival process's order


def test_session_affinity_hits_every_later_turn_when_nothing_is_evicted():
    """Turns a minute apart, short answers, a cache far larger than 40 contexts: every later turn finds its
    previous turn's whole blocks on the replica it returns to."""
    s = scenario()
    s["requests"][0].update(requests=40, sessions={"turns": 3, "think_time": "60s"})
    req = simulator.run(s, progress=False).requests
    assert (req["status"] == "completed").all()
    for _, turns in req.groupby("session"):
        assert turns["replica"].nunique() == 1
        p, o, c = (turns[k].to_numpy() for k in ("prompt_tokens", "output_tokens", "cached_tokens"))
        assert (turns["end_s"].to_numpy()[:-1] < turns["arrival_s"].to_numpy()[1:]).all()
        assert c[0] == 0
        assert (c[1:] == 16 * ((p[:-1] + o[:-1] - 1) // 16)).all()


def test_affinity_makes_the_cache_hit_and_the_summary_says_so():
    res = {router: simulator.run(scenario(router), progress=False)
           for router in ("least-outstanding", "session-affinity")}
    for r in res.values():
        svc, done = r.summary["services"]["chat"], r.requests[r.requests["status"] == "completed"]
        assert svc["cached_tokens"] == done["cached_tokens"].sum()
        assert svc["prefix_hits"] == (done["cached_tokens"] > 0).sum()
        assert svc["prefix_hit_rate"] == pytest.approx(done["cached_tokens"].sum() / done["prompt_tokens"].sum())
    aff, least = (res[k].summary["services"]["chat"] for k in ("session-affinity", "least-outstanding"))
    assert aff["prefix_hit_rate"] > 1.5 * least["prefix_hit_rate"]
    assert aff["ttft_p50_s"] < least["ttft_p50_s"]


def test_littles_law_and_tokens_with_sessions_and_prefix_caching(fleets):
    res = simulator.run(scenario(chunked_prefill=True, max_batched_tokens=512), progress=False)
    fleet = fleets[-1]
    req = res.requests
    done = req[req["status"] == "completed"]
    assert len(done) == len(req)
    span = done["end_s"].max() - req["arrival_s"].min()
    w = (done["end_s"] - done["arrival_s"]).mean()
    assert fleet.area / span == pytest.approx(len(done) / span * w, rel=1e-9)
    assert sum(r.tokens for r in fleet.replicas[0]) == done["output_tokens"].sum()
    assert all(r.kv_peak <= r.kv_blocks for r in fleet.replicas[0])
    assert (done["cached_tokens"] > 0).any()


def test_same_seed_same_requests_with_sessions():
    a, b = (simulator.run(scenario(), progress=False).requests for _ in range(2))
    assert a.equals(b)
    assert list(a.columns[-2:]) == ["session", "cached_tokens"]


def test_least_outstanding_tokens_picks_the_fewest_prompt_tokens():
    """Brute force over the requests table: at each arrival, each replica's prompt tokens of the requests
    routed to it before and not finished; the pick is the first least."""
    req = simulator.run(scenario("least-outstanding-tokens"), progress=False).requests
    routed = req[req["replica"] >= 0].sort_values(["arrival_s", "request_id"], kind="stable")
    arrival, end = routed["arrival_s"].to_numpy(), routed["end_s"].to_numpy()
    prompt, replica = routed["prompt_tokens"].to_numpy(), routed["replica"].to_numpy()
    assert not np.isin(arrival, end).any()  # no arrival at an instant a request leaves: the order is plain
    for i in range(len(routed)):
        earlier = np.arange(i)
        live = earlier[end[earlier] > arrival[i]]
        load = np.bincount(replica[live], weights=prompt[live], minlength=4)
        assert replica[i] == int(np.argmin(load)), i
    assert len(np.unique(replica)) == 4


def test_a_request_list_with_a_session_column(tmp_path):
    (tmp_path / "r.csv").write_text("arrival_s,prompt_tokens,output_tokens,session\n"
                                    "0,100,10,7\n1,50,10,\n30,200,10,7\n31,60,10,3\n")
    spec = TraceRequests(kind="trace", service="chat", format="csv", path="r.csv")
    table = request_table([spec], ["chat"], [None], tmp_path)
    assert table["session"].tolist() == [1, -1, 1, 0]  # ids renumbered per source, blank: none
    pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [5, 6], "output_tokens": [1, 2],
                  "session": [None, 4.0]}).to_parquet(tmp_path / "r.parquet")
    both = request_table([spec, TraceRequests(kind="trace", service="chat", format="parquet", path="r.parquet")],
                         ["chat"], [None, None], tmp_path)
    assert sorted(set(both["session"])) == [-1, 0, 1, 2]  # the second source's session is a new one
    s = scenario("session-affinity")
    s["requests"] = [{"kind": "trace", "service": "chat", "format": "csv", "path": str(tmp_path / "r.csv")}]
    req = simulator.run(s, progress=False).requests
    assert req.loc[2, "replica"] == req.loc[0, "replica"] and req.loc[2, "cached_tokens"] == 96
    (tmp_path / "bad.csv").write_text("arrival_s,prompt_tokens,output_tokens,session\n0,100,10,-2\n")
    with pytest.raises(CapsimError, match="line 2: column 'session'"):
        request_table([TraceRequests(kind="trace", service="chat", format="csv", path="bad.csv")], ["chat"],
                      [None], tmp_path)


@pytest.mark.parametrize(("change", "where", "message"), [
    (lambda s: s["requests"][0].pop("sessions"), "services[0].router", "session-affinity needs requests with"),
    (lambda s: s["services"][0]["scheduler"].update(kv_allocation="paged", chunked_prefill=True),
     "services[0].scheduler", "prefix_caching with kv_allocation: paged goes without chunked_prefill"),
    (lambda s: s["services"][0].update(replicas=2, disaggregated={"prefill_replicas": 1, "decode_replicas": 1}),
     "services[0]", "no prefix_caching"),
    (lambda s: s["requests"][0]["sessions"].update(think_time={"dist": "lognormal", "median": 3}),
     "requests[0].sessions.think_time", "lognormal needs sigma"),
    (lambda s: s["requests"][0]["sessions"].update(turns=0), "requests[0].sessions.turns", "greater than or equal"),
    (lambda s: s["services"][0].update(router="sticky"), "services[0].router", "session-affinity"),
])
def test_bad_session_keys_are_refused_with_their_key(change, where, message):
    s = scenario()
    change(s)
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(s, progress=False)
    assert info.value.where == where
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("turns", [3, {"dist": "uniform", "low": 1, "high": 5}])
def test_the_size_estimate_counts_every_turn(turns):
    from simulator.scenario import scenario_from_data
    from simulator.workload.size import estimate_size

    s = scenario()
    s["requests"][0]["sessions"]["turns"] = turns
    size = estimate_size(scenario_from_data(s))
    table = request_table(scenario_from_data(s).requests, ["chat"], [np.random.default_rng(2)], ".")
    assert size.requests == 150 * 3
    assert len(table) == pytest.approx(size.requests, rel=0.1)
