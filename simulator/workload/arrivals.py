"""Arrival processes: Poisson, diurnal/weekly (non-homogeneous Poisson by thinning) and periodic bursts.

Time 0 of the workload clock is a Monday 00:00, so `hourly[0]` is midnight and `weekly[0]` is Monday.
Profiles are relative: they are normalised to mean 1, so `rate_per_hour` is always the long-run mean rate.
All randomness comes from the Generator passed in; everything is vectorised.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import MAX_COUNT, parse_duration
from simulator.workload.growth import GrowthSpec

HOUR_S, DAY_S, WEEK_S = 3600.0, 86400.0, 604800.0


class _Spec(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BurstSpec(_Spec):
    """`{every: 7d, size: 50, jitter: 1h}`: `size` extra jobs every `every`, spread uniformly over `jitter`
    after each burst instant (0 = all at once). The first burst is at `first` after the source's start."""

    every: float = Field(description="time between bursts")
    size: int = Field(ge=1, le=MAX_COUNT, description="extra jobs per burst")
    jitter: float = Field(default=0.0, description="a burst's jobs spread uniformly over this time (0: at once)")
    first: float = Field(default=0.0, description="the first burst, after the source's start")

    _durations = field_validator("every", "jitter", "first", mode="before")(parse_duration)

    @model_validator(mode="after")
    def _check(self):
        if self.every <= 0:
            raise ValueError("'every' must be a positive duration")
        if self.jitter < 0 or self.first < 0:
            raise ValueError("'jitter' and 'first' must not be negative")
        return self


class _Arrivals(_Spec):
    rate_per_hour: float = Field(gt=0, description="long-run mean arrival rate (jobs per hour)")
    bursts: BurstSpec | None = Field(default=None, description="extra jobs at regular instants")

    def relative_rate(self, t: np.ndarray) -> np.ndarray:
        return np.ones_like(t, dtype=float)

    def peak_relative_rate(self) -> float:
        return 1.0

    def scaled(self, factor: float):
        return self.model_copy(update={"rate_per_hour": self.rate_per_hour * factor})


class PoissonArrivals(_Arrivals):
    process: Literal["poisson"]


class DiurnalArrivals(_Arrivals):
    """A day-and-week pattern: explicit `hourly` (24) and/or `weekly` (7) relative rates, or a named
    `shape: sinusoid` with `amplitude` (0..1) peaking at `peak_hour`; `weekend` scales Saturday and Sunday."""

    process: Literal["diurnal"]
    hourly: list[float] | None = Field(default=None, min_length=24, max_length=24, description=(
        "24 relative rates, hour 0 first (t = 0 is Monday 00:00)"))
    weekly: list[float] | None = Field(default=None, min_length=7, max_length=7, description=(
        "7 relative rates, Monday first"))
    shape: Literal["sinusoid"] | None = Field(default=None, description="a named daily shape instead of hourly")
    amplitude: float = Field(default=0.5, ge=0, lt=1, description="the sinusoid's swing around the mean")
    peak_hour: float = Field(default=14.0, ge=0, lt=24, description="the sinusoid's peak hour")
    weekend: float | None = Field(default=None, gt=0, description="Saturday and Sunday rate relative to weekdays")

    @model_validator(mode="after")
    def _check(self):
        if self.shape is not None and self.hourly is not None:
            raise ValueError("give either 'hourly' (24 relative rates) or 'shape', not both")
        if self.weekend is not None and self.weekly is not None:
            raise ValueError("give either 'weekly' (7 relative rates) or 'weekend', not both")
        for key in ("hourly", "weekly"):
            values = getattr(self, key)
            if values is not None and (min(values) < 0 or sum(values) <= 0):
                raise ValueError(f"'{key}' must be non-negative with a positive sum")
        if self.hourly is None and self.shape is None and self.weekly is None and self.weekend is None:
            raise ValueError("give 'hourly', 'shape: sinusoid', 'weekly' or 'weekend' (else use process: poisson)")
        return self

    def hour_profile(self) -> np.ndarray:
        if self.hourly is not None:
            h = np.asarray(self.hourly, float)
        elif self.shape == "sinusoid":
            hours = np.arange(24) + 0.5
            h = 1.0 + self.amplitude * np.cos(2 * np.pi * (hours - self.peak_hour) / 24)
        else:
            h = np.ones(24)
        return h / h.mean()

    def day_profile(self) -> np.ndarray:
        if self.weekly is not None:
            d = np.asarray(self.weekly, float)
        elif self.weekend is not None:
            d = np.array([1, 1, 1, 1, 1, self.weekend, self.weekend], float)
        else:
            d = np.ones(7)
        return d / d.mean()

    def relative_rate(self, t):
        # Mean 1 over a week: normalise the product, since hour and day profiles need not be independent.
        table = np.outer(self.day_profile(), self.hour_profile()).ravel()
        table = table / table.mean()
        return table[(np.floor(np.asarray(t) / HOUR_S).astype(np.int64)) % 168]

    def peak_relative_rate(self):
        table = np.outer(self.day_profile(), self.hour_profile())
        return float(table.max() / table.mean())


ArrivalSpec = Annotated[PoissonArrivals | DiurnalArrivals, Field(discriminator="process")]


def arrival_times(arrival, rng: np.random.Generator, start: float, until: float | None = None,
                  jobs: int | None = None, growth: GrowthSpec | None = None) -> np.ndarray:
    """Sorted arrival instants from `start`: all before `until`, or the first `jobs` of them."""
    growth = growth if growth is not None and growth.changes_rate else None
    if isinstance(arrival, PoissonArrivals) and growth is None and arrival.bursts is None:
        return _homogeneous(3600.0 / arrival.rate_per_hour, rng, start, until, jobs)
    if until is not None:
        times = np.concatenate([_thinned(arrival, growth, rng, start, until),
                                _bursts(arrival.bursts, growth, rng, start, start, until)])
        return np.sort(times[times < until])  # a burst's jitter may spill past the horizon
    chunks, count, t0 = [], 0, start
    while count < jobs:
        # Windows sized to the jobs still needed at the current rate, at least a week so profiles even out.
        rate_s = arrival.rate_per_hour / 3600.0 * (growth.multiplier(t0) if growth else 1.0)
        t1 = t0 + max((jobs - count) / rate_s * 1.2, WEEK_S)
        window = np.sort(np.concatenate([_thinned(arrival, growth, rng, t0, t1),
                                         _bursts(arrival.bursts, growth, rng, start, t0, t1)]))
        chunks.append(window)
        count += len(window)
        t0 = t1
    return np.concatenate(chunks)[:jobs]


def _homogeneous(mean_gap: float, rng, start, until, jobs) -> np.ndarray:
    """Exponential gaps; kept separate from thinning so plain Poisson streams stay as they always were."""
    if jobs is not None:
        return start + np.cumsum(rng.exponential(mean_gap, jobs))
    chunks, t = [], start
    while True:
        # Draw in chunks of the expected count (plus slack) so one call usually suffices.
        n = int((until - start) / mean_gap * 1.1) + 64
        times = t + np.cumsum(rng.exponential(mean_gap, n))
        chunks.append(times[times < until])
        if times[-1] >= until:
            return np.concatenate(chunks)
        t = times[-1]


def _thinned(arrival, growth, rng, t0: float, t1: float) -> np.ndarray:
    """Lewis–Shedler thinning: a Poisson stream at the peak rate on [t0, t1), each point kept with
    probability rate(t) / peak."""
    base = arrival.rate_per_hour / 3600.0
    peak = base * arrival.peak_relative_rate() * (growth.max_multiplier(t0, t1) if growth else 1.0)
    n = rng.poisson(peak * (t1 - t0))
    t = np.sort(t0 + rng.random(n) * (t1 - t0))
    rate = base * arrival.relative_rate(t) * (growth.multiplier(t) if growth else 1.0)
    return t[rng.random(n) * peak < rate]


def _bursts(bursts: BurstSpec | None, growth, rng, origin: float, t0: float, t1: float) -> np.ndarray:
    """Burst jobs whose burst instant falls in [t0, t1); a burst's size grows with the arrival rate."""
    if bursts is None:
        return np.empty(0)
    first = origin + bursts.first
    k0 = max(0, int(np.ceil((t0 - first) / bursts.every)))
    instants = first + bursts.every * np.arange(k0, int(np.ceil((t1 - first) / bursts.every)) + 1)
    instants = instants[(instants >= t0) & (instants < t1)]
    sizes = np.full(len(instants), float(bursts.size))
    if growth is not None:
        sizes = sizes * growth.multiplier(instants)
    counts = np.floor(sizes + rng.random(len(instants))).astype(np.int64)  # unbiased rounding
    at = np.repeat(instants, counts)
    return at + rng.random(len(at)) * bursts.jitter
