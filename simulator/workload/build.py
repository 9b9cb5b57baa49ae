"""Turn the scenario's `workload:` list into one validated job table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from simulator.cluster.torus import shape_of, shape_refusal
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


def pool_tori(pools) -> list[tuple]:
    """(name, device, torus dims or None) of each pool: scenario pool specs or a Cluster's pools."""
    out = []
    for p in pools:
        torus = getattr(p, "torus", None)
        if getattr(p, "topology", None) is not None:  # a scenario's pool spec
            out.append((p.name, p.device, p.torus_dims if p.topology == "torus" else None))
        else:
            out.append((p.name, p.device, getattr(torus, "dims", None)))
    return out


def check_slice_shapes(jobs: pd.DataFrame, tori: list[tuple], source: str, where_of) -> None:
    """Refuse, before the run, a job whose `slice_shape` fits no torus pool it may use (`where_of(row)`
    names it); its chips were checked against its gpus as it was read (schema.slice_shapes)."""
    if "slice_shape" not in jobs.columns:
        return
    named = jobs["slice_shape"].notna().to_numpy()
    if not named.any():
        return
    device = jobs["device"].astype(object).where(jobs["device"].notna(), "") if "device" in jobs.columns else ""
    keys = pd.DataFrame({"shape": jobs["slice_shape"], "device": device}, index=np.arange(len(jobs)))[named]
    for (text, dev), rows in keys.groupby(["shape", "device"], sort=False):
        reason = shape_refusal(shape_of(text), dev or None, tori)
        if reason is not None:
            raise CapsimError(f"{reason}; {len(rows)} job(s) name it", source=source, where=where_of(int(rows.index[0])))


def _check_class_shapes(spec: SyntheticWorkload, tori: list[tuple], source: str, where: str) -> None:
    for k, cls in enumerate(spec.classes or ()):
        if cls.slice_shape is not None:
            reason = shape_refusal(shape_of(cls.slice_shape), None, tori)
            if reason is not None:
                raise CapsimError(reason, source=source, where=f"{where}.classes[{k}].slice_shape")


def build_jobs(scenario, rngs: list[np.random.Generator]) -> pd.DataFrame:
    """All sources, merged in submit order; simultaneous jobs keep source order, then trace order.
    A scenario too big for this machine is refused before any source is generated, and again with the
    job table once traces are read."""
    check_size(scenario)
    tori = pool_tori(scenario.cluster.pools)
    frames = []
    for i, (spec, rng) in enumerate(zip(scenario.workload, rngs, strict=True)):
        where = f"workload[{i}]"
        if isinstance(spec, SyntheticWorkload):
            _check_class_shapes(spec, tori, scenario.source, where)
        try:
            frame = build_source(spec, scenario, rng)
            if isinstance(spec, TraceWorkload):
                check_slice_shapes(frame, tori, str(scenario.base_dir / spec.path),
                                   lambda row, f=frame: f"column 'slice_shape', job {f['job_id'].iloc[row]!r}")
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
