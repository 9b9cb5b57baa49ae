"""Preemptive policies on clusters of several pools (Hypothesis), and the hangs that led here.

A preemption must make room where the waiting job can go (its device type, one pool's nodes) or not
happen, and a job must run long enough to keep work before it is moved again (preemption.py). Each
run here is bounded (simulated time, suspensions, wall clock) and must end with every job that fits
a pool completed, times in order and no pool holding more devices than it has.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulator
from simulator.policies.base import PolicyContext
from simulator.policies.preemption import RunGuard, rotation_loses_work
from simulator.scenario import PreemptionSpec
from tests.helpers import SCHEDULING, assert_timeline_conserves_work, jobs

# The built-in policies that suspend running jobs. The Hypothesis test runs every policy of SCHEDULING
# and checks that the others never do, so a policy that starts preempting cannot stay off this list.
PREEMPTIVE = ("gavel", "gittins", "quota", "srtf", "themis", "tiresias")
DEVICES = ("h100-sxm", "h200-sxm", "a100-sxm-80gb")


def scenario(pools, policy: str, preemption: dict, options: dict) -> dict:
    return {
        "name": "multipool", "seed": 1,
        "cluster": {"pools": [{"name": f"p{i}", "device": device, "nodes": nodes, "devices_per_node": per}
                              for i, (device, nodes, per) in enumerate(pools)]},
        "scheduler": {"policy": policy, "preemption": preemption, **options},
    }


# The settings that hung (round or demotion shorter than restore + checkpoint) among ordinary ones.
PREEMPTION = [
    {"restore": 0},
    {"restore": 30},
    {"restore": 5, "checkpoint_interval": 20},
    {"restore": 30, "checkpoint_interval": 300},
    {"restore": 30, "checkpoint_interval": 300, "checkpoint_on_preempt": True},
    {"restore": 10, "checkpoint_interval": 60, "checkpoint_cost": 5},
]

# Examples per policy: a few seconds in all in CI; CAPSIM_FUZZ_EXAMPLES=300 for a longer search on demand.
EXAMPLES = int(os.environ.get("CAPSIM_FUZZ_EXAMPLES", 12))

# Per policy, option sets to draw from: aggressive ones (short rounds, low thresholds) on purpose.
OPTIONS = {
    "tiresias": [{"thresholds": [50, 500]}, {"thresholds": [500, 5000], "promote_after": 2000},
                 {"thresholds": [100], "promote_after": 100}],
    "gittins": [{"thresholds": [200], "refresh": 3}, {"thresholds": [50, 500], "promote_after": 300}],
    "gavel": [{"round": 60}, {"round": 300}],
    "themis": [{"lease": 60, "elastic": True}, {"lease": 300}, {"lease": 30, "fairness_knob": 0.5}],
    "quota": [{"quotas": {"x": 4}, "default_quota": 2}, {"quotas": {"x": 16, "y": 1}}],
    "srtf": [{}, {"estimates": {"error": "lognormal", "sigma": 1.0}}],
    "sjf": [{"estimates": {"error": "lognormal", "sigma": 1.0}}],
    "conservative-backfill": [{"estimates": {"source": "history", "default": 50}}],
}


def test_lists_name_only_builtin_policies():
    assert set(PREEMPTIVE) <= set(SCHEDULING) and set(OPTIONS) <= set(SCHEDULING)


@contextlib.contextmanager
def wall_clock_limit(seconds: float):
    """Fail a run that does not return in `seconds` of wall time (a hang within one simulated instant
    never reaches the bounds checked between steps). Where SIGALRM is missing, no limit."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"the run took more than {seconds} s of wall time")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_bounded(scen: dict, js: pd.DataFrame, horizon: float, max_suspensions: int, wall_s: float = 30.0):
    """Run in steps of simulated time; fail as soon as the clock passes `horizon` or the suspensions
    pass `max_suspensions` (a livelock: the old multi-pool Tiresias did 2.26 million in 120 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # jobs too large for any pool are rejected, with a warning
        sim = simulator.build(scen, jobs=js, progress=False)
        step = max(horizon / 50, 1.0)
        until = float(js["submit_time"].min())
        with wall_clock_limit(wall_s):
            while not sim.finished:
                until += step
                sim.run(until=until)
                suspensions = len(sim.recorder.interrupted)
                assert suspensions <= max_suspensions, f"{suspensions} suspensions by t = {sim.now:g} s"
                assert sim.finished or sim.now <= horizon, f"not finished at t = {sim.now:g} s"
        return sim, simulator.collect(sim)


def assert_invariants(sim, res, js: pd.DataFrame, pools, policy: str) -> None:
    out = res.jobs
    # Load-time rejections are exactly the jobs no pool of their type can ever hold.
    largest = {d: max((n * per for dev, n, per in pools if d is None or dev == d), default=0)
               for d in [None, *DEVICES]}
    fits = np.array([g <= largest[None if pd.isna(d) else d] for g, d in zip(js["gpus"], js["device"], strict=True)])
    status = out["status"].to_numpy()
    assert (status[~fits] == "rejected").all()
    if policy == "edf":  # admission control may also reject jobs that fit
        assert np.isin(status[fits], ["completed", "rejected"]).all()
    else:
        assert (status[fits] == "completed").all(), out[fits & (status != "completed")]
    done = out[out["status"] == "completed"]
    assert (done["start_time"] >= done["submit_time"]).all()
    assert (done["end_time"] >= done["start_time"]).all()
    # No policy makes a job faster than its full request allows (elastic jobs may only shrink).
    assert (done["end_time"] - done["start_time"] >= done["duration"] - 1e-6).all()
    # A job that names a device type ran on that type.
    constrained = js["device"].notna().to_numpy() & (status == "completed")
    assert (out["device"].to_numpy()[constrained] == js["device"].to_numpy()[constrained]).all()
    # No pool ever holds more devices than it has: every run, the cut ones included.
    starts, ends, devices, pool = sim.recorder.runs()
    assert np.isfinite(ends).all() and (ends >= starts).all()
    for i, (_, nodes, per) in enumerate(pools):
        mine = pool == i
        times = np.concatenate([starts[mine], ends[mine]])
        deltas = np.concatenate([devices[mine], -devices[mine]])
        order = np.lexsort((deltas, times))  # at one instant, releases before starts
        assert (np.cumsum(deltas[order]) <= nodes * per).all(), f"pool {i} oversubscribed"
    assert res.summary["gpu_utilization"] <= 1 + 1e-9
    if len(done):  # (every job rejected: no timeline)
        assert_timeline_conserves_work(res)
    if policy not in PREEMPTIVE:
        assert not sim.recorder.interrupted, f"{policy} suspended jobs but is not listed in PREEMPTIVE"


def bounds(js: pd.DataFrame, preemption: dict, options: dict) -> tuple[float, int]:
    """A generous simulated-time horizon and suspension budget for a run: every job one after another,
    each run paying a restore and a checkpoint many times over; far below what a livelock reaches."""
    per_run = (preemption.get("restore", 0) + preemption.get("checkpoint_interval", 0)
               + preemption.get("checkpoint_cost", 0) + options.get("round", 0) + options.get("lease", 0))
    horizon = float(js["submit_time"].max()) + 20 * float((js["duration"] + per_run).sum()) + 1000
    return horizon, 200 * len(js) + 200


pool_specs = st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(1, 4), st.sampled_from([1, 2, 4, 8])),
                      min_size=2, max_size=3)


@st.composite
def cases(draw, policy: str):
    pools = draw(pool_specs)
    present = sorted({device for device, _, _ in pools})
    # Sizes that fit some pools and not others: one device, a node of each pool, each pool whole, and
    # a few in between or beyond (rejected at load).
    sizes = sorted({1, 3, *(per for _, _, per in pools), *(n * per for _, n, per in pools),
                    max(n * per for _, n, per in pools) + 1})
    rows = draw(st.lists(st.tuples(st.integers(0, 600), st.sampled_from(sizes), st.integers(1, 300),
                                   st.sampled_from([None, *present]), st.integers(0, 2), st.sampled_from("xyz")),
                         min_size=1, max_size=25))
    # In submission order, as the run keeps them (its jobs frame is compared row by row).
    submit, gpus, duration, device, shrink, vc = zip(*sorted(rows, key=lambda row: row[0]), strict=True)
    js = pd.DataFrame({"job_id": [f"j{i}" for i in range(len(rows))], "submit_time": submit, "gpus": gpus,
                       "duration": duration, "device": pd.array(device, dtype="object"), "vc": vc, "user": vc,
                       "min_gpus": [max(1, g >> s) for g, s in zip(gpus, shrink, strict=True)],
                       "deadline": [s + 4 * d for s, d in zip(submit, duration, strict=True)]})
    preemption = draw(st.sampled_from(PREEMPTION))
    options = draw(st.sampled_from(OPTIONS.get(policy, [{}])))
    return pools, js, preemption, options


@pytest.mark.parametrize("policy", SCHEDULING)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_policy_finishes_on_random_multipool_clusters(policy, data):
    pools, js, preemption, options = data.draw(cases(policy))
    horizon, max_suspensions = bounds(js, preemption, options)
    sim, res = run_bounded(scenario(pools, policy, preemption, options), js, horizon, max_suspensions)
    assert_invariants(sim, res, js, pools, policy)


# -- the concrete cases that hung -------------------------------------------------------------------------

TWO_POOLS = [("h100-sxm", 4, 8), ("h100-sxm", 4, 4)]


def eights_and_thirty_twos(n: int = 100, seed: int = 0) -> pd.DataFrame:
    """The reported case: 100 jobs of 8 or 32 GPUs on pools of 4 x 8 and 4 x 4 H100 (the 32s fit only
    the first pool)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"job_id": [f"j{i}" for i in range(n)],
                         "submit_time": np.sort(rng.uniform(0, 3600, n)).round(),
                         "gpus": rng.choice([8, 32], n), "duration": rng.uniform(60, 7200, n).round(),
                         "device": pd.array([None] * n, dtype="object")})


@pytest.mark.parametrize("policy", PREEMPTIVE)
def test_jobs_that_fit_one_pool_of_two_do_not_livelock(policy):
    # Before: Tiresias and Gittins counted free devices over both pools and suspended jobs on the 4 x 4
    # pool for a 32-GPU job that only the 4 x 8 pool can hold; 2.26 million suspensions, no end.
    js = eights_and_thirty_twos()
    options = {"quota": {"quotas": {"x": 8}}}.get(policy, {})
    sim, res = run_bounded(scenario(TWO_POOLS, policy, {}, options), js.assign(vc="x"), horizon=1e6,
                           max_suspensions=2000)
    assert_invariants(sim, res, js, TWO_POOLS, policy)


@pytest.mark.parametrize(("policy", "options"), [
    ("gavel", {"round": 300}),
    ("themis", {"lease": 300}),
    ("tiresias", {"thresholds": [500, 5000], "promote_after": 2000}),
])
def test_rounds_no_longer_than_a_checkpoint_still_progress(policy, options):
    # Before: with rounds of 300 s, checkpoints every 300 s and a 30 s restore, a resumed job never ran
    # long enough to checkpoint before it was moved again, so no job that was ever moved finished.
    js = eights_and_thirty_twos()
    preemption = {"checkpoint_interval": 300, "restore": 30}
    sim, res = run_bounded(scenario(TWO_POOLS, policy, preemption, options), js, horizon=1e6, max_suspensions=5000)
    assert_invariants(sim, res, js, TWO_POOLS, policy)
    # Every preempted run of a resumed job lasted its restore and a checkpoint (RunGuard); a first run,
    # the checkpoint.
    cut = np.array(sim.recorder.interrupted).reshape(-1, 4)
    assert len(cut) and (cut[:, 1] - cut[:, 0] >= 300 - 1e-6).all()


def test_a_checkpoint_that_takes_time_is_written_before_a_move():
    # Found by the test above: with checkpoints every 60 s of work that take 5 s to write, a run keeps
    # work only after 65 s (75 s with a 10 s restore). Tiresias with a low threshold and promotions
    # moved the 3- and 8-GPU jobs after 60 s (70 s), just before each first checkpoint was written.
    js = pd.DataFrame({"job_id": [f"j{i}" for i in range(6)], "submit_time": [0] * 6, "gpus": [1, 1, 1, 3, 8, 8],
                       "duration": [1, 1, 1, 60, 60, 60], "device": pd.array([None] * 6, dtype="object")})
    pools = [("h100-sxm", 1, 2), ("h100-sxm", 2, 4)]
    scen = scenario(pools, "tiresias", {"restore": 10, "checkpoint_interval": 60, "checkpoint_cost": 5},
                    {"thresholds": [100], "promote_after": 100})
    sim, res = run_bounded(scen, js, horizon=5000, max_suspensions=100)
    assert_invariants(sim, res, js, pools, "tiresias")


# -- hand-worked schedules --------------------------------------------------------------------------------

def test_tiresias_preempts_only_on_the_pool_the_job_can_use():
    # Pools A (1 x 8 H100) and B (1 x 4 H200), one threshold at 40 device-seconds, no restore. c (4 GPUs,
    # H200 only) runs on B from 0, a and b (4 GPUs) fill A from 1 and 2; all are demoted by t = 12. d
    # (8 GPUs, 10 s) arrives at 20 in queue 0: only A can hold it, so it preempts a and b and leaves c
    # running on B, though c comes first among the victims (before: c and a were suspended, d still did
    # not fit, and b kept running).
    js = jobs(submit_time=[1, 2, 0, 20], gpus=[4, 4, 4, 8], duration=[100, 100, 100, 10],
              device=pd.array([None, None, "h200-sxm", None], dtype="object"))
    scen = scenario([("h100-sxm", 1, 8), ("h200-sxm", 1, 4)], "tiresias", {"restore": 0}, {"thresholds": [40]})
    out = simulator.run(scen, jobs=js, progress=False).jobs.set_index("job_id")
    assert out["preemptions"].to_dict() == {"a": 1, "b": 1, "c": 0, "d": 0}
    assert out.loc["d", ["start_time", "end_time"]].tolist() == [20, 30]
    # a ran 1-20 and b 2-20; both resume at 30 with the rest.
    assert out["end_time"].to_dict() == {"a": 111, "b": 112, "c": 100, "d": 30}


def test_tiresias_suspends_nobody_when_that_would_not_make_room():
    # Pools A (1 x 8 H100) and B (1 x 4 H200), threshold 40 device-seconds, no restore. a (4 GPUs) and b
    # (1 GPU), both H100 only, run on A from 0; a is demoted at 10, b only at 40. c (8 GPUs, 10 s; only
    # A can hold it) arrives at 30: suspending a would leave b on A, so nobody is suspended (before: the
    # free devices of B counted, and a was suspended for nothing). At 40 b is demoted too and c preempts
    # both: c runs 40-50, then a (40 s done) ends at 110 and b at 310.
    js = jobs(submit_time=[0, 0, 30], gpus=[4, 1, 8], duration=[100, 300, 10],
              device=pd.array(["h100-sxm", "h100-sxm", None], dtype="object"))
    scen = scenario([("h100-sxm", 1, 8), ("h200-sxm", 1, 4)], "tiresias", {"restore": 0}, {"thresholds": [40]})
    out = simulator.run(scen, jobs=js, progress=False).jobs.set_index("job_id")
    assert out["preemptions"].to_dict() == {"a": 1, "b": 1, "c": 0}
    assert out["start_time"].to_dict() == {"a": 0, "b": 0, "c": 40}
    assert out["end_time"].to_dict() == {"a": 110, "b": 310, "c": 50}


def test_a_job_runs_to_its_first_checkpoint_before_it_is_preempted():
    # One 8-GPU node, threshold 100 device-seconds, checkpoints every 50 s, restore 10 s. a (8 GPUs,
    # 200 s) is demoted at 12.5; b (8 GPUs, 10 s) arrives at 20 in queue 0, but a may be moved only once
    # it has checkpointed (50 s of work): b preempts it at 50 and runs 50-60; a keeps its 50 s and
    # resumes at 60: 10 s restore + 150 s of work, ending at 220.
    js = jobs(submit_time=[0, 20], gpus=[8, 8], duration=[200, 10])
    scen = scenario([("h100-sxm", 1, 8)], "tiresias", {"restore": 10, "checkpoint_interval": 50},
                    {"thresholds": [100]})
    out = simulator.run(scen, jobs=js, progress=False).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [50, 60]
    assert out.loc["a", ["end_time", "preemptions", "lost_gpu_s"]].tolist() == [220, 1, 0]


def test_run_guard_lengths():
    def guard(restore, interval=None, cost=0.0, on_preempt=False):
        return RunGuard(PolicyContext(rng=None, restore_s=restore, checkpoint_interval_s=interval, runtime_of=None,
                                      checkpoint_cost_s=cost, checkpoint_on_preempt=on_preempt))

    assert (guard(30, 300).fresh, guard(30, 300).resumed) == (300, 330)
    assert (guard(30, 300, cost=5).fresh, guard(30, 300, cost=5).resumed) == (305, 335)
    # Preemptions that lose nothing: a resumed job works at least as long as it restored.
    assert (guard(30, 300, on_preempt=True).fresh, guard(30, 300, on_preempt=True).resumed) == (0, 60)
    assert (guard(30).fresh, guard(30).resumed) == (0, 60)
    assert (guard(0).fresh, guard(0).resumed) == (0, 0)
    assert guard(0).wake == math.inf


def test_rotation_warning_names_the_run_a_job_needs():
    gavel = SimpleNamespace(name="gavel", rotation_s=lambda: 300.0)
    lossy = PreemptionSpec(checkpoint_interval=300, restore=30)
    message = rotation_loses_work(gavel, lossy)
    assert message is not None and "every 5m" in message and "5.5m" in message and "checkpoint_on_preempt" in message
    assert rotation_loses_work(gavel, PreemptionSpec(checkpoint_interval=240, restore=30)) is None
    assert rotation_loses_work(gavel, PreemptionSpec(checkpoint_interval=300, restore=30,
                                                     checkpoint_on_preempt=True)) is None
    assert "twice the restore" in rotation_loses_work(gavel, PreemptionSpec(restore=200))
    assert rotation_loses_work(SimpleNamespace(name="fifo", rotation_s=lambda: None), lossy) is None
