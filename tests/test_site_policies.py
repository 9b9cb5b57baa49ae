"""The site policies nearest-data and follow-the-sun (features/sites.py), by hand. H100 nodes as in
tests/test_sites.py: an idle 8-GPU node draws 5.44 kW, a fully busy one 10.2 kW (PUE 1)."""

import pytest

from simulator.errors import CapsimError
from tests.helpers import jobs, run_jobs

IDLE_KW, BUSY_KW = 5.44, 10.2
HOUR = 3600.0


def starts(res) -> dict:
    return res.jobs.set_index("job_id")["start_time"].to_dict()


def three_sites(policy: str) -> dict:
    """Home a has one 4-GPU node, b and c one 8-GPU node each; a-b is 1 GB/s, a-c 0.75 GB/s."""
    return {
        "sites": [{"name": n, "pools": [f"p{i}"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 100}
                  for i, n in enumerate("abc")],
        "wan": [{"between": ["a", "b"], "gbps": 8.0}, {"between": ["a", "c"], "gbps": 6.0}],
        "sites_policy": {"policy": policy},
    }


def test_nearest_data_sends_a_job_its_home_cannot_hold_where_its_data_arrives_first():
    # x and y (8 GPUs, 100 GB each, 1,000 s) are at a, which has only 4 devices. x first: alone on a-b
    # it would take 100 s, on a-c 133 s: b. Then y would share a-b with x (0.5 GB/s: 200 s) or have a-c
    # to itself (133.3 s): c. Under home both go to the first site in scenario order, b: they share
    # a-b (both there at 200 s) and y waits for x's node (1,200 s).
    js = jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[1000.0, 1000.0], home_site=["a", "a"],
              input_gb=[100.0, 100.0])
    pools = ((1, 4), (1, 8), (1, 8))
    near = run_jobs(js, pools=pools, extra=three_sites("nearest-data"))
    assert list(near.jobs["site"]) == ["b", "c"]
    assert starts(near) == {"a": pytest.approx(100.0), "b": pytest.approx(100.0 / 0.75)}
    home = run_jobs(js, pools=pools, extra=three_sites("home"))
    assert list(home.jobs["site"]) == ["b", "b"]
    assert starts(home) == {"a": pytest.approx(200.0), "b": pytest.approx(1200.0)}
    # A job its home can hold stays there under nearest-data, as under home.
    stay = run_jobs(jobs(submit_time=[0.0], gpus=[4], duration=[10.0], home_site=["a"], input_gb=[100.0]),
                    pools=pools, extra=three_sites("nearest-data"))
    assert list(stay.jobs["site"]) == ["a"] and starts(stay) == {"a": 0.0}


def sun(window=(8, 18), **link) -> dict:
    """london (UTC, $0.10/kWh) holds the data; tokyo (UTC+9, $0.20/kWh) is behind a 1 GB/s link."""
    return {
        "sites": [{"name": "london", "pools": ["p0"], "usd_per_kwh": 0.10, "gco2e_per_kwh": 200},
                  {"name": "tokyo", "pools": ["p1"], "usd_per_kwh": 0.20, "gco2e_per_kwh": 500, "utc_offset_h": 9}],
        "wan": [{"between": ["london", "tokyo"], "gbps": 8.0, **link}],
        "sites_policy": {"policy": "follow-the-sun", "window": list(window)},
    }


def test_follow_the_sun_runs_where_it_is_day_and_the_sites_pay_for_it():
    # Window 8-18 local. At 00:00 UTC London is at 0 h, Tokyo at 9 h: Tokyo. At 10:00 UTC London is in
    # its day: home. At 20:00 UTC neither is (London 20 h, Tokyo 5 h): home. At 23:30 UTC Tokyo is at
    # 8:30: Tokyo. Each move sends 10 GB (10 s at 1 GB/s) and pays $0.02/GB egress from London.
    submit = [0.0, 10 * HOUR, 20 * HOUR, 23.5 * HOUR]
    js = jobs(submit_time=submit, gpus=[8] * 4, duration=[HOUR] * 4, home_site=["london"] * 4, input_gb=[10.0] * 4)
    res = run_jobs(js, pools=((1, 8), (1, 8)), extra=sun(usd_per_gb=0.02))
    assert list(res.jobs["site"]) == ["tokyo", "london", "london", "tokyo"]
    assert starts(res) == {"a": pytest.approx(10.0), "b": 10 * HOUR, "c": 20 * HOUR, "d": pytest.approx(23.5 * HOUR + 10)}
    # Both sites idle their node from 0 to the last end (24.5 h + 10 s); each adds two busy hours.
    span_h = 24.5 + 10 / HOUR
    busy_kwh = 2 * (BUSY_KW - IDLE_KW)
    sites = res.summary["sites"]
    assert sites["london"]["energy_cost_usd"] == pytest.approx((IDLE_KW * span_h + busy_kwh) * 0.10, rel=1e-9)
    assert sites["tokyo"]["energy_cost_usd"] == pytest.approx((IDLE_KW * span_h + busy_kwh) * 0.20, rel=1e-9)
    assert sites["london"]["egress_usd"] == pytest.approx(2 * 10 * 0.02) and sites["tokyo"]["egress_usd"] == 0.0
    assert sites["tokyo"]["data_moved_tb"] == pytest.approx(0.02)


def test_follow_the_sun_prefers_the_site_with_the_most_day_left():
    # Window 10-18. At 09:00 UTC London (at 9 h) is out of it; Paris (UTC+1) is at 10 h, 8 h left, and
    # Tokyo (set to UTC+8 here) at 17 h, 1 h left: the job goes to Paris. A job without data goes there too.
    extra = sun(window=(10, 18))
    extra["sites"].insert(1, {"name": "paris", "pools": ["p2"], "usd_per_kwh": 0.1, "gco2e_per_kwh": 50,
                              "utc_offset_h": 1})
    extra["sites"][2]["utc_offset_h"] = 8
    extra["wan"].append({"between": ["london", "paris"], "gbps": 8.0})
    js = jobs(submit_time=[9 * HOUR, 9 * HOUR], gpus=[4, 1], duration=[HOUR, HOUR], home_site=["london", None],
              input_gb=[10.0, 0.0])
    res = run_jobs(js, pools=((1, 8), (1, 8), (1, 8)), extra=extra)
    assert list(res.jobs["site"]) == ["paris", "paris"]
    assert starts(res) == {"a": pytest.approx(9 * HOUR + 10), "b": 9 * HOUR}


@pytest.mark.parametrize("policy, where, message", [
    ({"policy": "follow-the-sun"}, "sites_policy", "give `window`"),
    ({"policy": "home", "window": [8, 18]}, "sites_policy", "give `window`"),
    ({"policy": "follow-the-sun", "window": [18, 8]}, "sites_policy", "0 <= start < end <= 24"),
    ({"policy": "follow-the-sun", "window": [8]}, "sites_policy.window", "at least 2"),
])
def test_bad_follow_the_sun_settings_are_refused_with_their_key_path(policy, where, message):
    extra = {**sun(), "sites_policy": policy}
    with pytest.raises(CapsimError) as err:
        run_jobs(jobs(submit_time=[0.0], gpus=[1], duration=[1.0]), pools=((1, 8), (1, 8)), extra=extra)
    assert message in str(err.value) and where in str(err.value) and "\n" not in str(err.value).strip()


def test_a_bad_offset_or_egress_price_is_refused_with_its_key_path():
    for change, where in ((lambda s: s["sites"][1].update(utc_offset_h=20), "sites[1].utc_offset_h"),
                          (lambda s: s["wan"][0].update(usd_per_gb=-1), "wan[0].usd_per_gb")):
        extra = sun()
        change(extra)
        with pytest.raises(CapsimError) as err:
            run_jobs(jobs(submit_time=[0.0], gpus=[1], duration=[1.0]), pools=((1, 8), (1, 8)), extra=extra)
        assert where in str(err.value) and "\n" not in str(err.value).strip()
