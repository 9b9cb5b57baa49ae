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
