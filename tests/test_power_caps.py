"""Enforced site power caps (features/sites.py PowerCap), hand-worked from the H100 profile's spec power
(tests/test_sites.py): an idle 8-GPU node draws 5,440 W, each busy device adds 595 W, at PUE 1."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.errors import CapsimError
from tests.helpers import jobs, run_jobs, scenario_dict

IDLE_NODE_W, BUSY_DEVICE_W = 5440.0, 595.0
HOUR = 3600.0


def one_site(cap_kw, mode="enforce", pools=("p0",), **site):
    return {"sites": [{"name": "only", "pools": list(pools), "usd_per_kwh": 0.1, "gco2e_per_kwh": 0,
                       "power_cap_kw": cap_kw, **({"power_cap_mode": mode} if mode else {}), **site}]}


def starts(res) -> dict:
    return res.jobs.set_index("job_id")["start_time"].to_dict()


def test_a_cap_that_fits_two_busy_nodes_holds_the_third_job_until_one_ends():
    # Three idle nodes draw 16.32 kW; two 8-GPU jobs add 2 x 8 x 595 W = 9.52 kW: a 25.84 kW cap.
    cap_kw = (3 * IDLE_NODE_W + 16 * BUSY_DEVICE_W) / 1e3
    js = jobs(submit_time=[0.0, 0.0, 0.0], gpus=[8, 8, 8], duration=[HOUR, 2 * HOUR, 3 * HOUR])
    res = run_jobs(js, pools=((3, 8),), extra=one_site(cap_kw))
    # a and b start at once; c has free devices but no power until a ends at 1 h, then runs 3 h.
    assert starts(res) == {"a": 0.0, "b": 0.0, "c": HOUR}
    assert res.jobs.set_index("job_id")["end_time"]["c"] == 4 * HOUR
    site = res.summary["sites"]["only"]
    assert site["peak_kw"] == pytest.approx(cap_kw, rel=1e-12) and site["hours_over_cap"] == 0.0
    assert site["power_cap_mode"] == "enforce"
    # Reported only, the same cap lets c start at once and is passed for the hour all three run.
    reported = run_jobs(js, pools=((3, 8),), extra=one_site(cap_kw, mode="report"))
    assert starts(reported) == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert reported.summary["sites"]["only"]["peak_kw"] == pytest.approx(cap_kw + 8 * BUSY_DEVICE_W / 1e3)
    assert reported.summary["sites"]["only"]["hours_over_cap"] == pytest.approx(1.0)
    assert "power_cap_mode" not in reported.summary["sites"]["only"]


def test_a_small_job_that_fits_under_the_cap_starts_beside_one_that_does_not():
    # Cap: one idle node (5.44 kW) + 6 busy devices. The 4- and 2-GPU jobs reach it; the 1-GPU job has
    # free devices but no power until the 4-GPU job ends (backfill cannot help it: it is power, not room).
    cap_kw = (IDLE_NODE_W + 6 * BUSY_DEVICE_W) / 1e3
    js = jobs(submit_time=[0.0, 0.0, 0.0], gpus=[4, 2, 1], duration=[HOUR, 2 * HOUR, HOUR])
    res = run_jobs(js, pools=((1, 8),), policy="easy-backfill", extra=one_site(cap_kw))
    assert starts(res) == {"a": 0.0, "b": 0.0, "c": HOUR}


def test_spill_after_sends_a_job_the_cap_holds_back_to_the_other_site():
    # east: 2 nodes, power for one busy node; north: 1 node, uncapped. b waits at east (devices free,
    # power not), then spills after 1 h.
    cap_kw = (2 * IDLE_NODE_W + 8 * BUSY_DEVICE_W) / 1e3
    extra = {"sites": [{"name": "east", "pools": ["p0"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0,
                        "power_cap_kw": cap_kw, "power_cap_mode": "enforce"},
                       {"name": "north", "pools": ["p1"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0}],
             "sites_policy": {"policy": "spill-after", "after": "1h"}}
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[3 * HOUR, HOUR], home_site=["east", "east"])
    res = run_jobs(js, pools=((2, 8), (1, 8)), extra=extra)
    assert starts(res) == {"a": 0.0, "b": HOUR}
    assert res.jobs.set_index("job_id")["site"].to_dict() == {"a": "east", "b": "north"}


def _site_power_w(sim, site_pools: list[int], base_w: float) -> tuple[np.ndarray, np.ndarray]:
    """The site's draw from the engine's record of every run (independent of the timeline builder):
    at each change, its idle draw plus 595 W per busy device of its pools."""
    start, end, devices, pool = sim.recorder.runs()
    here = np.isin(pool, site_pools) & np.isfinite(end)
    times = np.concatenate([start[here], end[here]])
    delta = np.concatenate([devices[here], -devices[here]]) * BUSY_DEVICE_W
    order = np.lexsort((delta, times))  # at one instant, releases before starts
    return times[order], base_w + np.cumsum(delta[order])


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31), policy=st.sampled_from(["fifo", "easy-backfill", "tiresias", "sjf"]),
       headroom=st.tuples(st.integers(8, 15), st.integers(8, 15)), spill=st.booleans())
def test_no_site_ever_draws_more_than_its_enforced_cap(seed, policy, headroom, spill):
    rng = np.random.default_rng(seed)
    n = 60
    js = jobs(submit_time=np.sort(rng.uniform(0, 20 * HOUR, n)).round(0),
              gpus=rng.choice([1, 2, 4, 8], n), duration=rng.exponential(2 * HOUR, n).round(0) + 1,
              home_site=rng.choice(["east", "north"], n))
    caps = [(2 * IDLE_NODE_W + k * BUSY_DEVICE_W) / 1e3 for k in headroom]
    scen = scenario_dict([(2, 8), (2, 8)], [], policy)
    scen["sites"] = [{"name": name, "pools": [pool], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0, "power_cap_kw": cap,
                      "power_cap_mode": "enforce"}
                     for name, pool, cap in zip(["east", "north"], ["p0", "p1"], caps, strict=True)]
    if spill:
        scen["sites_policy"] = {"policy": "spill-after", "after": "30m"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = simulator.build(scen, jobs=js, progress=False)
        sim.run()
        res = simulator.collect(sim)
    assert (res.jobs["status"] == "completed").all()
    for s, (name, cap) in enumerate(zip(["east", "north"], caps, strict=True)):
        _, watts = _site_power_w(sim, [s], 2 * IDLE_NODE_W)
        assert watts.max() <= cap * 1e3 * (1 + 1e-9)
        figures = res.summary["sites"][name]
        assert figures["peak_kw"] <= cap * (1 + 1e-9) and figures["hours_over_cap"] == 0.0


def test_report_mode_and_no_mode_keep_results_identical_to_no_cap():
    rng = np.random.default_rng(3)
    n = 200
    js = jobs(submit_time=np.sort(rng.uniform(0, 48 * HOUR, n)), gpus=rng.choice([1, 2, 4, 8, 16], n),
              duration=rng.exponential(3 * HOUR, n))
    base = run_jobs(js, pools=((4, 8),), policy="easy-backfill", extra=one_site(None, mode=None))
    for mode in (None, "report"):
        capped = run_jobs(js, pools=((4, 8),), policy="easy-backfill", extra=one_site(32.0, mode=mode))
        assert capped.jobs.equals(base.jobs) and capped.timeline.equals(base.timeline)
        site = dict(capped.summary["sites"]["only"])
        assert site.pop("power_cap_kw") == 32.0 and site.pop("peak_kw") > 32.0 and site.pop("hours_over_cap") > 0
        assert site == base.summary["sites"]["only"]
    enforced = run_jobs(js, pools=((4, 8),), policy="easy-backfill", extra=one_site(32.0))
    assert not enforced.jobs.equals(base.jobs)  # the cap binds here, so enforcing it changes the schedule


def test_the_cap_counts_facility_power_at_the_sites_pue():
    # At PUE 1.5 one idle node draws 8.16 kW and each busy device 892.5 W: a cap of idle + 8 devices at
    # PUE 1 (10.2 kW) leaves room for two devices at PUE 1.5.
    js = jobs(submit_time=[0.0, 0.0, 0.0], gpus=[2, 1, 1], duration=[HOUR, HOUR, HOUR])
    res = run_jobs(js, extra=one_site(10.2, pue=1.5))
    assert starts(res) == {"a": 0.0, "b": HOUR, "c": HOUR}


@pytest.mark.parametrize("site, gpus, where, message", [
    ({"power_cap_mode": "enforce"}, 1, "sites[0].power_cap_mode", "power_cap_mode needs power_cap_kw"),
    ({"power_cap_kw": 5.0, "power_cap_mode": "enforce"}, 1, "sites[0].power_cap_kw", "every device idle"),
    ({"power_cap_kw": 6.0, "power_cap_mode": "enforce"}, 2, "sites[0].power_cap_kw", "could never start"),
    ({"power_cap_kw": 6.0, "power_cap_mode": "always"}, 1, "sites[0].power_cap_mode", "enforce"),
])
def test_bad_caps_are_refused_with_their_key_path(site, gpus, where, message):
    extra = {"sites": [{"name": "only", "pools": ["p0"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0, **site}]}
    with pytest.raises(CapsimError) as err:
        run_jobs(jobs(submit_time=[0.0], gpus=[gpus], duration=[1.0]), extra=extra)
    assert message in str(err.value) and where in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_a_job_another_pool_can_power_is_not_refused():
    # p0's site can power one device, p1's is uncapped: the 4-GPU job runs on p1.
    extra = {"sites": [{"name": "a", "pools": ["p0"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0,
                        "power_cap_kw": (IDLE_NODE_W + BUSY_DEVICE_W) / 1e3, "power_cap_mode": "enforce"},
                       {"name": "b", "pools": ["p1"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0}]}
    res = run_jobs(pd.DataFrame({"job_id": ["x"], "submit_time": [0.0], "gpus": [4], "duration": [HOUR]}),
                   pools=((1, 8), (1, 8)), extra=extra)
    assert res.jobs["site"].tolist() == ["b"] and res.jobs["start_time"].tolist() == [0.0]
