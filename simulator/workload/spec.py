"""Scenario models of the `workload:` list: where jobs come from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import parse_duration
from simulator.workload.distributions import DurationDist, GpuChoice


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PoissonArrivals(_Spec):
    process: Literal["poisson"]
    rate_per_hour: float = Field(gt=0)


ArrivalSpec = Annotated[PoissonArrivals, Field(discriminator="process")]


class SyntheticWorkload(_Spec):
    """Jobs drawn from distributions: `jobs: N` of them, or all that arrive `until` a time."""

    kind: Literal["synthetic"]
    name: str = "synthetic"
    jobs: int | None = Field(default=None, ge=1)
    until: float | None = None
    start: float = 0.0
    arrival: ArrivalSpec
    gpus: Annotated[int, Field(ge=1)] | GpuChoice = 1
    duration: DurationDist
    users: int = Field(default=1, ge=1, description="jobs are spread uniformly over this many users")

    _durations = field_validator("until", "start", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _one_stop(self):
        if (self.jobs is None) == (self.until is None):
            raise ValueError("give exactly one of 'jobs' (a count) or 'until' (a duration such as 30d)")
        if self.until is not None and self.until <= self.start:
            raise ValueError("'until' must be later than 'start'")
        return self

    def max_gpus(self) -> int:
        return self.gpus if isinstance(self.gpus, int) else self.gpus.max()


class TraceWorkload(_Spec):
    """A job list or a cluster trace; `path` is relative to the scenario file."""

    kind: Literal["trace"]
    format: str = "csv"
    path: str
    strict: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


WorkloadSpec = Annotated[SyntheticWorkload | TraceWorkload, Field(discriminator="kind")]
