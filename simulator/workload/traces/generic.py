"""The project's own job lists: CSV or Parquet with job_id, submit_time, gpus, duration (seconds).

Optional columns are any of the schema's (user, vc, status, gpu_type, ...). Submit times are kept as
written (a job list may start at any second); durations may also carry units ('90s', '2h').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.units import parse_duration
from simulator.workload.schema import REQUIRED, STATUSES, slice_shapes
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, TraceTable, check_header, check_width, read_delimited

# Optional numeric columns and their ranges: (minimum, maximum, whole number).
_NUMERIC_OPTIONAL = {
    "recorded_start_time": (None, None, False), "recorded_wait": (0, None, False), "deadline": (None, None, False),
    "priority": (None, None, False), "estimate": (0, None, False), "gpu_fraction": (0, 1, False),
    "comm_fraction": (0, 1, False), "cpus": (0, None, False), "memory_mib": (0, None, False),
    "nodes": (0, None, False), "min_gpus": (1, None, True), "max_gpus": (1, None, True), "input_gb": (0, None, False),
}
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
        with pq.ParquetFile(path) as parquet:  # its schema, checked before a million columns are read
            check_width(parquet.metadata.num_columns, str(path), where=None)
            check_header(parquet.schema_arrow.names, str(path), where=None)
        frame = pd.read_parquet(path)
        # As text, like the CSV's cells; Arrow decodes strings only now, so a corrupt file may fail here.
        text = frame.astype(object).where(frame.notna(), "").astype(str)
    except (OSError, ValueError, TypeError, NotImplementedError, pa.ArrowException) as exc:
        raise errors.cannot_read("Parquet", exc) from exc
    text.columns = check_header([str(c) for c in frame.columns], str(path), where=None)
    # Parquet has no lines; "line N" counts rows from 1 so the same messages apply.
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
    for name, (minimum, maximum, whole) in _NUMERIC_OPTIONAL.items():
        if table.has(name):
            columns[name] = table.numbers(name, required=False, minimum=minimum, maximum=maximum, whole=whole)
    for name in ("user", "vc", "gpu_type", "model", "home_site"):
        if table.has(name):
            columns[name] = table.text(name)
    if table.has("slice_shape"):
        columns["slice_shape"] = _slice_shapes(table, columns["gpus"])
    if table.has("status"):
        raw = table.text("status")
        columns["status"] = normalise_status(raw, _STATUS_WORDS)
        columns["status_raw"] = table.text("status_raw") if table.has("status_raw") else raw
    keep = table.keep
    kept = {k: (v[keep] if isinstance(v, np.ndarray) else v[keep].reset_index(drop=True))
            for k, v in columns.items()}
    if "recorded_wait" in kept and "recorded_start_time" in kept:
        del kept["recorded_wait"]  # derived from start - submit so the two always agree
    return assemble(kept, errors=table.errors, lines=table.lines[keep], fmt=fmt, rows=table.records,
                    keep_cpu_only=keep_cpu_only, rebase=False)


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


def _slice_shapes(table: TraceTable, gpus: np.ndarray) -> pd.Series:
    """The `slice_shape` column (a TPU slice, AxBxC, on a torus pool) as canonical text; a row whose
    text is no shape, or whose shape's chips are not its gpus, is malformed."""
    raw = table.frame["slice_shape"]
    shapes, bad_text, bad_chips = slice_shapes(table.text("slice_shape"), gpus)
    table.flag(bad_text, "column 'slice_shape': expected AxBxC (or AxB) of positive whole numbers", raw)
    table.flag(bad_chips, "column 'slice_shape': expected a shape of as many chips as the row's gpus "
               "(A x B x C = gpus)", raw)
    return shapes
