"""Turn the scenario's `workload:` list into one validated job table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.schema import validate_jobs
from simulator.workload.size import check_size
from simulator.workload.spec import PresetWorkload, SyntheticWorkload, TraceWorkload
from simulator.workload.synthetic import generate


def load_trace_source(spec: TraceWorkload, scenario) -> pd.DataFrame:
    from simulator.workload.traces import load_trace

    path = scenario.base_dir / spec.path
    loaded = load_trace(path, spec.format, strict=spec.strict, **spec.options)
    if loaded.skipped:  # strict: false skips malformed rows; say so once, with each kind counted
        warnings.warn(loaded.skipped_text(), stacklevel=2)
    return loaded.jobs


def reference_device(scenario) -> str:
    """Model jobs' `duration` is their runtime on the first pool's device (see perf/jobs.py)."""
    return scenario.cluster.pools[0].device


def build_source(spec, scenario, rng: np.random.Generator) -> pd.DataFrame:
    if isinstance(spec, PresetWorkload):
        from simulator.workload.presets import resolve_preset

        spec = resolve_preset(spec, scenario.base_dir)
    if isinstance(spec, SyntheticWorkload):
        if spec.model is not None and spec.model.endswith((".yaml", ".yml")):  # a model file of the user's own,
            spec = spec.model_copy(update={"model": str(scenario.base_dir / spec.model)})  # beside the scenario
        return generate(spec, rng)
    return load_trace_source(spec, scenario)


def build_jobs(scenario, rngs: list[np.random.Generator]) -> pd.DataFrame:
    """All sources, merged in submit order; simultaneous jobs keep source order, then trace order.
    A scenario too big for this machine is refused before any source is generated, and again with the
    job table once traces are read."""
    check_size(scenario)
    frames = []
    for i, (spec, rng) in enumerate(zip(scenario.workload, rngs, strict=True)):
        where = f"workload[{i}]"
        try:
            frame = build_source(spec, scenario, rng)
            if "model" in frame.columns:
                from simulator.perf.jobs import fill_reference_durations

                frame = fill_reference_durations(frame, reference_device(scenario))
        except CapsimError as exc:
            if exc.where or exc.source:
                raise
            raise CapsimError(exc.detail, source=scenario.source, where=where) from None
        frames.append(validate_jobs(frame, source=f"{scenario.source}: {where}",
                                    ids_unique=isinstance(spec, SyntheticWorkload)))
    if len(frames) == 1:
        jobs = frames[0]  # already in submit order
    else:
        jobs = pd.concat(frames, ignore_index=True).sort_values("submit_time", kind="stable").reset_index(drop=True)
        if jobs["job_id"].duplicated().any():
            dup = jobs.loc[jobs["job_id"].duplicated(), "job_id"].iloc[0]
            raise CapsimError(f"job_id {dup!r} appears in two workload sources; give synthetic sources distinct "
                              "names", source=scenario.source, where="workload")
    if any(isinstance(spec, TraceWorkload) for spec in scenario.workload):
        check_size(scenario, jobs=jobs)
    return jobs
