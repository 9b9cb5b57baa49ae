"""Job-size and duration distributions as validated specs that sample with a numpy Generator."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import MAX_COUNT, MAX_DURATION_S, MAX_DURATION_TEXT, parse_duration

Seconds = Annotated[float, Field(ge=0)]


class _Spec(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Dist(_Spec):
    """A run-time distribution: besides its own parameters' ranges, its mean must be a run time (finite,
    at most 10,000 years), so a sigma or a shape that puts the mean out of reach is refused here rather
    than as infinite durations later."""

    @model_validator(mode="after")
    def _finite_mean(self):
        try:
            with np.errstate(all="ignore"):
                mean = float(self.mean_bound())
        except OverflowError:
            mean = math.inf
        except (TypeError, ValueError, ZeroDivisionError):
            return self  # parameters missing or inconsistent: the distribution's own check says which
        if not (math.isfinite(mean) and mean <= MAX_DURATION_S):
            raise ValueError(f"these parameters give a mean run time of {mean:.3g} s, more than "
                             f"{MAX_DURATION_TEXT}")
        return self

    def mean_bound(self) -> float:
        """The mean run time, or an upper bound of it, without scipy (which validation should not import)."""
        return self.mean()


def _seconds(value):
    return parse_duration(value)


def _duration_list(values):
    if not isinstance(values, list | tuple):
        raise ValueError(f"expected a list of run times such as [10m, 2h], got {values!r}")
    seconds = [parse_duration(x) for x in values]
    if any(x < 0 for x in seconds):
        raise ValueError("run times must not be negative")
    return seconds


class Constant(_Dist):
    dist: Literal["constant"]
    value: float = Field(ge=0, description="every job's run time")

    _v = field_validator("value", mode="before")(_seconds)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def mean(self) -> float:
        return self.value


class Exponential(_Dist):
    dist: Literal["exponential"]
    mean_: float = Field(alias="mean", gt=0, description="mean run time")

    _v = field_validator("mean_", mode="before")(_seconds)

    def sample(self, rng, n):
        return rng.exponential(self.mean_, n)

    def mean(self):
        return self.mean_


class LogNormal(_Dist):
    """Either (median, sigma) or (mean, sigma): the form trace papers report, median being the robust one."""

    dist: Literal["lognormal"]
    sigma: float = Field(gt=0, le=20, description="standard deviation of the log run time")
    median: float | None = Field(default=None, gt=0, description="median run time (or give mean)")
    mean_: float | None = Field(default=None, gt=0, alias="mean", description="mean run time (or give median)")
    max: float | None = Field(default=None, gt=0, description="truncation, e.g. a cluster's time limit (clipped)")

    _v = field_validator("median", "mean_", "max", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _one_location(self):
        if (self.median is None) == (self.mean_ is None):
            raise ValueError("give exactly one of 'median' or 'mean' with 'sigma'")
        return self

    @property
    def mu(self) -> float:
        if self.median is not None:
            return float(np.log(self.median))
        return float(np.log(self.mean_) - self.sigma**2 / 2)

    def sample(self, rng, n):
        x = rng.lognormal(self.mu, self.sigma, n)
        return np.minimum(x, self.max) if self.max is not None else x

    def mean_bound(self):
        with np.errstate(over="ignore"):
            full = float(np.exp(np.float64(self.mu) + np.float64(self.sigma) ** 2 / 2))
        return full if self.max is None else min(full, self.max)

    def mean(self):
        full = float(np.exp(self.mu + self.sigma**2 / 2))
        if self.max is None:
            return full
        # E[min(X, M)] for a lognormal clipped at M (the clipped mass sits at M).
        from scipy.stats import norm

        log_m = np.log(self.max)
        below = full * norm.cdf((log_m - self.mu - self.sigma**2) / self.sigma)
        return float(below + self.max * norm.sf((log_m - self.mu) / self.sigma))


class Weibull(_Dist):
    dist: Literal["weibull"]
    shape: float = Field(gt=0, description="Weibull shape k (< 1: heavy-tailed)")
    scale: float = Field(gt=0, description="Weibull scale (a duration)")

    _v = field_validator("scale", mode="before")(_seconds)

    def sample(self, rng, n):
        return self.scale * rng.weibull(self.shape, n)

    def mean(self):
        from scipy.special import gamma

        return float(self.scale * gamma(1 + 1 / self.shape))

    def mean_bound(self):
        return self.scale * math.exp(math.lgamma(1 + 1 / self.shape))  # OverflowError when it is not finite


class Empirical(_Dist):
    """Resample observed values (with probability weights), optionally interpolating between quantiles."""

    dist: Literal["empirical"]
    values: list[float] = Field(min_length=1, description="run times drawn with replacement")
    weights: list[float] | None = Field(default=None, description="relative weights of the values (default equal)")

    _durations = field_validator("values", mode="before")(_duration_list)

    @model_validator(mode="after")
    def _check(self):
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"'weights' has {len(self.weights)} entries but 'values' has {len(self.values)}")
            if min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError("'weights' must be non-negative with a positive sum")
        return self

    def _p(self):
        if self.weights is None:
            return None
        w = np.asarray(self.weights, dtype=float)
        return w / w.sum()

    def sample(self, rng, n):
        return rng.choice(np.asarray(self.values, dtype=float), size=n, p=self._p())

    def mean(self):
        p = self._p()
        v = np.asarray(self.values, dtype=float)
        return float(v.mean() if p is None else v @ p)


class Quantiles(_Dist):
    """An inverse CDF given at probability knots: `{dist: quantiles, p: [0, .5, 1], values: [1s, 200s, 2d]}`.
    Between two positive knots it is log-linear (geometric), elsewhere linear: durations spread over
    decades, and linear interpolation would overstate a heavy tail's mean. Fitted presets use it because
    it reproduces a trace's median and mean without a parametric shape."""

    dist: Literal["quantiles"]
    p: list[float] = Field(min_length=2, description="probability knots from 0 to 1, increasing")
    values: list[float] = Field(min_length=2, description="the run time at each knot, non-decreasing")

    _durations = field_validator("values", mode="before")(_duration_list)

    @model_validator(mode="after")
    def _check(self):
        p, v = np.asarray(self.p), np.asarray(self.values)
        if len(p) != len(v):
            raise ValueError(f"'p' has {len(p)} entries but 'values' has {len(v)}")
        if p[0] != 0 or p[-1] != 1 or np.any(np.diff(p) <= 0):
            raise ValueError("'p' must increase strictly from 0 to 1")
        if np.any(np.diff(v) < 0) or v[0] < 0:
            raise ValueError("'values' must be non-negative and non-decreasing")
        return self

    def quantile(self, q) -> np.ndarray:
        p, v = np.asarray(self.p), np.asarray(self.values, float)
        q = np.asarray(q, float)
        i = np.clip(np.searchsorted(p, q, side="right") - 1, 0, len(p) - 2)
        lo, hi = v[i], v[i + 1]
        frac = (q - p[i]) / (p[i + 1] - p[i])
        with np.errstate(divide="ignore", invalid="ignore"):
            geometric = lo * (hi / lo) ** frac
        return np.where(lo > 0, geometric, lo + (hi - lo) * frac)

    def sample(self, rng, n):
        return self.quantile(rng.random(n))

    def mean(self):
        p, v = np.asarray(self.p), np.asarray(self.values, float)
        lo, hi, width = v[:-1], v[1:], np.diff(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_mean = (hi - lo) / np.log(hi / lo)  # mean of a geometric segment
        seg = np.where((lo > 0) & (hi > lo), log_mean, (lo + hi) / 2)
        return float(np.sum(width * seg))


class Mixture(_Dist):
    """A weighted mixture: e.g. many short debugging jobs and a tail of long training runs."""

    dist: Literal["mixture"]
    components: list[DurationDist] = Field(min_length=1, description="the mixed distributions")
    weights: list[float] = Field(description="relative weight of each component")

    @model_validator(mode="after")
    def _check(self):
        if len(self.weights) != len(self.components) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("'weights' must have one non-negative entry per component and a positive sum")
        return self

    def sample(self, rng, n):
        w = np.asarray(self.weights, float)
        which = rng.choice(len(self.components), size=n, p=w / w.sum())
        out = np.empty(n)
        for i, comp in enumerate(self.components):
            mask = which == i
            out[mask] = comp.sample(rng, int(mask.sum()))
        return out

    def mean(self):
        w = np.asarray(self.weights, float)
        return float(sum(c.mean() * wi for c, wi in zip(self.components, w / w.sum(), strict=True)))

    def mean_bound(self):
        w = np.asarray(self.weights, float)
        return float(sum(c.mean_bound() * wi for c, wi in zip(self.components, w / w.sum(), strict=True)))


DurationDist = Annotated[
    Constant | Exponential | LogNormal | Weibull | Empirical | Quantiles | Mixture, Field(discriminator="dist")
]
Mixture.model_rebuild()


class _Choice(_Spec):
    """A value per job drawn from `choice` with `weights` (the subclass declares both)."""

    @model_validator(mode="after")
    def _check(self):
        if self.weights is not None and (
            len(self.weights) != len(self.choice) or min(self.weights) < 0 or sum(self.weights) <= 0
        ):
            raise ValueError("'weights' must have one non-negative entry per choice and a positive sum")
        return self

    def _draw(self, rng, n, dtype):
        p = None
        if self.weights is not None:
            p = np.asarray(self.weights, float)
            p = p / p.sum()
        return rng.choice(np.asarray(self.choice, dtype=dtype), size=n, p=p)


class GpuChoice(_Choice):
    """GPUs per job: `{choice: [1, 8, 64], weights: [0.7, 0.2, 0.1]}`."""

    choice: list[Annotated[int, Field(ge=1, le=MAX_COUNT)]] = Field(min_length=1, description="GPU counts to draw from")
    weights: list[float] | None = Field(default=None, description="relative weight of each count (default equal)")

    def sample(self, rng, n):
        return self._draw(rng, n, np.int64)

    def max(self) -> int:
        return max(self.choice)


class FractionChoice(_Choice):
    """A share of one GPU per job: `{choice: [0.25, 0.5, 1], weights: [0.5, 0.3, 0.2]}` (1: a whole GPU)."""

    choice: list[Annotated[float, Field(gt=0, le=1)]] = Field(min_length=1, description="shares to draw from")
    weights: list[float] | None = Field(default=None, description="relative weight of each share (default equal)")

    def sample(self, rng, n):
        return self._draw(rng, n, float)

    def mean(self) -> float:
        w = np.ones(len(self.choice)) if self.weights is None else np.asarray(self.weights, float)
        return float(np.asarray(self.choice, float) @ (w / w.sum()))
