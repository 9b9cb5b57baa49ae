"""Demand growth: arrival-rate multipliers (compound and piecewise linear) and growing job sizes."""

import numpy as np
import pytest

from simulator.workload.arrivals import DiurnalArrivals, PoissonArrivals, arrival_times
from simulator.workload.growth import YEAR_S, GrowthSpec
from simulator.workload.spec import SyntheticWorkload
from simulator.workload.synthetic import generate

DAY = 86400.0


def test_annual_growth_compounds_the_arrival_rate():
    growth = GrowthSpec(annual=0.30)
    arrival = PoissonArrivals(process="poisson", rate_per_hour=20)
    t = arrival_times(arrival, np.random.default_rng(0), 0.0, until=2 * YEAR_S, growth=growth)
    first, second = np.sum(t < YEAR_S), np.sum(t >= YEAR_S)
    assert second / first == pytest.approx(1.30, rel=0.03)
    # The first year's count is the integral of 20/h x 1.3^(t/year).
    assert first == pytest.approx(20 * 8760 * 0.3 / np.log(1.3), rel=0.02)


def test_curve_growth_is_piecewise_linear_then_flat():
    growth = GrowthSpec(curve=[["0d", 1.0], ["100d", 3.0]])
    assert growth.multiplier(np.array([0, 50 * DAY, 100 * DAY, 400 * DAY])).tolist() == [1.0, 2.0, 3.0, 3.0]
    arrival = DiurnalArrivals(process="diurnal", rate_per_hour=30, weekend=0.5)
    t = arrival_times(arrival, np.random.default_rng(1), 0.0, until=200 * DAY, growth=growth)
    early, late = np.sum(t < 14 * DAY), np.sum((t >= 140 * DAY) & (t < 154 * DAY))
    assert late / early == pytest.approx(3.0 / 1.14, rel=0.06)  # mean multiplier over days 0-14 is 1.14


def test_growth_applies_in_jobs_count_mode():
    growth = GrowthSpec(annual=1.0)
    arrival = PoissonArrivals(process="poisson", rate_per_hour=1)
    t = arrival_times(arrival, np.random.default_rng(2), 0.0, jobs=20000, growth=growth)
    assert len(t) == 20000
    gaps_first, gaps_later = np.diff(t[:2000]).mean(), np.diff(t[-2000:]).mean()
    assert gaps_first / gaps_later == pytest.approx(growth.multiplier(t[-1000]) / growth.multiplier(t[1000]),
                                                    rel=0.1)


def test_sizes_grow_at_the_stated_rate_in_valid_steps():
    growth = GrowthSpec(sizes=0.5)
    gpus = np.full(200_000, 8)
    grown = growth.grow_sizes(gpus, np.full(200_000, YEAR_S), np.random.default_rng(3))
    assert grown.mean() == pytest.approx(12.0, rel=0.01)
    assert set(np.unique(grown)) == {8, 16}
    assert growth.grow_sizes(np.array([3, 1]), np.zeros(2), np.random.default_rng(3)).tolist() == [3, 1]


def test_size_cap_and_bad_growth_keys():
    capped = GrowthSpec(sizes=3.0, max_gpus=16).grow_sizes(np.full(1000, 8), np.full(1000, YEAR_S),
                                                              np.random.default_rng(4))
    assert capped.max() == 16
    with pytest.raises(ValueError, match="not both"):
        GrowthSpec(annual=0.1, curve=[[0, 1.0]])
    with pytest.raises(ValueError, match="must increase"):
        GrowthSpec(curve=[["10d", 1.0], ["5d", 2.0]])


def test_synthetic_source_with_growth_generates_more_and_larger_jobs_later():
    spec = SyntheticWorkload.model_validate({
        "kind": "synthetic", "until": "730d", "arrival": {"process": "poisson", "rate_per_hour": 2},
        "gpus": {"choice": [1, 8]}, "duration": {"dist": "constant", "value": "1h"},
        "growth": {"annual": 0.5, "sizes": 0.2}})
    jobs = generate(spec, np.random.default_rng(5))
    year2 = jobs["submit_time"] >= YEAR_S
    assert year2.sum() / (~year2).sum() == pytest.approx(1.5, rel=0.05)
    assert jobs.loc[year2, "gpus"].mean() > jobs.loc[~year2, "gpus"].mean()
