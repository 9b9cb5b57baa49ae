"""Slurm accounting: `sacct -P -o JobID,User,Account,Partition,Submit,Start,End,Elapsed,State,AllocTRES,...`.

Pipe-separated with a header; columns are found by name, in any order (`-p`'s trailing '|' is fine).
Job steps (123.batch, 123.extern, 123.0) are not jobs and are skipped. GPUs come from AllocTRES
(`gres/gpu=2`, or the sum of typed `gres/gpu:a100=2` entries), as do CPUs, memory and nodes.
The Account becomes the virtual cluster; Timelimit, when present, the user's estimate.
Times may be ISO datetimes or, with SLURM_TIME_FORMAT=%s, unix seconds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._joblog import SLURM_STATES
from simulator.workload.traces._rows import INT64_LIMIT, RowErrors, TraceTable, check_header, numbered_lines
from simulator.workload.traces._times import iso_origin

_REQUIRED = ("JobID", "Submit", "Start", "State", "AllocTRES")
_SLURM_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_MEMORY_MIB = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    errors = RowErrors(str(path), strict=strict)
    table = _read_pipes(path, errors)
    table.require(*_REQUIRED)
    if not (table.has("Elapsed") or table.has("ElapsedRaw") or table.has("End")):
        table.require("Elapsed")
    unix = _looks_unix(table.frame["Submit"])
    submit = table.times("Submit", unix=unix, required=True)
    start = table.times("Start", unix=unix)
    end = table.times("End", unix=unix) if table.has("End") else np.full(len(table), np.nan)
    duration = _elapsed(table, start, end)
    tres = _tres(table, "AllocTRES")
    if table.has("ReqTRES"):
        # A job that never ran has no allocation; what it asked for is the best GPU count there is.
        requested = _tres(table, "ReqTRES")
        unallocated = np.isnan(tres["gpus"])
        tres = {k: np.where(unallocated, requested[k], v) for k, v in tres.items()}
    job_id = table.text("JobID")
    table.flag(job_id.isna().to_numpy(), "column 'JobID': expected a value")
    estimate = _estimates(table) if table.has("Timelimit") else None

    keep = table.keep
    # A job still pending has no Start; one still running has no End: neither has a run time yet.
    unusable = {"never_started": np.isnan(start[keep]),
                "unfinished": np.isnan(end[keep] if table.has("End") else duration[keep])}

    state = table.text("State")[keep]
    columns: dict[str, object] = {
        "job_id": job_id[keep].to_numpy(),
        "submit_time": submit[keep],
        "gpus": tres["gpus"][keep],
        "duration": duration[keep],
        "recorded_start_time": start[keep],
        "status": normalise_status(state, SLURM_STATES).to_numpy(),
        "status_raw": state.to_numpy(),
        "cpus": tres["cpus"][keep],
        "memory_mib": tres["memory_mib"][keep],
        "nodes": tres["nodes"][keep],
        "gpu_type": tres["gpu_type"][keep],
    }
    for trace_name, schema_name in (("User", "user"), ("Account", "vc"), ("Partition", "partition")):
        if table.has(trace_name):
            columns[schema_name] = table.text(trace_name)[keep].to_numpy()
    if estimate is not None:
        columns["estimate"] = estimate[keep]
    return assemble(columns, errors=errors, lines=table.lines[keep], fmt="sacct", rows=table.records,
                    keep_cpu_only=keep_cpu_only, unusable=unusable,
                    origin_label=(lambda first: first) if unix else
                    (lambda first: iso_origin(first, with_offset=False)))


def _read_pipes(path: Path, errors: RowErrors) -> TraceTable:
    """Split each line on '|' (a Python loop: sacct output is modest and has no quoting to honour)."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for number, text in numbered_lines(path, errors):
        fields = text.split("|")
        if header is None:
            trailing = fields[-1] == ""
            header = check_header(fields[:-1] if trailing else fields, str(path), where=f"line {number}")
            if "JobID" not in header:
                raise CapsimError("expected a header line from `sacct -P -o JobID,...` (no JobID column)",
                                  source=str(path), where=f"line {number}")
            job_id = header.index("JobID")
            continue
        if trailing and fields[-1] == "":
            fields = fields[:-1]
        if len(fields) != len(header):
            errors.reject(number, f"expected {len(header)} '|'-separated fields like the header", len(fields))
            continue
        if "." in fields[job_id]:
            continue  # a job step (123.batch, 123.0): its job is the line without the suffix
        rows.append(fields)
        lines.append(number)
    if header is None:
        raise CapsimError("empty file; expected `sacct -P` output with a header", source=str(path))
    return TraceTable(pd.DataFrame(rows, columns=header, dtype="str"), np.asarray(lines, dtype=int), errors,
                      unread=errors.skipped)


def _looks_unix(values: pd.Series) -> bool:
    present = values.str.strip()
    present = present[present.str.match(r"^\d")]
    return bool(len(present)) and bool(present.str.fullmatch(r"\d+(?:\.\d+)?").all())


def _elapsed(table: TraceTable, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Run time: ElapsedRaw (seconds), else Elapsed ([D-]HH:MM:SS), else End - Start."""
    if table.has("ElapsedRaw"):
        return table.numbers("ElapsedRaw", required=False, minimum=0)
    if not table.has("Elapsed"):
        seconds = end - start
        table.flag(seconds < 0, "column 'End': expected a time after Start")
        return seconds
    text = table.text("Elapsed")
    seconds = _durations(text)
    table.flag((np.isnan(seconds) & text.notna().to_numpy()) | np.isinf(seconds),
               "column 'Elapsed': expected [D-]HH:MM:SS", table.frame["Elapsed"])
    return seconds


def _estimates(table: TraceTable) -> np.ndarray:
    """Timelimit as seconds; NaN where it is no number of seconds (UNLIMITED, Partition_Limit, empty)."""
    seconds = _durations(table.text("Timelimit"))
    table.flag(np.isinf(seconds), "column 'Timelimit': expected [D-]HH:MM:SS", table.frame["Timelimit"])
    return seconds


def _durations(text: pd.Series) -> np.ndarray:
    """Slurm's [D-][HH:]MM:SS as seconds; NaN for empty, UNLIMITED, Partition_Limit and the unreadable."""
    parts = text.str.extract(_SLURM_DURATION).astype(float)
    days, hours, minutes, seconds = (parts[i].fillna(0.0).to_numpy() for i in range(4))
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return np.where(parts[3].isna().to_numpy(), np.nan, total)


def _tres(table: TraceTable, column: str) -> dict[str, np.ndarray]:
    """GPUs, CPUs, memory (MiB), nodes and the GPU type from each TRES string; NaN GPUs where it is empty."""
    out = {"gpus": [], "cpus": [], "memory_mib": [], "nodes": [], "gpu_type": []}
    unknown = {"gpus": np.nan, "cpus": np.nan, "memory_mib": np.nan, "nodes": np.nan, "gpu_type": None}
    bad = np.zeros(len(table), dtype=bool)
    for i, value in enumerate(table.frame[column].fillna("").str.strip()):
        try:
            parsed = _parse_tres(value) if value else unknown
        except (ValueError, KeyError):
            bad[i] = True
            parsed = unknown
        for key in out:
            out[key].append(parsed[key])
    table.flag(bad, f"column {column!r}: expected key=value pairs such as 'cpu=8,gres/gpu=2,mem=64G,node=1' "
                    "(amounts >= 0, GPU counts whole and < 2^63)", table.frame[column])
    arrays = {k: np.asarray(v, dtype=float) for k, v in out.items() if k != "gpu_type"}
    arrays["gpu_type"] = np.asarray(out["gpu_type"], dtype=object)
    return arrays


def _parse_tres(value: str) -> dict[str, object]:
    """Raises ValueError for what is not key=value pairs of amounts >= 0 (GPU counts: whole and < 2^63)."""
    items = dict(item.split("=", 1) for item in value.split(",") if item.strip())
    typed = {k.split(":", 1)[1]: int(v) for k, v in items.items() if k.startswith("gres/gpu:")}
    gpus = int(items["gres/gpu"]) if "gres/gpu" in items else sum(typed.values())
    if not 0 <= gpus < INT64_LIMIT or any(n < 0 for n in typed.values()):
        raise ValueError(f"GPU count out of range: {gpus}")
    memory = items.get("mem")
    return {
        "gpus": gpus,
        "cpus": _amount(items["cpu"]) if "cpu" in items else np.nan,
        "memory_mib": _memory_mib(memory) if memory else np.nan,
        "nodes": _amount(items["node"]) if "node" in items else np.nan,
        "gpu_type": next(iter(typed)) if len(typed) == 1 else None,
    }


def _amount(text: str, scale: float = 1.0) -> float:
    value = float(text) * scale
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"amount out of range: {value}")
    return value


def _memory_mib(text: str) -> float:
    unit = text[-1].upper()
    return _amount(text[:-1], _MEMORY_MIB[unit]) if unit in _MEMORY_MIB else _amount(text, 1 / 2 ** 20)
