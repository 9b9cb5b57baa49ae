"""Demand growth over time: a multiplier on arrival rates and, optionally, on job sizes.

`growth: {annual: 0.30}` compounds the arrival rate by 30% a year; `growth: {curve: [[0d, 1.0], [180d, 1.5]]}`
is piecewise linear between the points and flat beyond them. `sizes: 0.1` grows GPUs per job by 10% a year.
Time is the workload clock (seconds since the scenario's t = 0), so two sources grow in step.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import MAX_COUNT, parse_duration

YEAR_S = 365.0 * 86400.0
NODE_GPUS = 8  # sizes above one node grow in whole 8-GPU nodes (the DGX/HGX node of every trace here)


class GrowthSpec(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    annual: float | None = Field(default=None, gt=-1, description="compound yearly growth of the arrival rate")
    curve: list[tuple[float, float]] | None = Field(default=None, min_length=1,
                                                     description="[[time, multiplier], ...], linear in between")
    sizes: float = Field(default=0.0, ge=0, description="compound yearly growth of GPUs per job")
    max_gpus: int | None = Field(default=None, ge=1, le=MAX_COUNT, description="grown sizes never exceed this")

    @field_validator("curve", mode="before")
    @classmethod
    def _curve_times(cls, v):
        if v is None:
            return v
        if not isinstance(v, list) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in v):
            raise ValueError("expected a list of [time, multiplier] pairs, e.g. [[0d, 1.0], [180d, 1.5]]")
        return [(parse_duration(t), m) for t, m in v]

    @model_validator(mode="after")
    def _check(self):
        if self.annual is not None and self.curve is not None:
            raise ValueError("give one of 'annual' (compound rate) or 'curve' (piecewise linear), not both")
        if self.curve is not None:
            times = [t for t, _ in self.curve]
            if any(b <= a for a, b in zip(times, times[1:], strict=False)):
                raise ValueError("'curve' times must increase")
            if any(m <= 0 for _, m in self.curve):
                raise ValueError("'curve' multipliers must be positive")
        return self

    @property
    def changes_rate(self) -> bool:
        return self.annual is not None or self.curve is not None

    def multiplier(self, t: np.ndarray | float) -> np.ndarray:
        """Arrival-rate multiplier at workload time(s) t."""
        t = np.asarray(t, dtype=float)
        if self.annual is not None:
            return (1.0 + self.annual) ** (t / YEAR_S)
        if self.curve is not None:
            times, mults = zip(*self.curve, strict=True)
            return np.interp(t, times, mults)
        return np.ones_like(t)

    def max_multiplier(self, t0: float, t1: float) -> float:
        """The largest multiplier on [t0, t1]: both forms are monotone between knots, so ends and knots suffice."""
        points = [t0, t1] + ([t for t, _ in self.curve if t0 < t < t1] if self.curve else [])
        return float(np.max(self.multiplier(np.asarray(points))))

    def grow_sizes(self, gpus: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sizes scaled by (1 + sizes)^(t / year), rounded at random to a neighbouring valid size
        (1, 2, 4, then whole nodes) so that the mean grows at exactly the stated rate."""
        gpus = np.asarray(gpus, dtype=np.int64)
        if self.sizes == 0 or len(gpus) == 0:
            return gpus
        with np.errstate(over="ignore"):  # sizes past 2^53 are capped there (such a job fits no cluster)
            target = np.minimum(gpus * (1.0 + self.sizes) ** (np.asarray(t, dtype=float) / YEAR_S), MAX_COUNT)
        # Round from the job's own size upward, so a 3-GPU job at t = 0 stays a 3-GPU job.
        lo = np.maximum(gpus, ladder_floor(target))
        hi = ladder_above(lo)
        up = rng.random(len(gpus)) < (target - lo) / (hi - lo)
        grown = np.where(up, hi, lo)
        if self.max_gpus is not None:
            grown = np.minimum(grown, np.maximum(self.max_gpus, gpus))
        return grown.astype(np.int64)


# The valid sizes: 1, 2, 4, then multiples of a node. Computed, not listed, so that a size near 2^53
# costs no more than a small one.
def ladder_floor(x: np.ndarray) -> np.ndarray:
    """The largest valid size <= x (x >= 1)."""
    x = np.asarray(x, dtype=float)
    nodes = np.floor(x / NODE_GPUS) * NODE_GPUS
    return np.where(x < 2, 1, np.where(x < 4, 2, np.where(x < NODE_GPUS, 4, nodes))).astype(np.int64)


def ladder_above(v: np.ndarray) -> np.ndarray:
    """The smallest valid size > v (v >= 1)."""
    v = np.asarray(v, dtype=np.int64)
    nodes = (v // NODE_GPUS + 1) * NODE_GPUS
    return np.where(v < 2, 2, np.where(v < 4, 4, np.where(v < NODE_GPUS, NODE_GPUS, nodes))).astype(np.int64)


def valid_sizes(limit: int) -> np.ndarray:
    """1, 2, 4, then multiples of a node, up to at least `limit`."""
    nodes = np.arange(NODE_GPUS, max(limit, NODE_GPUS) + 2 * NODE_GPUS, NODE_GPUS)
    return np.concatenate([[1, 2, 4], nodes]).astype(np.int64)
