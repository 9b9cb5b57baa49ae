"""Scenario models of the `workload:` list: where jobs come from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import MAX_COUNT, parse_duration
from simulator.workload.arrivals import ArrivalSpec, BurstSpec, DiurnalArrivals, PoissonArrivals
from simulator.workload.distributions import DurationDist, FractionChoice, GpuChoice
from simulator.workload.growth import GrowthSpec

__all__ = ["ArrivalSpec", "BurstSpec", "DiurnalArrivals", "GrowthSpec", "JobClass", "LayoutSpec",
           "PoissonArrivals", "PresetWorkload", "SyntheticWorkload", "TraceWorkload", "WorkloadSpec"]

Gpus = Annotated[int, Field(ge=1, le=MAX_COUNT)] | GpuChoice
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]


class _Spec(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def _optional_duration(v):
    return None if v is None else parse_duration(v)


class JobClass(_Spec):
    """One kind of job in a mix: its share, its sizes and its own duration distribution. A list of classes
    keeps the size–duration correlation a single (gpus, duration) pair would lose."""

    weight: float = Field(gt=0, description="relative share of jobs of this class")
    gpus: Gpus = Field(default=1, description="GPUs per job: a number or {choice, weights}")
    duration: DurationDist = Field(description="run-time distribution of this class")
    slice_shape: str | None = Field(default=None, description=(
        "the TPU slice each job of this class takes on a torus pool, AxBxC (AxB on a 2-D torus; the "
        "slice_shape column), in place of the standard shape of its size: gpus must be its chips"))

    @model_validator(mode="after")
    def _shape_of_size(self):
        if self.slice_shape is not None:
            from simulator.cluster.torus import shape_of

            shape = shape_of(self.slice_shape)  # its ValueError names the text
            chips = int(shape[0] * shape[1] * shape[2])
            if self.gpus != chips:
                raise ValueError(f"slice_shape {self.slice_shape} has {chips} chips: give gpus: {chips} (a "
                                 f"class naming a slice takes one size), got {self.gpus!r}")
        return self


class LayoutSpec(_Spec):
    """Parallelism of a model job; what is left over is data parallelism."""

    tp: int = Field(default=1, ge=1, le=MAX_COUNT, description="tensor-parallel degree")
    pp: int = Field(default=1, ge=1, le=MAX_COUNT, description="pipeline stages")
    cp: int = Field(default=1, ge=1, le=MAX_COUNT, description="context-parallel degree")


class _Horizon(_Spec):
    """`jobs: N` of them, or all that arrive before `until`, starting at `start`."""

    jobs: Count | None = Field(default=None, description="how many jobs (or give `until`)")
    until: float | None = Field(default=None, description="all jobs that arrive before this time (or give `jobs`)")
    start: float = Field(default=0.0, ge=0, description="the source's first arrival time")
    growth: GrowthSpec | None = Field(default=None, description="demand growth over time")

    _durations = field_validator("until", "start", mode="before")(_optional_duration)

    @model_validator(mode="after")
    def _one_stop(self):
        if (self.jobs is None) == (self.until is None):
            raise ValueError("give exactly one of 'jobs' (a count) or 'until' (a duration such as 30d)")
        if self.until is not None and self.until <= self.start:
            raise ValueError("'until' must be later than 'start'")
        return self


class SyntheticWorkload(_Horizon):
    """Jobs drawn from distributions. Each job gets a size and a duration from `gpus` + `duration`, from one
    of `classes`, or (model jobs) a size from `gpus` and a runtime from the performance model for `model`
    trained on `tokens` (or `steps`, or `samples` for FLOPs-based models) on the device it is placed on."""

    kind: Literal["synthetic"]
    name: str = Field(default="synthetic", description="job-id prefix")
    arrival: ArrivalSpec = Field(description="the arrival process: poisson or diurnal, with optional bursts")
    gpus: Gpus = Field(default=1, description="GPUs per job: a number or {choice, weights}")
    duration: DurationDist | None = Field(default=None, description="run-time distribution (or classes, or model)")
    classes: list[JobClass] | None = Field(default=None, min_length=1, description=(
        "a mix of {weight, gpus, duration} classes that keeps size and duration correlated"))
    model: str | None = Field(default=None, description=(
        "a zoo model (workloads/models/): run times come from the performance model on the placed device"))
    tokens: float | None = Field(default=None, gt=0, description="a model job's training budget in tokens")
    steps: Count | None = Field(default=None, description="a model job's budget in steps")
    samples: float | None = Field(default=None, gt=0, description="a model job's budget in samples (sequences)")
    layout: LayoutSpec | None = Field(default=None, description="a model job's parallel layout (default: chosen)")
    stack: str | None = Field(default=None, description=(
        "software stack a model job trains with (hardware_profiles/stacks/; default megatron-core)"))
    users: Count = Field(default=1, description="jobs are spread uniformly over this many users")
    comm_fraction: float | None = Field(default=None, ge=0, le=1, description=(
        "share of a job's run time spent communicating between nodes (a contended fabric slows it)"))
    home_site: str | None = Field(default=None, min_length=1, description=(
        "the site (sites[].name) where the jobs' input data lives (with `sites:`)"))
    input_gb: float | None = Field(default=None, ge=0, le=1e9, description=(
        "GB of input each job moves over a wide-area link when it runs away from its home_site"))
    gpu_fraction: Annotated[float, Field(gt=0, le=1)] | FractionChoice | None = Field(default=None, description=(
        "the share of one GPU each 1-GPU job asks for (gpu_fraction column): a number or {choice, weights}, 1 "
        "for a whole GPU; pools with `sharing` place shares on partly used GPUs, others give a whole GPU"))

    @model_validator(mode="after")
    def _one_job_shape(self):
        given = [k for k in ("duration", "classes", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'duration', 'classes' (a list of {weight, gpus, duration}) "
                             f"or 'model' (with tokens, steps or samples); got {given or 'none'}")
        if self.classes is not None and "gpus" in self.model_fields_set:
            raise ValueError("with 'classes', give 'gpus' inside each class")
        if self.growth is not None and any(c.slice_shape is not None for c in self.classes or ()):
            raise ValueError("growth changes job sizes, and a class naming a slice_shape takes one size")
        budget = [k for k in ("tokens", "steps", "samples") if getattr(self, k) is not None]
        if self.model is not None and len(budget) != 1:
            raise ValueError("a model job needs exactly one of 'tokens', 'steps' or 'samples'")
        if self.model is None and (budget or self.layout is not None or self.stack is not None):
            extra = budget + (["layout"] if self.layout else []) + (["stack"] if self.stack else [])
            raise ValueError(f"{', '.join(extra)} only apply with 'model'")
        if self.model is not None and not self.model.endswith((".yaml", ".yml")):
            from simulator.perf.zoo import list_models

            # A zoo name is a file name in workloads/models/, never a path out of it.
            if self.model not in list_models():
                raise ValueError(f"unknown model {self.model!r}; the zoo has: {', '.join(list_models())} "
                                 "(or give a model YAML file, relative to the scenario file)")
        if self.stack is not None:
            from simulator.perf.stacks import list_stacks

            if self.stack not in list_stacks():
                raise ValueError(f"unknown stack {self.stack!r}; expected one of {', '.join(list_stacks())}")
        return self

    def max_gpus(self) -> int:
        sizes = [c.gpus for c in self.classes] if self.classes else [self.gpus]
        return max(g if isinstance(g, int) else g.max() for g in sizes)


class PresetWorkload(_Horizon):
    """A shipped or fitted preset (`name: helios-venus`, see workloads/presets/) or a preset YAML (`path`,
    relative to the scenario file), with its arrival rate scaled by `rate_scale`."""

    kind: Literal["preset"]
    name: str | None = Field(default=None, description="a shipped preset: helios-venus, philly, acme-seren")
    path: str | None = Field(default=None, description="a preset YAML, relative to the scenario file")
    rate_scale: float = Field(default=1.0, gt=0, description="multiplies the preset's arrival rate")
    label: str | None = Field(default=None, description="job-id prefix (default: the preset's name)")
    users: Count | None = Field(default=None, description="spread jobs over this many users")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v):
        # A shipped preset is a file name in workloads/presets/, never a path out of that folder.
        if v is not None and (not v or any(c in v for c in "/\\:") or v.startswith(".")):
            raise ValueError(f"expected the name of a shipped preset, not a path, got {v!r} (a preset file of "
                             "your own goes in 'path:', relative to the scenario file)")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a shipped preset) or 'path' (a preset YAML)")
        return self


class TraceWorkload(_Spec):
    """A job list or a cluster trace; `path` is relative to the scenario file."""

    kind: Literal["trace"]
    format: str = Field(default="csv", description=(
        "csv, parquet, helios, philly, alibaba2023, pai, acme, sacct, swf"))
    path: str = Field(description="the trace file, relative to the scenario file")
    strict: bool = Field(default=True, description="a bad row is an error; false skips and counts bad rows")
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific loader options")


WorkloadSpec = Annotated[SyntheticWorkload | PresetWorkload | TraceWorkload, Field(discriminator="kind")]
