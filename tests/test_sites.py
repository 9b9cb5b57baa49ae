"""Sites and wide-area links (features/sites.py), hand-worked from the H100 profile's spec power: an idle
8-GPU node draws 5,440 W, each busy device adds 595 W, a full node 10,200 W (tests/test_power.py)."""

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.features.sites import curve_integral
from tests.helpers import jobs, run_jobs, scenario_dict

IDLE_KW, BUSY_KW = 5.44, 10.2  # one 8 x H100 node, idle and fully busy
HOUR = 3600.0


def two_sites(policy=None, gbps=8.0, latency_ms=0.0, east_price=0.12, north_price=0.04, east_carbon=400.0,
              north_carbon=30.0, **extra):
    """Sites east and north, one 8 x H100 node each, joined by one link (8 Gbit/s = 1 GB/s)."""
    scen = {
        "sites": [{"name": "east", "pools": ["p0"], "usd_per_kwh": east_price, "gco2e_per_kwh": east_carbon},
                  {"name": "north", "pools": ["p1"], "usd_per_kwh": north_price, "gco2e_per_kwh": north_carbon}],
        "wan": [{"between": ["east", "north"], "gbps": gbps, "latency_ms": latency_ms}],
        **extra,
    }
    if policy is not None:
        scen["sites_policy"] = policy
    return scen


def run_two(js, policy=None, scheduler="fifo", **kw):
    return run_jobs(js, pools=((1, 8), (1, 8)), policy=scheduler, extra=two_sites(policy, **kw))


def starts(res) -> dict:
    return res.jobs.set_index("job_id")["start_time"].to_dict()


def test_without_sites_nothing_changes():
    js = jobs(submit_time=[0.0, 10.0], gpus=[8, 8], duration=[100.0, 100.0])
    res = run_jobs(js, pools=((1, 8), (1, 8)))
    assert "sites" not in res.summary and "site" not in res.jobs.columns
    assert not any(c.startswith("site") for c in res.timeline.columns)


def test_a_constant_draw_priced_by_a_24_value_curve_gives_the_exact_integral():
    # One busy node from 1,800 s to 1,800 s + 3 h: half of hour 0, hours 1 and 2, half of hour 3.
    price = [0.05 + 0.01 * h for h in range(24)]
    carbon = [100.0 + 10 * h for h in range(24)]
    extra = {"sites": [{"name": "only", "pools": ["p0"], "usd_per_kwh": price, "gco2e_per_kwh": carbon,
                        "pue": 1.2}]}
    res = run_jobs(jobs(submit_time=[1800.0], gpus=[8], duration=[3 * HOUR]), extra=extra)
    site = res.summary["sites"]["only"]
    kw = 1.2 * BUSY_KW
    assert site["energy_kwh"] == pytest.approx(kw * 3, rel=1e-12)
    assert res.summary["energy_kwh"] == pytest.approx(site["energy_kwh"], rel=1e-12)  # the site's PUE is used
    assert site["energy_cost_usd"] == pytest.approx(kw * (0.5 * 0.05 + 0.06 + 0.07 + 0.5 * 0.08), rel=1e-12)
    assert site["carbon_tco2e"] == pytest.approx(kw * (0.5 * 100 + 110 + 120 + 0.5 * 130) / 1e6, rel=1e-12)
    assert site["gpu_hours"] == pytest.approx(24.0) and site["utilisation"] == pytest.approx(1.0)
    assert site["jobs"] == 1 and site["mean_wait_s"] == 0.0 and site["data_moved_tb"] == 0.0
    assert list(res.jobs["site"]) == ["only"]
    # the site's power over time is kept: its integral is the site's energy
    tl = res.timeline
    assert [c for c in tl.columns if c.startswith("site")] == ["site_power_kw:only"]
    assert (tl["site_power_kw:only"][:-1] * tl["time_s"].diff()[1:].to_numpy()).sum() / 3600 == pytest.approx(
        site["energy_kwh"], rel=1e-12)


def test_curve_integral_wraps_days():
    curve = np.arange(24, dtype=float)
    day = curve.sum() * HOUR
    assert curve_integral(curve, np.array([86400.0 * 2 + 1.5 * HOUR]))[0] == pytest.approx(2 * day + HOUR * (0 + 0.5))
    assert curve_integral(curve, np.array([-HOUR]))[0] == pytest.approx(-23 * HOUR)


def test_two_transfers_on_one_link_each_get_half():
    # Both at east, north cheaper: each job's 100 GB moves over the 1 GB/s link. Together each gets
    # 0.5 GB/s: sent at 200 s, there 50 ms later.
    js = jobs(submit_time=[0.0, 0.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["east", "east"],
              input_gb=[100.0, 100.0])
    res = run_two(js, {"policy": "cheapest-energy"}, latency_ms=50)
    assert starts(res) == {"a": pytest.approx(200.05), "b": pytest.approx(200.05)}
    assert list(res.jobs["site"]) == ["north", "north"]
    assert list(res.jobs["transfer_s"]) == pytest.approx([200.05, 200.05])
    assert res.summary["sites"]["north"]["data_moved_tb"] == pytest.approx(0.2)
    assert res.summary["wan_links"] == [{"link": "east-north", "tb_moved": pytest.approx(0.2), "transfers": 2}]


def test_a_later_transfer_shares_the_link_from_its_arrival():
    # a alone for 50 s (50 GB sent), then a and b at 0.5 GB/s: a's last 50 GB take 100 s (done at 150),
    # b has sent 50 GB by then and sends the rest alone at 1 GB/s (done at 200).
    js = jobs(submit_time=[0.0, 50.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["east", "east"],
              input_gb=[100.0, 100.0])
    res = run_two(js, {"policy": "cheapest-energy"}, latency_ms=10)
    assert starts(res) == {"a": pytest.approx(150.01), "b": pytest.approx(200.01)}
    assert res.summary["sites"]["north"]["mean_wait_s"] == pytest.approx((150.01 + 150.01) / 2)


def test_home_runs_where_the_data_is():
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[100.0, 100.0], home_site=["east", "north"],
              input_gb=[100.0, 100.0])
    res = run_two(js)  # the default policy: home
    assert starts(res) == {"a": 0.0, "b": 0.0}
    assert list(res.jobs["site"]) == ["east", "north"] and list(res.jobs["transfer_s"]) == [0.0, 0.0]
    # Held to its site, a second east job waits for east even though north is free.
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[100.0, 100.0], home_site=["east", "east"])
    res = run_two(js)
    assert starts(res) == {"a": 0.0, "b": 100.0}
    assert res.summary["sites"]["north"]["jobs"] == 0 and res.summary["sites"]["east"]["mean_wait_s"] == 50.0


@pytest.mark.parametrize("policy, key", [("cheapest-energy", "price"), ("lowest-carbon", "carbon")])
def test_the_hourly_curve_decides_the_site(policy, key):
    # East is cheaper (and cleaner) from hour 12: a job submitted at hour 3 goes north, one at hour 13
    # stays east.
    low_after_noon = [0.2] * 12 + [0.01] * 12
    curves = {f"east_{key}": low_after_noon, f"north_{key}": 0.1}
    js = jobs(submit_time=[3 * HOUR, 13 * HOUR], gpus=[8, 8], duration=[100.0, 100.0], home_site=["east", "east"],
              input_gb=[8.0, 8.0])
    res = run_two(js, {"policy": policy}, **curves)
    assert list(res.jobs["site"]) == ["north", "east"]
    assert starts(res) == {"a": pytest.approx(3 * HOUR + 8.0), "b": 13 * HOUR}


def test_spill_after_moves_a_waiting_job_to_the_site_with_room():
    # Two east jobs; the second waits behind the first, and after an hour moves its 100 GB to north
    # (100 s on the 1 GB/s link, 20 ms latency) and starts there.
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[10 * HOUR, 10 * HOUR], home_site=["east", "east"],
              input_gb=[100.0, 100.0])
    res = run_two(js, {"policy": "spill-after", "after": "1h"}, latency_ms=20)
    assert starts(res) == {"a": 0.0, "b": pytest.approx(HOUR + 100.02)}
    assert list(res.jobs["site"]) == ["east", "north"]
    # Without a link to carry its data, it waits at home.
    extra = two_sites({"policy": "spill-after", "after": "1h"})
    del extra["wan"]
    res = run_jobs(js, pools=((1, 8), (1, 8)), extra=extra)
    assert starts(res) == {"a": 0.0, "b": 10 * HOUR}


def test_cheap_energy_behind_a_thin_link_savings_and_delays_match_the_hand_calculation():
    # Four 8-GPU one-hour jobs, two hours apart, data at east ($0.12/kWh); north ($0.04/kWh) sits behind
    # a 1 Gbit/s link (0.125 GB/s) with 30 ms latency: each job's 100 GB take 800 s, so each starts
    # 800.03 s late under cheapest-energy (the transfers never overlap).
    submit = [0.0, 2 * HOUR, 4 * HOUR, 6 * HOUR]
    js = jobs(submit_time=submit, gpus=[8] * 4, duration=[HOUR] * 4, home_site=["east"] * 4, input_gb=[100.0] * 4)
    home = run_two(js, gbps=1.0, latency_ms=30)
    cheap = run_two(js, {"policy": "cheapest-energy"}, gbps=1.0, latency_ms=30)
    delay = 800.03
    assert list(cheap.jobs["start_time"]) == pytest.approx([s + delay for s in submit])
    assert cheap.summary["mean_wait_s"] == pytest.approx(delay)
    # Each site draws its idle node the whole span, and each job adds the busy share where it runs.
    span_home, span_cheap = 7 * HOUR, 7 * HOUR + delay
    extra_busy = 4 * (BUSY_KW - IDLE_KW) * 1.0  # kWh
    want_home = {"east": IDLE_KW * span_home / HOUR * 0.12 + extra_busy * 0.12,
                 "north": IDLE_KW * span_home / HOUR * 0.04}
    want_cheap = {"east": IDLE_KW * span_cheap / HOUR * 0.12,
                  "north": IDLE_KW * span_cheap / HOUR * 0.04 + extra_busy * 0.04}
    for res, want in ((home, want_home), (cheap, want_cheap)):
        for name, usd in want.items():
            assert res.summary["sites"][name]["energy_cost_usd"] == pytest.approx(usd, rel=1e-9)
    saving = sum(want_home.values()) - sum(want_cheap.values())
    # The busy energy priced 8 cents less, less the idle draw of both sites over the 800 s the last
    # transfer adds to the span: about $1.20.
    assert saving == pytest.approx(extra_busy * 0.08 - IDLE_KW * delay / HOUR * 0.16)
    assert saving == pytest.approx(sum(s["energy_cost_usd"] for s in home.summary["sites"].values())
                                   - sum(s["energy_cost_usd"] for s in cheap.summary["sites"].values()))
    assert cheap.summary["sites"]["north"]["data_moved_tb"] == pytest.approx(0.4)
    assert (cheap.summary["sites"]["north"]["carbon_tco2e"] + cheap.summary["sites"]["east"]["carbon_tco2e"]
            < home.summary["sites"]["north"]["carbon_tco2e"] + home.summary["sites"]["east"]["carbon_tco2e"])


def test_a_power_cap_is_reported():
    extra = {"sites": [{"name": "only", "pools": ["p0"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 0,
                        "power_cap_kw": 8.0}]}
    res = run_jobs(jobs(submit_time=[0.0], gpus=[8], duration=[HOUR]), extra=extra)
    site = res.summary["sites"]["only"]
    assert site["peak_kw"] == pytest.approx(BUSY_KW) and site["hours_over_cap"] == pytest.approx(1.0)


@pytest.mark.parametrize("change, where, message", [
    (lambda s: s["sites"][1]["pools"].append("nope"), "sites[1].pools[1]", "no pool named 'nope'"),
    (lambda s: s["sites"][1]["pools"].append("p0"), "sites[1].pools[1]", "already at site 'east'"),
    (lambda s: s["sites"][1]["pools"].clear() or s["sites"][1]["pools"].append("p0"), "sites[1].pools[0]",
     "already at site"),
    (lambda s: s["sites"][1].update(name="east"), "sites[1].name", "unique"),
    (lambda s: s["sites"].pop(), "sites", "not placed: p1"),
    (lambda s: s["sites"][0].update(usd_per_kwh=[0.1] * 23), "sites[0].usd_per_kwh", "24 hourly values, got 23"),
    (lambda s: s["wan"][0].update(between=["east", "west"]), "wan[0].between", "no site named 'west'"),
    (lambda s: s["wan"].append(dict(s["wan"][0])), "wan[1].between", "a second link"),
    (lambda s: s.update(sites_policy={"policy": "spill-after"}), "sites_policy", "give `after`"),
    (lambda s: s.pop("sites"), "wan", "wan needs sites"),
])
def test_bad_sites_are_refused_with_their_key_path(change, where, message):
    extra = two_sites()
    change(extra)
    with pytest.raises(CapsimError) as err:
        run_jobs(jobs(submit_time=[0.0], gpus=[1], duration=[1.0]), pools=((1, 8), (1, 8)), extra=extra)
    assert message in str(err.value) and where in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_an_unknown_home_site_is_refused():
    with pytest.raises(CapsimError, match="home_site 'west'"):
        run_two(jobs(submit_time=[0.0], gpus=[1], duration=[1.0], home_site=["west"]))


def test_generator_keys_carry_home_site_and_input_gb():
    workload = [{"kind": "synthetic", "until": "6h", "arrival": {"process": "poisson", "rate_per_hour": 2}, "gpus": 1,
                 "duration": {"dist": "exponential", "mean": "10m"}, "home_site": "east", "input_gb": 10}]
    scen = {**scenario_dict([(1, 8), (1, 8)], workload), **two_sites({"policy": "cheapest-energy"})}
    res = simulator.run(scen, progress=False)
    assert len(res.jobs) and (res.jobs["site"] == "north").all()
    assert (res.jobs["transfer_s"] >= 10.0 - 1e-9).all()  # 10 GB at 1 GB/s, or longer while shared
    assert res.summary["sites"]["north"]["data_moved_tb"] == pytest.approx(0.01 * len(res.jobs))


def _torus_sites(wan: bool):
    """Sites west (a 4x4x4 v4 cube) and east (a 2x4x8 v4 torus), 64 chips each."""
    pool = {"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus"}
    scen = {"name": "tori", "scheduler": {"policy": "fifo"},
            "cluster": {"pools": [{"name": "cube", **pool}, {"name": "long", **pool, "torus": [2, 4, 8]}]},
            "sites": [{"name": "west", "pools": ["cube"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 300.0},
                      {"name": "east", "pools": ["long"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 300.0}],
            "sites_policy": {"policy": "home"}}
    if wan:
        scen["wan"] = [{"between": ["west", "east"], "gbps": 8.0}]
    return scen


def test_a_job_whose_named_slice_its_home_torus_cannot_take_moves_to_a_site_that_can():
    # X names 2x2x8: no orientation fits the 4x4x4 cube (no axis of 8), the 2x4x8 torus takes it. Its
    # home holds 64 chips, more than its 32, yet cannot run it: its 10 GB cross the 1 GB/s link (10 s)
    # and it runs east. Y (32 chips, the standard 2x4x4) stays home.
    js = pd.DataFrame({"job_id": ["X", "Y"], "submit_time": [0.0, 0.0], "gpus": [32, 32],
                       "duration": [100.0, 100.0], "slice_shape": ["2x2x8", None],
                       "home_site": ["west", "west"], "input_gb": [10.0, 10.0]})
    res = simulator.run(_torus_sites(wan=True), jobs=js, progress=False)
    jobs = res.jobs.set_index("job_id")
    assert jobs["site"].to_dict() == {"X": "east", "Y": "west"}
    assert jobs["start_time"].to_dict() == {"X": pytest.approx(10.0), "Y": 0.0}


def test_a_named_slice_no_reachable_site_can_take_is_refused_before_the_run():
    js = pd.DataFrame({"job_id": ["X"], "submit_time": [0.0], "gpus": [32], "duration": [100.0],
                       "slice_shape": ["2x2x8"], "home_site": ["west"], "input_gb": [10.0]})
    with pytest.raises(CapsimError, match=r"1 job\(s\) of 32 devices \(e\.g\. X\) have their data at site 'west', "
                                          r"which cannot hold them, and no route of links leads to a site that "
                                          r"can \(east\)"):
        simulator.run(_torus_sites(wan=False), jobs=js, progress=False)
