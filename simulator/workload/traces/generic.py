"""The project's own job lists: CSV or Parquet with job_id, submit_time, gpus, duration (seconds).

Optional columns are any of the schema's (user, vc, status, gpu_type, ...). Submit times are kept as
written (a job list may start at any second); durations may also carry units ('90s', '2h').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.units import parse_duration
from simulator.workload.schema import REQUIRED, STATUSES
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, TraceTable, read_delimited

_NUMERIC_OPTIONAL = ("recorded_start_time", "recorded_wait", "gpu_fraction", "cpus", "memory_mib", "nodes",
                     "priority", "deadline", "estimate", "min_gpus", "max_gpus")
_STATUS_WORDS = {s.upper(): s for s in STATUSES} | {
    "COMPLETE": "completed", "SUCCEEDED": "completed", "SUCCESS": "completed", "PASS": "completed",
    "FAIL": "failed", "CANCELED": "cancelled", "KILLED": "cancelled",
}


def load_csv(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    errors = RowErrors(str(path), strict=strict)
    return _load(read_delimited(path, errors), "csv", keep_cpu_only)


def load_parquet(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    errors = RowErrors(str(path), strict=strict)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise CapsimError(f"cannot read as Parquet: {exc}", source=str(path)) from exc
    # Parquet has no lines; "line N" counts rows from 1 so the same messages apply.
    text = frame.astype(object).where(frame.notna(), "").astype(str)
    table = TraceTable(text.reset_index(drop=True), np.arange(1, len(frame) + 1), errors)
    return _load(table, "parquet", keep_cpu_only)


def _load(table: TraceTable, fmt: str, keep_cpu_only: bool) -> TraceLoad:
    table.require(*REQUIRED)
    columns: dict[str, object] = {
        "job_id": table.text("job_id"),
        "submit_time": table.numbers("submit_time"),
        "gpus": table.numbers("gpus", minimum=0, whole=True),
        "duration": _durations(table),
    }
    table.flag(columns["job_id"].isna().to_numpy(), "column 'job_id': expected a value")
    for name in _NUMERIC_OPTIONAL:
        if table.has(name):
            columns[name] = table.numbers(name, required=False)
    if table.has("comm_fraction"):
        columns["comm_fraction"] = table.numbers("comm_fraction", required=False, minimum=0, maximum=1)
    for name in ("user", "vc", "gpu_type", "model"):
        if table.has(name):
            columns[name] = table.text(name)
    if table.has("status"):
        raw = table.text("status")
        columns["status"] = normalise_status(raw, _STATUS_WORDS)
        columns["status_raw"] = table.text("status_raw") if table.has("status_raw") else raw
    keep = table.keep
    kept = {k: (v[keep] if isinstance(v, np.ndarray) else v[keep].reset_index(drop=True))
            for k, v in columns.items()}
    if "recorded_wait" in kept and "recorded_start_time" in kept:
        del kept["recorded_wait"]  # derived from start - submit so the two always agree
    return assemble(kept, source=table.errors.source, fmt=fmt, rows=len(table),
                    skipped_reasons=table.errors.reasons, keep_cpu_only=keep_cpu_only,
                    rebase=False)


def _durations(table: TraceTable) -> np.ndarray:
    """Seconds, or strings with units ('90s', '2h'); the unit strings are parsed one by one (rare)."""
    raw = table.frame["duration"].str.strip()
    values = np.array(pd.to_numeric(raw, errors="coerce"), dtype=float)  # a writable copy
    for i in np.flatnonzero(np.isnan(values) & (raw != "").to_numpy()):
        try:
            values[i] = parse_duration(raw.iloc[i])
        except ValueError:
            continue  # left NaN: flagged below with the accepted forms
    bad = ~np.isfinite(values) | (values < 0)
    table.flag(bad, "column 'duration': expected seconds >= 0 or a duration such as '90s' or '2h'", raw)
    return values
