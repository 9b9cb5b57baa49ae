"""Request arrivals: a daily profile (sinusoid or hourly), gamma gaps and yearly growth. The count in a
window matches the integral of the rate over it within statistical tolerance; gamma gaps have the cv
asked for; the settings are validated with their key paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.serving.requests import synthetic
from simulator.serving.spec import SyntheticRequests
from tests.serving.test_serving_run import scenario

DAY = 86400.0


def draw(arrival, seed=0, **bounds):
    spec = SyntheticRequests(kind="synthetic", service="s", arrival=arrival, prompt_tokens=1, output_tokens=1,
                             **bounds)
    return synthetic(spec, np.random.default_rng(seed))["arrival_s"].to_numpy()


def check_counts(times, edges, expected, cv=1.0, sigmas=4.5):
    """Counts in each window against the rate's integral; for a renewal process the count's variance
    is about cv^2 times its mean, so each window is within `sigmas` of that."""
    counts = np.histogram(times, edges)[0]
    for c, e in zip(counts, expected, strict=True):
        assert abs(c - e) <= sigmas * cv * math.sqrt(e) + 1, (c, e)
    assert abs(counts.sum() - sum(expected)) <= sigmas * cv * math.sqrt(sum(expected))


def test_sinusoid_counts_match_its_integral():
    """rate(t) = r (1 + a cos(w (t - p))), integral r (dt + a/w (sin(w (t2 - p)) - sin(w (t1 - p))))."""
    r, ratio, peak = 0.5, 4.0, 14.0
    times = draw({"process": "poisson", "rate_per_s": r, "sinusoid": {"peak_to_trough": ratio, "peak_hour": peak}},
                 until=10 * DAY)
    a, w, p = (ratio - 1) / (ratio + 1), 2 * math.pi / DAY, peak * 3600
    edges = np.arange(0, 10 * DAY + 1, 3 * 3600.0)
    expected = [r * (t2 - t1 + a / w * (math.sin(w * (t2 - p)) - math.sin(w * (t1 - p))))
                for t1, t2 in zip(edges[:-1], edges[1:], strict=True)]
    check_counts(times, edges, expected)
    # the peak-to-trough ratio: the hours around the peak against those around the trough
    hour = (times // 3600 % 24).astype(int)
    assert np.bincount(hour, minlength=24)[14] / np.bincount(hour, minlength=24)[2] == pytest.approx(
        (1 + a * math.cos(w * 1800)) / (1 - a * math.cos(w * 1800)), rel=0.15)


def test_hourly_profile_counts_by_hour():
    hourly = [0.0] * 6 + [1.0] * 6 + [3.0] * 6 + [0.5] * 6
    times = draw({"process": "poisson", "rate_per_s": 0.2, "hourly": hourly}, until=20 * DAY)
    edges = np.arange(0, 20 * DAY + 1, 3600.0)
    expected = [0.2 * 3600 * hourly[h % 24] / 1.125 for h in range(len(edges) - 1)]  # scaled to mean 1
    check_counts(times, edges, expected)
    assert not ((times // 3600 % 24) < 6).any()  # nothing arrives when the rate is 0
    # a count of requests, with start: the same process from `start`
    n = draw({"process": "poisson", "rate_per_s": 0.2, "hourly": hourly}, requests=5000, start=7200.0)
    assert len(n) == 5000 and n.min() >= 6 * 3600 and (np.diff(n) >= 0).all()


def test_gamma_gaps_have_the_cv_and_the_mean_rate():
    for cv in (0.5, 1.0, 3.0):
        times = draw({"process": "gamma", "rate_per_s": 5.0, "cv": cv}, seed=1, requests=200_000)
        gaps = np.diff(times)
        assert gaps.mean() == pytest.approx(0.2, rel=5 * cv / math.sqrt(len(gaps)))
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.03)
        window = draw({"process": "gamma", "rate_per_s": 5.0, "cv": cv}, seed=2, until=20_000.0)
        check_counts(window, np.array([0.0, 20_000.0]), [5.0 * 20_000], cv=cv)


def test_bursty_diurnal_growth_counts_match_the_integral():
    """Gamma gaps (cv 2) under a sinusoid and 100% yearly growth over 60 days: counts per 5 days match
    the integral of r (1 + a cos(w (t - p))) 2^(t / year) (numerically, finely), within the renewal
    process's tolerance."""
    arrival = {"process": "gamma", "rate_per_s": 0.05, "cv": 2.0, "annual_growth": 1.0,
               "sinusoid": {"peak_to_trough": 3.0, "peak_hour": 0}}
    times = draw(arrival, seed=3, until=60 * DAY)
    edges = np.arange(0, 60 * DAY + 1, 5 * DAY)
    a, w, k = 0.5, 2 * math.pi / DAY, math.log(2) / (365 * DAY)
    t = np.linspace(0, 60 * DAY, 60 * 24 * 60 + 1)
    rate = 0.05 * (1 + a * np.cos(w * t)) * np.exp(k * t)
    cum = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(t))])
    expected = np.diff(np.interp(edges, t, cum))
    check_counts(times, edges, expected, cv=2.0)
    # growth alone: the rate at day 365 is twice the start's
    grown = draw({"process": "poisson", "rate_per_s": 0.01, "annual_growth": 1.0}, seed=4, until=366 * DAY)
    first, last = ((grown >= lo) & (grown < lo + 30 * DAY) for lo in (0.0, 335 * DAY))
    ratio = math.exp(k * 335 * DAY)
    assert last.sum() / first.sum() == pytest.approx(ratio, rel=4.5 * math.sqrt(1 / first.sum() + 1 / last.sum()))


def test_same_seed_same_arrivals_and_plain_poisson_unchanged():
    arrival = {"process": "gamma", "rate_per_s": 1.0, "cv": 2.0, "hourly": [1.0] * 12 + [2.0] * 12}
    assert np.array_equal(draw(arrival, requests=1000), draw(arrival, requests=1000))
    # a flat profile is the plain process up to the grid's rounding
    flat = draw({"process": "poisson", "rate_per_s": 1.0, "hourly": [1.0] * 24}, requests=1000)
    plain = draw({"process": "poisson", "rate_per_s": 1.0}, requests=1000)
    assert flat == pytest.approx(plain, rel=1e-9)


@pytest.mark.parametrize(("arrival", "where", "message"), [
    ({"process": "gamma", "rate_per_s": 1.0}, "requests[0].arrival", "gamma needs cv"),
    ({"process": "poisson", "rate_per_s": 1.0, "cv": 2.0}, "requests[0].arrival", "cv goes with process: gamma"),
    ({"process": "poisson", "rate_per_s": float("nan")}, "requests[0].arrival.rate_per_s", "finite"),
    ({"process": "poisson", "rate_per_s": 1.0, "hourly": [1.0] * 23}, "requests[0].arrival", "24 relative rates"),
    ({"process": "poisson", "rate_per_s": 1.0, "hourly": [-1.0] + [1.0] * 23}, "requests[0].arrival.hourly[0]",
     "greater than or equal to 0"),
    ({"process": "poisson", "rate_per_s": 1.0, "hourly": [0.0] * 24}, "requests[0].arrival", "above 0"),
    ({"process": "poisson", "rate_per_s": 1.0, "sinusoid": {"peak_to_trough": 0.5}},
     "requests[0].arrival.sinusoid.peak_to_trough", "greater than or equal to 1"),
    ({"process": "poisson", "rate_per_s": 1.0, "annual_growth": -1.0}, "requests[0].arrival.annual_growth",
     "greater than -1"),
    ({"process": "poisson", "rate_per_s": 1.0, "annual_growth": float("inf")}, "requests[0].arrival.annual_growth",
     "finite"),
])
def test_bad_arrivals_are_refused_with_their_key_path(arrival, where, message):
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(scenario(requests__0__arrival=arrival), progress=False)
    assert where in str(info.value)


def test_a_decline_that_never_reaches_the_count_is_refused():
    with pytest.raises(CapsimError, match="do not arrive within 1,000 years"):
        simulator.run(scenario(requests__0__requests=10_000,
                               requests__0__arrival={"process": "poisson", "rate_per_s": 1e-6,
                                                     "annual_growth": -0.99}), progress=False)
