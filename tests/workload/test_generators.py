"""Synthetic arrival processes, job classes and the quantile distribution."""

import numpy as np
import pytest

from simulator.errors import CapsimError
from simulator.scenario import scenario_from_text
from simulator.workload.arrivals import DiurnalArrivals, PoissonArrivals, arrival_times
from simulator.workload.distributions import Quantiles
from simulator.workload.spec import SyntheticWorkload
from simulator.workload.synthetic import generate

HOUR, DAY, WEEK = 3600.0, 86400.0, 604800.0


def _synthetic(**kw) -> SyntheticWorkload:
    base = {"kind": "synthetic", "arrival": {"process": "poisson", "rate_per_hour": 10},
            "duration": {"dist": "constant", "value": 60}, "until": "28d"}
    return SyntheticWorkload.model_validate({**base, **kw})


def test_diurnal_counts_follow_the_hourly_and_weekly_profiles():
    hourly = [0.2] * 8 + [2.0] * 10 + [0.5] * 6
    weekly = [1, 1, 1, 1, 1, 0.25, 0.25]
    arrival = DiurnalArrivals(process="diurnal", rate_per_hour=20, hourly=hourly, weekly=weekly)
    t = arrival_times(arrival, np.random.default_rng(3), 0.0, until=8 * WEEK)
    assert len(t) == pytest.approx(20 * 8 * 168, rel=0.03)  # rate_per_hour is the long-run mean
    by_hour = np.bincount((t // HOUR).astype(int) % 24, minlength=24)
    assert by_hour[8:18].mean() / by_hour[:8].mean() == pytest.approx(10, rel=0.1)
    by_day = np.bincount((t // DAY).astype(int) % 7, minlength=7)
    assert by_day[5:].mean() / by_day[:5].mean() == pytest.approx(0.25, rel=0.1)


def test_sinusoid_shape_peaks_at_the_peak_hour():
    arrival = DiurnalArrivals(process="diurnal", rate_per_hour=50, shape="sinusoid", amplitude=0.8, peak_hour=15)
    t = arrival_times(arrival, np.random.default_rng(0), 0.0, until=4 * WEEK)
    by_hour = np.bincount((t // HOUR).astype(int) % 24, minlength=24)
    assert int(np.argmax(by_hour)) in (14, 15)
    assert by_hour.max() / by_hour.min() > 5  # (1 + 0.8) / (1 - 0.8) = 9 at the extremes


def test_bursts_add_size_jobs_every_period_within_the_jitter():
    arrival = PoissonArrivals(process="poisson", rate_per_hour=1e-6,
                              bursts={"every": "7d", "size": 50, "jitter": "1h", "first": "1d"})
    t = arrival_times(arrival, np.random.default_rng(1), 0.0, until=4 * WEEK)
    assert len(t) == 4 * 50
    offsets = (t - DAY) % WEEK
    assert offsets.max() < HOUR


def test_jobs_count_mode_returns_exactly_n_sorted_arrivals():
    arrival = DiurnalArrivals(process="diurnal", rate_per_hour=5, weekend=0.3)
    t = arrival_times(arrival, np.random.default_rng(2), 100.0, jobs=5000)
    assert len(t) == 5000 and t[0] >= 100.0 and np.all(np.diff(t) >= 0)


def test_same_seed_same_jobs_and_different_seed_different_jobs():
    spec = _synthetic(arrival={"process": "diurnal", "rate_per_hour": 30, "shape": "sinusoid"},
                      duration={"dist": "lognormal", "median": "10m", "sigma": 1.0})
    a, b = generate(spec, np.random.default_rng(9)), generate(spec, np.random.default_rng(9))
    c = generate(spec, np.random.default_rng(10))
    assert a.equals(b)
    assert not a["submit_time"].equals(c["submit_time"])


def test_classes_keep_each_size_with_its_own_durations():
    spec = _synthetic(until=None, jobs=20000, duration=None, classes=[
        {"weight": 3, "gpus": 1, "duration": {"dist": "constant", "value": "5m"}},
        {"weight": 1, "gpus": {"choice": [8, 16]}, "duration": {"dist": "constant", "value": "10h"}}])
    jobs = generate(spec, np.random.default_rng(4))
    big = jobs["gpus"] >= 8
    assert big.mean() == pytest.approx(0.25, abs=0.015)
    assert (jobs.loc[big, "duration"] == 36000).all() and (jobs.loc[~big, "duration"] == 300).all()
    assert spec.max_gpus() == 16


def test_quantiles_reproduce_their_knots_and_mean():
    q = Quantiles(dist="quantiles", p=[0, 0.5, 0.9, 1], values=["1s", "200s", "2h", "2d"])
    x = q.sample(np.random.default_rng(5), 400_000)
    assert np.median(x) == pytest.approx(200, rel=0.02)
    assert np.quantile(x, 0.9) == pytest.approx(7200, rel=0.02)
    assert x.mean() == pytest.approx(q.mean(), rel=0.02)
    assert x.min() >= 1 and x.max() <= 172800


def test_clipped_lognormal_mean_accounts_for_the_clip():
    from simulator.workload.distributions import LogNormal

    d = LogNormal(dist="lognormal", median=100, sigma=2.5, max="1d")
    assert d.sample(np.random.default_rng(6), 500_000).mean() == pytest.approx(d.mean(), rel=0.03)


SCENARIO = """
name: t
cluster: {pools: [{name: p, device: h100-sxm, nodes: 2, devices_per_node: 8}]}
workload:
  - kind: synthetic
    until: 2d
    arrival: {process: diurnal, rate_per_hour: 5, hourly: [1, 2]}
    duration: {dist: constant, value: 1h}
"""


@pytest.mark.parametrize("bad, where", [
    ("hourly: [1, 2]", "workload[0].arrival.hourly"),
    ("hourly: [1, 2], bursts: {every: 0s, size: 3}",
     "workload[0].arrival"),
])
def test_bad_generator_keys_name_the_key_path(bad, where):
    with pytest.raises(CapsimError) as err:
        scenario_from_text(SCENARIO.replace("hourly: [1, 2]", bad), source="s.yaml")
    assert where in str(err.value)


def test_duration_and_classes_are_mutually_exclusive():
    with pytest.raises(ValueError, match="exactly one of 'duration', 'classes'"):
        _synthetic(classes=[{"weight": 1, "duration": {"dist": "constant", "value": 1}}])
