"""The one job schema every workload source maps to (a pandas DataFrame, one row per job).

Required columns
    job_id        str     unique id (the trace's own id where it has one)
    submit_time   float   seconds since the start of the workload (the earliest submission is 0 for traces)
    gpus          int     devices requested (gang: all at once); >= 1
    duration      float   seconds of run time on the requested devices when nothing interrupts it; >= 0

Optional columns (kept from the trace where it has them; missing ones are simply absent)
    user, vc, status               str    status normalised to: completed, failed, cancelled, other
    status_raw                     str    the trace's own status string
    recorded_start_time            float  seconds on the same clock as submit_time
    recorded_wait                  float  recorded queueing delay in seconds (start - submit)
    gpu_type                       str    device type the trace names (e.g. V100, A10, T4)
    gpu_fraction                   float  share of one GPU for fractional jobs (Alibaba gpu_milli/1000)
    cpus, memory_mib, nodes        numbers as recorded
    model, tokens, steps, tp, pp, cp, dp, global_batch, micro_batch, seq_len
                                   model-based jobs (runtime from the performance model)
    priority                       int    higher runs first under priority policies
    deadline                       float  absolute seconds, for deadline-aware policies
    estimate                       float  user's duration estimate in seconds (backfilling, SJF)
    min_gpus, max_gpus             int    elastic jobs
    comm_fraction                  float  share of the run time spent communicating between nodes, 0-1
                                          (slowed by a contended fabric: simulator/network/fabric.py)
    home_site                      str    the site holding the job's input data (features/sites.py)
    input_gb                       float  GB of input moved over a wide-area link when it runs elsewhere
    slice_shape                    str    the TPU slice the job takes on a torus pool, AxBxC (or AxB for a
                                          2-D torus), with A x B x C = gpus (cluster/torus.py)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.units import MAX_COUNT, MAX_DURATION_S

REQUIRED = ("job_id", "submit_time", "gpus", "duration")
STATUSES = ("completed", "failed", "cancelled", "other")


def validate_jobs(jobs: pd.DataFrame, source: str, min_gpus: int = 1, ids_unique: bool = False) -> pd.DataFrame:
    """Check the required columns and their ranges; return the jobs sorted by (submit_time, input order).

    The sort is stable so jobs submitted at the same instant keep their trace order. `min_gpus=0`
    lets CPU-only jobs through, for trace statistics (the engine replays GPU jobs only). `ids_unique`
    skips the duplicate-id check (half a second per million jobs) for ids unique by construction.
    """
    missing = [c for c in REQUIRED if c not in jobs.columns]
    if missing:
        raise CapsimError(f"missing column(s) {', '.join(missing)}; expected at least {', '.join(REQUIRED)}",
                          source=source)
    out = jobs.copy()
    out["job_id"] = out["job_id"].astype(str)
    for col in ("submit_time", "duration"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["gpus"] = pd.to_numeric(out["gpus"], errors="coerce")
    # Bounds (units.py): times within 10,000 years of 0, sizes that are whole and fit an int64 column.
    for col, lo, hi in (("submit_time", -MAX_DURATION_S, MAX_DURATION_S), ("duration", 0.0, MAX_DURATION_S),
                        ("gpus", min_gpus, MAX_COUNT)):
        values = out[col].to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if col == "gpus":
            bad |= values != np.round(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            kind = "a whole number" if col == "gpus" else "a finite number"
            expected = f"{kind} >= {lo:g} and <= {hi:.4g}" + (" (10,000 years)" if col != "gpus" else "")
            raise CapsimError(f"column {col!r} must be {expected}, got {_shown(out[col].iloc[row])}",
                              source=source, where=f"job {out['job_id'].iloc[row]!r} (row {row + 1})")
    out["gpus"] = out["gpus"].astype(np.int64)
    _check_optional(out, source)
    if "slice_shape" in out.columns:
        out["slice_shape"] = _checked_slice_shapes(out, source)
    if not ids_unique and out["job_id"].duplicated().any():
        dup = out.loc[out["job_id"].duplicated(), "job_id"].iloc[0]
        raise CapsimError(f"duplicate job_id {dup!r}", source=source)
    if out["submit_time"].is_monotonic_increasing:  # generators and most traces come sorted
        return out.reset_index(drop=True)
    return out.sort_values("submit_time", kind="stable").reset_index(drop=True)


# Optional numeric columns the engine and the policies read: (lowest, highest, whole). A missing value
# (NaN, None) is allowed; a number must be finite and in range.
_OPTIONAL_RANGES = {
    "estimate": (0.0, MAX_DURATION_S, False), "deadline": (-2 * MAX_DURATION_S, 2 * MAX_DURATION_S, False),
    "recorded_start_time": (-2 * MAX_DURATION_S, 2 * MAX_DURATION_S, False), "priority": (-1e15, 1e15, False),
    "min_gpus": (1, MAX_COUNT, True), "max_gpus": (1, MAX_COUNT, True), "comm_fraction": (0.0, 1.0, False),
    "tokens": (1e-300, 1e30, False), "steps": (1, MAX_COUNT, True), "samples": (1e-300, 1e30, False),
    "tp": (1, MAX_COUNT, True), "pp": (1, MAX_COUNT, True), "cp": (1, MAX_COUNT, True),
    "input_gb": (0.0, 1e9, False),
}


def _check_optional(jobs: pd.DataFrame, source: str) -> None:
    for col, (lo, hi, whole) in _OPTIONAL_RANGES.items():
        if col not in jobs.columns or not (pd.api.types.is_numeric_dtype(jobs[col])
                                           or pd.api.types.is_object_dtype(jobs[col])):
            continue
        values = pd.to_numeric(jobs[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        given = ~np.isnan(values)
        with np.errstate(invalid="ignore"):
            bad = given & (~np.isfinite(values) | (values < lo) | (values > hi))
            if whole:
                bad |= given & np.isfinite(values) & (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            kind = "a whole number" if whole else "a finite number"
            raise CapsimError(f"column {col!r} must be empty or {kind} >= {lo:g} and <= {hi:.4g}, got "
                              f"{_shown(jobs[col].iloc[row])}", source=source,
                              where=f"job {jobs['job_id'].iloc[row]!r} (row {row + 1})")


def _shown(value) -> str:
    """A cell as the user wrote it: 1.5, not np.float64(1.5)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def slice_shapes(values: pd.Series, gpus: np.ndarray) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """A `slice_shape` column read: the shapes as canonical text ('4x4x8'; '2x2' is '2x2x1'; missing
    where a job names none), the rows whose text is no AxBxC of positive whole numbers, and the rows
    whose shape's chips differ from their `gpus`. Each distinct text is parsed once."""
    from simulator.cluster.torus import shape_of

    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    codes, uniques = pd.factorize(values.where(~missing).astype(object))
    texts, chips = [], []
    for text in uniques:
        try:
            shape = shape_of(str(text).strip())
        except ValueError:
            texts.append(None)
            chips.append(-1)
        else:
            texts.append("x".join(map(str, shape)))
            chips.append(int(np.prod(shape)))
    texts_of = np.array([*texts, None], dtype=object)[codes]  # code -1 (missing) takes the last entry
    chips_of = np.array([*chips, -1], dtype=np.int64)[codes]
    named = codes >= 0
    bad_text = named & (chips_of < 0)
    bad_chips = named & ~bad_text & (chips_of.astype(float) != np.asarray(gpus, dtype=float))
    return pd.Series(texts_of, index=values.index, dtype=object), bad_text, bad_chips


def _checked_slice_shapes(jobs: pd.DataFrame, source: str) -> pd.Series:
    shapes, bad_text, bad_chips = slice_shapes(jobs["slice_shape"], jobs["gpus"].to_numpy())
    for bad, expected in ((bad_text, "AxBxC (or AxB) of positive whole numbers"),
                          (bad_chips, "a shape of as many chips as the job's gpus (A x B x C = gpus)")):
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CapsimError(f"column 'slice_shape' must be empty or {expected}, got "
                              f"{_shown(jobs['slice_shape'].iloc[row])} (gpus {int(jobs['gpus'].iloc[row])})",
                              source=source, where=f"job {jobs['job_id'].iloc[row]!r} (row {row + 1})")
    return shapes
