"""Standard Workload Format (Parallel Workloads Archive): 18 whitespace-separated numbers per job,
header comment lines starting with ';' (UnixStartTime gives the clock's origin). -1 means unknown.

Fields used: 1 job number, 2 submit, 3 wait, 4 run time, 5 allocated processors, 8 requested
processors (when 5 is unknown), 9 requested time (the user's estimate), 11 status (1 completed,
0 failed, 5 cancelled), 12 user, 15 queue (kept as the virtual cluster), 16 partition.
Processors become GPUs through `gpus_per_proc` (default 1; 0.125 reads an 8-core slot as one GPU).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from simulator.errors import CapsimError
from simulator.workload.traces._assemble import TraceLoad, assemble
from simulator.workload.traces._rows import RowErrors, numbered_lines, snippet

FIELDS = ("job", "submit", "wait", "run", "alloc_procs", "avg_cpu", "used_mem", "req_procs", "req_time",
          "req_mem", "status", "user", "group", "executable", "queue", "partition", "preceding", "think")
_STATUSES = {1: "completed", 0: "failed", 5: "cancelled"}
_UNIX_START = re.compile(r"^;\s*UnixStartTime:\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False,
         gpus_per_proc: float = 1.0) -> TraceLoad:
    if not (isinstance(gpus_per_proc, int | float) and math.isfinite(gpus_per_proc) and gpus_per_proc > 0):
        raise CapsimError(f"gpus_per_proc must be a number > 0, got {gpus_per_proc!r}", source=str(path))
    errors = RowErrors(str(path), strict=strict)
    values, lines, unix_start = _read_numbers(path, errors)
    rows = len(values) + errors.skipped
    col = {name: values[:, i] if len(values) else np.empty(0) for i, name in enumerate(FIELDS)}

    procs = np.where(col["alloc_procs"] > 0, col["alloc_procs"], col["req_procs"])
    # -1 is SWF's "unknown"; a job without a submit time, run time or size cannot be replayed.
    unusable = {"unknown_submit": col["submit"] < 0, "unknown_runtime": col["run"] < 0,
                "unknown_processors": procs <= 0}

    submit = col["submit"]
    start = np.where(col["wait"] >= 0, submit + col["wait"], np.nan)
    status = col["status"]
    columns: dict[str, object] = {
        "job_id": _ids(col["job"]),
        "submit_time": submit,
        # Unknown sizes get a placeholder 1 here; they are dropped as unknown_processors.
        "gpus": np.ceil(np.maximum(procs, 1) * gpus_per_proc - 1e-9),
        "duration": col["run"],
        "recorded_start_time": start,
        "status": np.array([_STATUSES.get(s, "other") for s in status.tolist()], dtype=object),
        "status_raw": _ids(status),
        "user": _known_ids(col["user"]),
        "vc": _known_ids(col["queue"]),
        "partition": _known_ids(col["partition"]),
        "estimate": np.where(col["req_time"] > 0, col["req_time"], np.nan),
        "cpus": procs,
    }
    return assemble(columns, errors=errors, lines=lines, fmt="swf", rows=rows,
                    keep_cpu_only=keep_cpu_only, unusable=unusable,
                    origin_label=lambda first: (unix_start or 0.0) + first)


def _read_numbers(path: Path, errors: RowErrors) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Every job line as 18 floats, with its line number; malformed lines go to `errors`."""
    unix_start: float | None = None
    rows: list[list[float]] = []
    lines: list[int] = []
    for number, line in numbered_lines(path, errors):
        text = line.strip()
        if text.startswith(";"):
            match = _UNIX_START.match(text)
            if match:
                unix_start = float(match.group(1))
                if not math.isfinite(unix_start):  # a header, not a row: lenient mode cannot skip it
                    raise CapsimError(f"UnixStartTime: expected a finite number of seconds, got "
                                      f"{snippet(match.group(1))}", source=str(path), where=f"line {number}")
            continue
        fields = text.split()
        if len(fields) != len(FIELDS):
            errors.reject(number, f"expected {len(FIELDS)} whitespace-separated fields", len(fields))
            continue
        numbers = [_number(f) for f in fields]
        if None in numbers:
            bad = numbers.index(None)
            errors.reject(number, f"field {bad + 1} ({FIELDS[bad]}): expected a number", fields[bad])
            continue
        rows.append(numbers)
        lines.append(number)
    return np.asarray(rows, dtype=float).reshape(-1, len(FIELDS)), np.asarray(lines, dtype=int), unix_start


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _ids(values: np.ndarray) -> np.ndarray:
    return np.array([str(int(v)) if float(v).is_integer() else str(v) for v in values], dtype=object)


def _known_ids(values: np.ndarray) -> np.ndarray:
    """Ids as strings; -1 (unknown) becomes missing."""
    return np.array([str(int(v)) if v >= 0 else None for v in values], dtype=object)
