"""The shortcuts that keep tiresias' and easy-backfill's passes cheap under a long queue change no result.

* Tiresias (and gittins) skip a job whose request is at least one that failed earlier in the pass on the
  same constraints (`remember_failures`): sound only because, on plain node pools, failing to place is
  monotone in the request's size (checked on the allocator directly), and the memo is forgotten when a
  preemption gives room back. Runs with the memo on and off must match exactly.
* EASY backfilling finds the head's shadow time by walking the running jobs kept by predicted end
  (`EasyBackfill.shadow`) instead of building a profile of all of them: runs must match the profile's
  answer exactly.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import simulator
from simulator.cluster.pool import Pool
from simulator.errors import CapsimError
from simulator.policies.backfill import EasyBackfill
from simulator.policies.tiresias import Tiresias

DEVICES = ("h100-sxm", "a100-sxm-80gb")


@settings(max_examples=200, deadline=None)
@given(nodes=st.integers(1, 6), per_node=st.sampled_from([1, 2, 4, 8]), leaf=st.sampled_from([0, 2]),
       domain=st.sampled_from([0, 2, 3]), spread=st.booleans(),
       taken=st.lists(st.integers(1, 24), max_size=12))
def test_placement_failure_is_monotone_in_size_on_a_node_pool(nodes, per_node, leaf, domain, spread, taken):
    pool = Pool("p", "h100-sxm", nodes, per_node, leaf_size=leaf, domain_size=domain)
    for devices in taken:  # some pattern of partly used nodes
        pool.allocate(devices, spread)
    placed = []
    for devices in range(1, pool.capacity + 2):
        fits = pool.fits(devices)
        alloc = pool.allocate(devices, spread)
        assert (alloc is not None) == fits  # the placement rules only choose once `fits` says there is room
        placed.append(fits)
        if alloc is not None:
            pool.release(alloc)
    # a failure at some size means a failure at every larger size
    assert placed == sorted(placed, reverse=True)


def _jobs(draw_rows, pinned: bool) -> pd.DataFrame:
    rows = sorted(draw_rows)
    frame = pd.DataFrame({"job_id": [f"j{i}" for i in range(len(rows))],
                          "submit_time": [r[0] for r in rows], "gpus": [r[1] for r in rows],
                          "duration": [r[2] for r in rows]})
    frame["device"] = pd.array([DEVICES[r[3]] if pinned and r[3] < 2 else None for r in rows], dtype="object")
    return frame


# Bursts of jobs of mixed sizes on one or two small pools, often pinned to one pool's device: the queue
# stays long and passes meet free devices that only some requests fit.
ROWS = st.lists(st.tuples(st.integers(0, 200), st.sampled_from([1, 1, 2, 3, 4, 6, 8, 12, 16]),
                          st.integers(5, 600), st.integers(0, 3)), min_size=1, max_size=50)
POOLS = st.lists(st.tuples(st.integers(1, 2), st.sampled_from([4, 8])), min_size=1, max_size=2)


def _run(pools, frame, policy, scheduler) -> tuple:
    scen = {"name": "shortcut", "seed": 1,
            "cluster": {"pools": [{"name": f"p{i}", "device": DEVICES[i % 2], "nodes": n, "devices_per_node": per}
                                  for i, (n, per) in enumerate(pools)]},
            "scheduler": {"policy": policy, **scheduler}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jobs too large for their pools are rejected with a warning
        try:
            res = simulator.run(scen, jobs=frame, progress=False)
        except CapsimError as e:  # tiresias with no restore can livelock: then both must, alike
            return None, str(e)
    return res.jobs, res.summary


def _same(a, b) -> None:
    if a[0] is None or b[0] is None:
        assert a == b
    else:
        pd.testing.assert_frame_equal(a[0], b[0])
        assert a[1] == b[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Two 4-GPU pools: five 1-GPU jobs pinned to the first, one to the second. The fifth finds the first pool
# full; the last job must still be tried, on its own pool (a memo keyed without the device skipped it).
@example(rows=[(0, 1, 5, 0)] * 5 + [(0, 1, 5, 1)], pools=[(1, 4), (1, 4)], pinned=True, policy="tiresias",
         thresholds=[50], restore=0)
@given(rows=ROWS, pools=POOLS,
       pinned=st.booleans(), policy=st.sampled_from(["tiresias", "gittins"]),
       thresholds=st.sampled_from([[50], [200, 2000]]), restore=st.sampled_from([0, 20]))
def test_tiresias_skipping_requests_a_smaller_one_ruled_out_changes_nothing(rows, pools, pinned, policy, thresholds,
                                                                            restore):
    frame = _jobs(rows, pinned)
    scheduler = {"thresholds": thresholds, "scan_depth": 8, "preemption": {"restore": restore}}
    with_memo = _run(pools, frame, policy, scheduler)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Tiresias, "remember_failures", False)
        without = _run(pools, frame, policy, scheduler)
    _same(with_memo, without)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, pools=POOLS,
       pinned=st.booleans(), noisy=st.booleans())
def test_easy_backfill_shadow_matches_the_profile(rows, pools, pinned, noisy):
    frame = _jobs(rows, pinned)
    scheduler = {"backfill_depth": 8, "estimates": {"error": "lognormal"} if noisy else {}}
    kept = _run(pools, frame, "easy-backfill", scheduler)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(EasyBackfill, "shadow", lambda self, now, devices: self.profile(now).first_time_with(devices))
        profiled = _run(pools, frame, "easy-backfill", scheduler)
    _same(kept, profiled)
