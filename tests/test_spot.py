"""Spot capacity (features/spot.py): burst pools whose nodes are interrupted, with notice, and the jobs
on them restarted with the checkpoint model; the cloud cost split per site."""

import math
import warnings

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.features.spot import SpotInterruptions
from tests.helpers import jobs, scenario_dict

HOUR = 3600.0


def spot_scenario(spot=None, burst=((4, 8),), **preemption):
    """An owned pool p0 (1 x 8 H100) and burst pools p1.. (on demand after 0 s), p1 spot."""
    scen = scenario_dict([(1, 8), *burst], [], "fifo", **({"preemption": preemption} if preemption else {}))
    for pool, price in zip(scen["cluster"]["pools"][1:], [2.0, 6.0, 9.0], strict=False):
        pool.update(burst_after=0, usd_per_device_hour=price)
    scen["spot"] = [{"pool": "p1", **(spot or {"node_mtbi": "10h"})}]
    return scen


def run(scen, js, gaps=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = simulator.build(scen, jobs=js, progress=False)
        if gaps is not None:  # interruptions at chosen times instead of drawn ones
            source = next(s for s in sim.sources if isinstance(s, SpotInterruptions))
            it = iter(gaps)
            source.next_gap = lambda k: next(it, 1e12)
        sim.run()
        return simulator.collect(sim)


def test_interruptions_match_the_poisson_expectation_over_busy_node_hours():
    # 1,200 8-GPU jobs of about 4 h keep the 4-node spot pool busy for about 1,000 h; each busy node is
    # interrupted at 1/10 h. Jobs keep their work (no periodic checkpoints), so only the count matters.
    rng = np.random.default_rng(5)
    n = 1200
    js = jobs(submit_time=np.sort(rng.uniform(0, 1000 * HOUR, n)), gpus=[8] * n,
              duration=rng.exponential(4 * HOUR, n))
    res = run(spot_scenario({"node_mtbi": "10h", "notice": 0}), js)
    busy_node_hours = res.summary["spot"]["cloud_cost"]["all"]["spot_gpu_hours"] / 8
    expected = busy_node_hours / 10.0
    count = res.summary["spot"]["interruptions"]
    assert expected > 300  # enough events for the bound to mean something
    # Within 4 standard deviations of a Poisson count (a false alarm about once in 16,000 runs).
    assert abs(count - expected) <= 4 * math.sqrt(expected)
    assert res.summary["spot"]["job_interruptions"] == res.jobs["spot_interruptions"].sum() == count
    assert (res.jobs["status"] == "completed").all()


def test_a_reclaimed_job_keeps_its_last_checkpoint_and_restarts_after_its_restore():
    # a holds the owned node; b (8 GPUs, 10 h of work) bursts to the spot node at 0. Checkpoints every
    # hour of work cost 60 s; the notice (30 s) is too short to write one, so at the reclaim (5,030 s)
    # b keeps the one checkpoint it finished at 3,660 s and wastes 1,370 s. It restarts at once on a
    # replacement node, restores 600 s, and does the other 9 h with 9 checkpoints: 32,940 s.
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[20 * HOUR, 10 * HOUR])
    scen = spot_scenario({"node_mtbi": "1000h", "notice": "30s"}, burst=((1, 8),), checkpoint_interval="1h",
                         checkpoint_cost=60, restore=600)
    res = run(scen, js, gaps=[5000.0])
    b = res.jobs.set_index("job_id").loc["b"]
    assert b["spot_interruptions"] == 1 and b["preemptions"] == 1
    assert b["start_time"] == 0.0 and b["pool"] == "p1"  # start_time is its first start
    assert b["end_time"] == pytest.approx(5030.0 + 600.0 + 32400.0 + 9 * 60.0)
    assert b["lost_gpu_s"] == pytest.approx(8 * (5030.0 - 3660.0))
    # With a 2-minute notice it checkpoints before the reclaim: nothing lost.
    scen["spot"][0]["notice"] = "2m"
    graceful = run(scen, js, gaps=[5000.0]).jobs.set_index("job_id").loc["b"]
    assert graceful["spot_interruptions"] == 1 and graceful["lost_gpu_s"] == 0.0


def test_the_cost_split_is_device_hours_times_prices_from_the_job_table():
    # A cloud region with a spot (p1, $2) and an on-demand pool (p2, $6); spill-after prefers spot.
    rng = np.random.default_rng(2)
    n = 80
    js = jobs(submit_time=np.sort(rng.uniform(0, 48 * HOUR, n)), gpus=rng.choice([1, 4, 8], n),
              duration=rng.exponential(3 * HOUR, n), home_site=["dc"] * n)
    scen = spot_scenario({"node_mtbi": "1000000h"}, burst=((2, 8), (2, 8)))
    scen["sites"] = [{"name": "dc", "pools": ["p0"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 300},
                     {"name": "cloud", "pools": ["p1", "p2"], "usd_per_kwh": 0.0, "gco2e_per_kwh": 0}]
    for prefer, first in (("spot", "p1"), ("on-demand", "p2")):
        scen["sites_policy"] = {"policy": "spill-after", "after": "1h", "prefer": prefer}
        res = run(scen, js)
        j = res.jobs
        assert (j["spot_interruptions"] == 0).all()
        hours = (j["gpus"] * (j["end_time"] - j["start_time"]) / HOUR).groupby(j["pool"]).sum()
        split = res.summary["spot"]["cloud_cost"]["cloud"]
        assert split["spot_usd"] == pytest.approx(hours.get("p1", 0.0) * 2.0, rel=1e-9)
        assert split["on_demand_usd"] == pytest.approx(hours.get("p2", 0.0) * 6.0, rel=1e-9)
        assert split["spot_gpu_hours"] == pytest.approx(hours.get("p1", 0.0), rel=1e-9)
        assert hours.get(first, 0.0) > hours.get({"p1": "p2", "p2": "p1"}[first], 0.0)  # the preferred pool first


def test_without_a_spot_section_nothing_changes():
    rng = np.random.default_rng(1)
    js = jobs(submit_time=np.sort(rng.uniform(0, 24 * HOUR, 50)), gpus=[8] * 50, duration=[2 * HOUR] * 50)
    scen = spot_scenario()
    del scen["spot"]
    res = run(scen, js)
    assert "spot" not in res.summary and "spot_interruptions" not in res.jobs.columns


@pytest.mark.parametrize("spot, where, message", [
    ({"pool": "p9", "node_mtbi": "1h"}, "spot[0].pool", "no pool named 'p9'"),
    ({"pool": "p0", "node_mtbi": "1h"}, "spot[0].pool", "spot capacity is rented"),
    ({"pool": "p1"}, "spot[0]", "one of node_mtbi or interruptions_per_node_hour"),
    ({"pool": "p1", "node_mtbi": "1h", "interruptions_per_node_hour": 1}, "spot[0]", "one of node_mtbi"),
    ({"pool": "p1", "node_mtbi": "10s"}, "spot[0].node_mtbi", "never finish"),
])
def test_bad_spot_settings_are_refused_with_their_key_path(spot, where, message):
    scen = spot_scenario(checkpoint_interval="1h")
    scen["spot"] = [spot]
    with pytest.raises(CapsimError) as err:
        run(scen, jobs(submit_time=[0.0], gpus=[8], duration=[HOUR]))
    assert message in str(err.value) and where in str(err.value)
    assert "\n" not in str(err.value).strip()


def capacity_run(steps, js):
    """An owned p0 (1 x 8) and spot p1 (4 x 8) with no random interruptions, only `steps` of the
    provider's capacity; a 2-minute notice, too short for a 300 s checkpoint (none is due in 100 h of
    work: the work is lost)."""
    scen = spot_scenario({"capacity": steps, "notice": "2m"}, checkpoint_interval="100h", checkpoint_cost=300,
                         restore=0)
    return run(scen, js)


def test_a_capacity_drop_withdraws_idle_nodes_then_reclaims_the_highest_busy_ones():
    # a fills p0; b, c, d take p1's nodes 0, 1, 2 at 0 (node 3 idle). At 2 h the provider's capacity
    # falls to 2 nodes: idle node 3 is withdrawn at once, busy node 2 gets the notice and is reclaimed
    # at 7,320 s: d is evicted, losing its 7,320 s (no checkpoint), and cannot start again (the two
    # usable nodes are b's and c's). e, submitted at 3 h, cannot start either. At 5 h the capacity is
    # 4 again: node 2, then node 3 come back; d (queued first) restarts there at 18,000 s for its 10 h,
    # e beside it for its 1 h.
    js = jobs(submit_time=[0.0, 0.0, 0.0, 0.0, 3 * HOUR], gpus=[8] * 5,
              duration=[10 * HOUR] * 4 + [HOUR])
    res = capacity_run([{"at": "2h", "nodes": 2}, {"at": "5h", "nodes": 4}], js)
    j = res.jobs.set_index("job_id")
    assert j["pool"].to_dict() == {"a": "p0", "b": "p1", "c": "p1", "d": "p1", "e": "p1"}
    assert j["spot_interruptions"].to_dict() == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 0}
    assert j["end_time"].to_dict() == {"a": 36000.0, "b": 36000.0, "c": 36000.0, "d": 54000.0, "e": 21600.0}
    assert j.loc["e", "start_time"] == 18000.0
    assert j.loc["d", "lost_gpu_s"] == 8 * 7320.0
    spot = res.summary["spot"]
    assert (spot["interruptions"], spot["capacity_reclaims"], spot["job_interruptions"]) == (0, 1, 1)
    # Device-hours are conserved: the spot pool billed b's and c's 10 h, d's lost 7,320 s and its 10 h
    # again, and e's hour, 8 devices each; that is the work done plus the work lost.
    billed = spot["cloud_cost"]["all"]["spot_gpu_hours"]
    assert billed == pytest.approx(8 * (10 + 10 + 7320 / HOUR + 10 + 1), rel=1e-12)
    on_spot = j[j["pool"] == "p1"]
    assert billed * HOUR == pytest.approx((on_spot["gpus"] * on_spot["duration"]).sum()
                                          + on_spot["lost_gpu_s"].sum(), rel=1e-12)
    assert spot["cloud_cost"]["all"]["spot_usd"] == pytest.approx(billed * 2.0, rel=1e-12)
    # The timeline shows the withdrawn devices: node 3 at 2 h, node 2 at the reclaim, both back at 5 h.
    tl = res.timeline.set_index("time_s")["spot_withdrawn_gpus"]
    assert [tl.loc[t] for t in (0.0, 7200.0, 7320.0, 18000.0)] == [0, 8, 16, 0]


def test_capacity_back_within_the_notice_calls_the_reclaim_off():
    js = jobs(submit_time=[0.0] * 4, gpus=[8] * 4, duration=[10 * HOUR] * 4)
    res = capacity_run([{"at": "2h", "nodes": 2}, {"at": 7260, "nodes": 4}], js)
    assert (res.jobs["spot_interruptions"] == 0).all() and (res.jobs["end_time"] == 36000.0).all()
    assert res.summary["spot"]["capacity_reclaims"] == 0


def test_a_capacity_of_no_nodes_reclaims_every_busy_node():
    js = jobs(submit_time=[0.0] * 3, gpus=[8] * 3, duration=[HOUR] * 3)
    res = capacity_run([{"at": 600, "nodes": 0}, {"at": "2h", "nodes": 1}], js)
    j = res.jobs.set_index("job_id")
    assert j["spot_interruptions"].to_dict() == {"a": 0, "b": 1, "c": 1}
    # b (node 0) and c (node 1) are reclaimed at 720 s, c's node first (highest index), so c requeues
    # first: c takes p0 when a leaves it at 1 h, and b p0 again when c leaves it at 2 h (owned pools are
    # tried before burst ones, though one spot node is back then)
    assert j["end_time"].to_dict() == {"a": HOUR, "b": 3 * HOUR, "c": 2 * HOUR}
    assert j["pool"].to_dict() == {"a": "p0", "b": "p0", "c": "p0"}
    assert res.timeline.set_index("time_s")["spot_withdrawn_gpus"].loc[[600.0, 720.0, 7200.0]].tolist() == [16, 32, 24]


@pytest.mark.parametrize("spot, where, message", [
    ({"pool": "p1", "capacity": [{"at": 0, "nodes": 5}]}, "spot[0].capacity[0].nodes", "pool 'p1' has 4"),
    ({"pool": "p1", "capacity": [{"at": "2h", "nodes": 1}, {"at": "1h", "nodes": 2}]}, "spot[0]", "must increase"),
    ({"pool": "p1", "capacity": [{"at": 0, "nodes": -1}]}, "spot[0].capacity[0].nodes", "greater than or equal"),
])
def test_bad_capacities_are_refused_with_their_key_path(spot, where, message):
    scen = spot_scenario()
    scen["spot"] = [spot]
    with pytest.raises(CapsimError) as err:
        run(scen, jobs(submit_time=[0.0], gpus=[8], duration=[HOUR]))
    assert message in str(err.value) and where in str(err.value)
    assert "\n" not in str(err.value).strip()
