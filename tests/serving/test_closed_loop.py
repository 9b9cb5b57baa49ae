"""Closed-loop sessions (sessions: {closed_loop: true}): a later turn is sent think_time after the previous
turn's last token. A schedule worked by hand, the turns against the open-loop draws (common random
numbers), rejected and unfinished turns sending nothing more, Little's law and tokens, every router with
prefix caching, determinism and validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import simulator
from simulator.engine.calendar import Calendar, Environment
from simulator.errors import CapsimError
from simulator.serving.fleet import ClosedLoopFleet, ServiceRuntime, simulate
from simulator.serving.requests import request_table
from simulator.serving.spec import SyntheticRequests


class Constant:
    """Every prefill 0.5 s, every decode step 0.25 s, whatever the batch and contexts."""

    def prefill(self, n, tokens):
        return 0.5

    def decode(self, b):
        return 0.25, 0.0


def one_replica(max_batched_tokens=200):
    return ServiceRuntime("s", 1, Constant(), 1, max_batched_tokens, 100, 4)


# Sessions A (r0 then r3, 2 s of thought) and B (r1 then r2, 1 s), one replica running one request at a
# time; rows in their open-loop order, the later turns' arrival columns ignored.
HAND = dict(arrival=[0.0, 0.2, 1.2, 2.0], prompt=[10, 10, 20, 20], output=[3, 1, 2, 2], session=[0, 1, 1, 0],
            follows=[-1, -1, 1, 0], think=[0.0, 0.0, 1.0, 2.0])


def test_a_later_turn_arrives_think_time_after_the_last_token_by_hand():
    """r0 (A1): arrives 0, prefill 0 -> 0.5 (first token), two decode steps -> end 1.0.
    r1 (B1): arrives 0.2, waits for r0; prefill 1.0 -> 1.5, its only token: end 1.5.
    r2 (B2): arrives 1.5 + 1.0 = 2.5 to an idle replica: prefill -> 3.0, one step -> end 3.25.
    r3 (A2): arrives 1.0 + 2.0 = 3.0, waits for r2; prefill 3.25 -> 3.75, one step -> end 4.0.
    Open loop, A2 would have come at 2.0 and B2 at 1.2, both while the replica was busy."""
    d = HAND
    fleet = simulate([one_replica()], np.array(d["arrival"]), np.array(d["prompt"]), np.array(d["output"]),
                     session=np.array(d["session"]), follows=np.array(d["follows"]), think=np.array(d["think"]))
    assert isinstance(fleet, ClosedLoopFleet)
    assert fleet.arrival == [0.0, 0.2, 2.5, 3.0]
    assert fleet.first == [0.5, 1.5, 3.0, 3.75]
    assert fleet.end == [1.0, 1.5, 3.25, 4.0]
    for later, previous in ((2, 1), (3, 0)):  # exactly: the end plus the think time
        assert fleet.arrival[later] == fleet.end[previous] + d["think"][later]
    assert fleet.status() == ["completed"] * 4
    assert fleet._remaining == [0] and fleet.in_system == 0


def test_a_rejected_turn_sends_nothing_more():
    """B1 is over max_batched_tokens: rejected on arrival; B2 is never sent (NaN arrival, no replica), and
    counted out at once, so the service is done when A is."""
    d = copy.deepcopy(HAND)
    d["prompt"][1] = 150
    done = []
    env = Environment()
    fleet = ClosedLoopFleet(Calendar(env), [one_replica(max_batched_tokens=100)], np.array(d["arrival"]),
                            np.array(d["prompt"]), np.array(d["output"]), np.zeros(4, dtype=np.int64),
                            session=np.array(d["session"]), follows=np.array(d["follows"]),
                            think=np.array(d["think"]))
    fleet.on_done = lambda s, now: done.append(now)
    fleet.start()
    env.run()
    assert fleet.status() == ["completed", "rejected", "unsent", "completed"]
    assert np.isnan(fleet.arrival[2]) and fleet.replica[2] == -1
    assert fleet.arrival[3] == 3.0 and fleet.end[3] == 3.75  # A2 alone: prefill 3.0 -> 3.5, one step
    assert done == [3.75]


def test_a_turn_unfinished_at_the_end_sends_nothing_more():
    """Stopped at 1.2: r0 is done (A2's arrival is known: 3.0, not reached), r1 is being prefilled, so B2 is
    never sent."""
    d = HAND
    env = Environment()
    calendar = Calendar(env)
    fleet = ClosedLoopFleet(calendar, [one_replica()], np.array(d["arrival"]), np.array(d["prompt"]),
                            np.array(d["output"]), np.zeros(4, dtype=np.int64), session=np.array(d["session"]),
                            follows=np.array(d["follows"]), think=np.array(d["think"]))
    fleet.start()
    calendar.run(object, None, until=1.2)
    assert fleet.status() == ["completed", "unfinished", "unsent", "unfinished"]
    assert fleet.arrival[3] == 3.0 and fleet.replica[3] == -1 and np.isnan(fleet.arrival[2])


BASE = {
    "name": "closed",
    "seed": 11,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 2,
                  "scheduler": {"max_num_seqs": 8, "max_batched_tokens": 4096, "prefix_caching": True},
                  "router": "session-affinity"}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 120,
                  "arrival": {"process": "poisson", "rate_per_s": 2},
                  "prompt_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6, "max": 1500},
                  "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.5, "max": 600},
                  "sessions": {"turns": {"dist": "uniform", "low": 1, "high": 5},
                               "think_time": {"dist": "exponential", "mean": "5s"}, "closed_loop": True}}],
}


def scenario(closed=True, router="session-affinity", **scheduler):
    s = copy.deepcopy(BASE)
    s["requests"][0]["sessions"]["closed_loop"] = closed
    s["services"][0]["router"] = router
    s["services"][0]["scheduler"].update(scheduler)
    return s


def check_against_open_loop(closed, open_):
    """The same draws: ids, lengths and sessions; the first turns at their drawn times; each later turn
    sent at the previous one's end plus the think time drawn for it (the open-loop gap), so each turn's
    arrival is its open-loop one shifted by the latencies of the turns before it in its session."""
    for c in ("request_id", "prompt_tokens", "output_tokens", "session", "service"):
        assert closed[c].equals(open_[c]), c
    assert (closed["status"] == "completed").all()
    for s, turns in closed.groupby("session"):
        mine = open_[open_["session"] == s]
        a, e, o = turns["arrival_s"].to_numpy(), turns["end_s"].to_numpy(), mine["arrival_s"].to_numpy()
        assert a[0] == o[0]
        assert a[1:] == pytest.approx(e[:-1] + np.diff(o), rel=1e-12, abs=1e-9)
        assert a - o == pytest.approx(np.concatenate([[0.0], np.cumsum(e - a)[:-1]]), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("router", ["round-robin", "least-outstanding", "least-outstanding-tokens",
                                    "session-affinity"])
def test_turns_are_the_open_loop_draws_sent_after_each_answer(router):
    closed, open_ = (simulator.run(scenario(c, router), progress=False).requests for c in (True, False))
    check_against_open_loop(closed, open_)
    later = closed["arrival_s"].to_numpy() - open_["arrival_s"].to_numpy()
    assert (later >= 0).all() and (later > 0).any()


def test_a_fleet_near_zero_latency_gives_the_open_loop_arrivals():
    """Tiny requests on many replicas: each turn takes a few milliseconds, so the closed loop's arrivals are
    the open loop's within the latencies of a session's turns (and exactly so, shifted by them)."""
    s = scenario(router="least-outstanding", prefix_caching=False)
    s["services"][0]["replicas"] = 8
    s["requests"][0].update(prompt_tokens=8, output_tokens=1)
    closed, open_ = (simulator.run(scenario_with(s, c), progress=False).requests for c in (True, False))
    check_against_open_loop(closed, open_)
    shift = closed["arrival_s"].to_numpy() - open_["arrival_s"].to_numpy()
    assert 0 <= shift.min() and shift.max() < 5 * (closed["end_s"] - closed["arrival_s"]).max()


def test_a_slow_fleet_lowers_the_offered_load():
    """One replica, one request at a time, against the same draws: open loop piles the turns up behind each
    other; closed loop sends each after its answer, so the turns arrive later and wait less."""
    s = scenario(router="least-outstanding", max_num_seqs=1)
    s["services"][0]["replicas"] = 1
    res = {c: simulator.run(scenario_with(s, c), progress=False) for c in (True, False)}
    closed, open_ = (res[c].requests for c in (True, False))
    check_against_open_loop(closed, open_)
    c, o = (res[k].summary["services"]["chat"] for k in (True, False))
    assert closed["arrival_s"].max() > open_["arrival_s"].max()
    assert c["ttft_mean_s"] < o["ttft_mean_s"]
    assert c["requests"] == o["requests"] and c["requests_unsent"] == 0 and "requests_unsent" not in o


def scenario_with(s, closed):
    s = copy.deepcopy(s)
    s["requests"][0]["sessions"]["closed_loop"] = closed
    return s


def test_affinity_finds_every_later_turn_cached_even_without_thinking():
    """Closed loop, no think time: a later turn is sent at its previous turn's end, never before, so with room
    to spare affinity finds the previous turn's whole blocks every time (open loop at think 0 cannot)."""
    s = scenario()
    s["requests"][0]["sessions"]["think_time"] = 0
    req = simulator.run(s, progress=False).requests
    assert (req["status"] == "completed").all()
    for _, turns in req.groupby("session"):
        p, o, c = (turns[k].to_numpy() for k in ("prompt_tokens", "output_tokens", "cached_tokens"))
        assert (turns["arrival_s"].to_numpy()[1:] == turns["end_s"].to_numpy()[:-1]).all()
        assert turns["replica"].nunique() == 1 and c[0] == 0
        assert (c[1:] == 16 * ((p[:-1] + o[:-1] - 1) // 16)).all()


def test_littles_law_tokens_and_unsent_turns(fleets):
    """Prompts up to 3000 tokens against max_batched_tokens 1024 (no chunking): some turns are rejected, and
    their sessions' later turns are unsent: NaN arrival, no replica, counted apart in the summary."""
    s = scenario(max_batched_tokens=1024)
    s["requests"][0]["prompt_tokens"]["max"] = 3000
    res = simulator.run(s, progress=False)
    fleet, req, chat = fleets[-1], res.requests, res.summary["services"]["chat"]
    status = req["status"]
    assert (status == "rejected").any() and (status == "unsent").any()
    unsent = req[status == "unsent"]
    assert unsent["arrival_s"].isna().all() and (unsent["replica"] == -1).all() and unsent["end_s"].isna().all()
    for _, turns in req.groupby("session"):  # after a rejected turn, only unsent ones; never before
        st = turns["status"].tolist()
        cut = st.index("rejected") + 1 if "rejected" in st else len(st)
        assert set(st[:cut]) <= {"completed", "rejected"} and set(st[cut:]) <= {"unsent"}
    assert chat["requests_unsent"] == len(unsent) and chat["requests"] == len(req) - len(unsent)
    assert chat["requests"] == chat["requests_completed"] + chat["requests_rejected"]
    done = req[status == "completed"]
    span = done["end_s"].max() - req["arrival_s"].min()
    w = (done["end_s"] - done["arrival_s"]).mean()
    assert fleet.area / span == pytest.approx(len(done) / span * w, rel=1e-9)
    assert sum(r.tokens for r in fleet.replicas[0]) == done["output_tokens"].sum() == chat["output_tokens"]
    assert fleet.in_system == 0 and fleet._remaining == [0]


def test_disaggregated_chunked_paged_and_autoscaled_services_close_the_loop():
    disagg = scenario(router="least-outstanding", prefix_caching=False)
    disagg["services"][0]["disaggregated"] = {"prefill_replicas": 1, "decode_replicas": 1}
    paged = scenario(kv_allocation="paged", kv_tokens=6000)
    auto = scenario(max_num_seqs=2)
    auto["services"][0].update(replicas={"min": 0, "max": 3},
                               autoscale={"metric": "queue", "target": 2, "interval": "5s", "scale_down_delay": "20s"})
    auto["requests"][0]["sessions"]["think_time"] = "30s"
    for s in (disagg, scenario(chunked_prefill=True, max_batched_tokens=256), paged, auto):
        check_against_open_loop(*(simulator.run(scenario_with(s, c), progress=False).requests for c in (True, False)))
    assert simulator.run(auto, progress=False).summary["services"]["chat"]["scale_downs"] > 0


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    simulator.run(scenario(), progress=False).write(a)
    simulator.run(scenario(), progress=False).write(b)
    for name in ("requests.parquet", "timeline.parquet", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_the_table_keeps_the_open_loop_draws():
    """The closed-loop table is the open-loop one (rows, columns, values) plus follows and think_s."""
    spec = SyntheticRequests(**BASE["requests"][0])
    closed = request_table([spec], ["chat"], [np.random.default_rng(4)], ".")
    open_ = request_table([spec.model_copy(update={"sessions": spec.sessions.model_copy(
        update={"closed_loop": False})})], ["chat"], [np.random.default_rng(4)], ".")
    assert closed.drop(columns=["follows", "think_s"]).equals(open_)
    follows = closed["follows"].to_numpy()
    later = np.flatnonzero(follows >= 0)
    assert (closed["session"].to_numpy()[follows[later]] == closed["session"].to_numpy()[later]).all()
    assert (follows[later] < later).all()
    gaps = closed["arrival_s"].to_numpy()[later] - closed["arrival_s"].to_numpy()[follows[later]]
    assert gaps == pytest.approx(closed["think_s"].to_numpy()[later], rel=1e-9, abs=1e-9)
    assert len(later) == len(closed) - closed["session"].nunique()


@pytest.mark.parametrize(("value", "message"), [("sometimes", "valid boolean"), ([True], "valid boolean")])
def test_a_bad_closed_loop_is_refused_with_its_key(value, message):
    s = scenario()
    s["requests"][0]["sessions"]["closed_loop"] = value
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(s, progress=False)
    assert info.value.where == "requests[0].sessions.closed_loop"
    assert "\n" not in str(info.value)
