"""Turn the scenario's `workload:` list into one validated job table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.schema import validate_jobs
from simulator.workload.spec import SyntheticWorkload, TraceWorkload
from simulator.workload.synthetic import generate


def load_trace_source(spec: TraceWorkload, scenario) -> pd.DataFrame:
    from simulator.workload.traces import load_trace

    path = scenario.base_dir / spec.path
    loaded = load_trace(path, spec.format, strict=spec.strict, **spec.options)
    return loaded.jobs


def build_jobs(scenario, rngs: list[np.random.Generator]) -> pd.DataFrame:
    """All sources, merged in submit order; simultaneous jobs keep source order, then trace order."""
    frames = []
    for i, (spec, rng) in enumerate(zip(scenario.workload, rngs, strict=True)):
        where = f"workload[{i}]"
        if isinstance(spec, SyntheticWorkload):
            frame = generate(spec, rng)
        else:
            frame = load_trace_source(spec, scenario)
        frames.append(validate_jobs(frame, source=f"{scenario.source}: {where}"))
    jobs = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    jobs = jobs.sort_values("submit_time", kind="stable").reset_index(drop=True)
    if len(frames) > 1 and jobs["job_id"].duplicated().any():
        dup = jobs.loc[jobs["job_id"].duplicated(), "job_id"].iloc[0]
        raise CapsimError(f"job_id {dup!r} appears in two workload sources; give synthetic sources distinct names",
                          source=scenario.source, where="workload")
    return jobs
