"""Duration predictions for the policies that order or plan by job length (sjf, srtf, backfilling, edf).

Planners should see what bad estimates cost, so a prediction can come from

* ``oracle``  the job's true duration, optionally with multiplicative lognormal error;
* ``user``    the job's ``estimate`` column (what users type into ``--time``), else the oracle;
* ``history`` the mean or median of the same user's completed jobs (learned through ``on_complete``),
  falling back to ``default`` until the user has history.

A prediction is drawn once per job, at its first request, so a job keeps one (possibly wrong) estimate
for its lifetime. Randomness comes only from the policy's ``context.rng`` (determinism).
"""

from __future__ import annotations

from collections import defaultdict, deque
from statistics import median
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.units import parse_duration


class EstimateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["oracle", "user", "history"] = "oracle"
    error: Literal["none", "lognormal"] = "none"
    sigma: float = Field(default=0.5, ge=0)
    history: Literal["mean", "median"] = "mean"
    window: int = Field(default=20, ge=1, description="completed jobs per user remembered by `history`")
    default: float = Field(default=3600.0, gt=0, description="prediction for a user with no history yet")

    _d = field_validator("default", mode="before")(parse_duration)


class DurationPredictor:
    """Predicted run time of a job on the devices it asked for; cached per job index."""

    def __init__(self, options: EstimateOptions, rng: np.random.Generator):
        self.options = options
        self.rng = rng
        self._cache: dict[int, float] = {}
        self._by_user: dict[object, deque[float]] = defaultdict(lambda: deque(maxlen=options.window))

    def predict(self, job) -> float:
        cached = self._cache.get(job.index)
        if cached is not None:
            return cached
        value = self._base(job)
        if self.options.error == "lognormal" and self.options.sigma > 0:
            value *= float(self.rng.lognormal(0.0, self.options.sigma))
        self._cache[job.index] = value
        return value

    def _base(self, job) -> float:
        source = self.options.source
        if source == "user" and job.estimate is not None:
            return float(job.estimate)
        if source == "history":
            seen = self._by_user.get(job.user)
            if not seen:
                return self.options.default
            return float(np.mean(seen)) if self.options.history == "mean" else float(median(seen))
        return float(job.duration)

    def remaining(self, job) -> float:
        """Predicted run time still to do at the job's requested size (queued jobs)."""
        return self.predict(job) * job.frac_left

    def observe(self, job) -> None:
        """A job completed: learn its true duration and forget its cached prediction."""
        if self.options.source == "history":
            self._by_user[job.user].append(float(job.duration))
        self._cache.pop(job.index, None)
