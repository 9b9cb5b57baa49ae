"""Microsoft Philly (ATC'19) `cluster_job_log`: a JSON list of jobs.

Each job: jobid, user, vc, status (Pass / Killed / Failed), submitted_time, and attempts — a list of
{start_time, end_time, detail: [{ip, gpus: [...]}]}; times 'YYYY-MM-DD HH:MM:SS' or null.
Following the trace's own analysis notebook: GPUs are those of the first attempt, the job starts with
its first attempt and runs until the end of its last one (retries and the gaps between them included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, open_text
from simulator.workload.traces._times import datetime_seconds, iso_origin

_STATUSES = {"PASS": "completed", "KILLED": "cancelled", "FAILED": "failed"}


class _Malformed(ValueError):
    """A job object that does not have the Philly shape; the message says what was expected."""


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    errors = RowErrors(str(path), strict=strict)
    records: list[dict] = []
    jobs = _job_objects(path)
    for line, job in jobs:
        try:
            record = _map_job(job)
        except _Malformed as exc:
            errors.reject(line, str(exc))
            continue
        record["line"] = line
        records.append(record)
    rows = len(records) + errors.skipped
    frame = pd.DataFrame(records, columns=["job_id", "user", "vc", "status_raw", "submitted", "start", "end",
                                           "gpus", "attempts", "line"])
    # Times are parsed together (vectorised); unreadable ones are malformed rows like any other.
    parsed = {}
    keep = np.ones(len(frame), dtype=bool)
    for name in ("submitted", "start", "end"):
        parsed[name], bad = datetime_seconds(frame[name].astype("string"))
        bad |= (name == "submitted") & np.isnan(parsed[name])
        for i in np.flatnonzero(bad & keep):
            errors.reject(int(frame["line"].iloc[i]), f"{_FIELD[name]}: expected 'YYYY-MM-DD HH:MM:SS'",
                          frame[name].iloc[i])
        keep &= ~bad
    duration = parsed["end"] - parsed["start"]
    for i in np.flatnonzero(keep & (duration < 0)):
        errors.reject(int(frame["line"].iloc[i]), "attempts: expected the last end_time after the first start_time")
    keep &= ~(duration < 0)

    kept = frame.loc[keep]
    columns = {
        "job_id": kept["job_id"].to_numpy(),
        "submit_time": parsed["submitted"][keep],
        "gpus": kept["gpus"].to_numpy(dtype=float),
        "duration": duration[keep],
        "recorded_start_time": parsed["start"][keep],
        "user": kept["user"].to_numpy(),
        "vc": kept["vc"].to_numpy(),
        "status": normalise_status(kept["status_raw"], _STATUSES).to_numpy(),
        "status_raw": kept["status_raw"].to_numpy(),
        "attempts": kept["attempts"].to_numpy(),
    }
    unusable = {"never_started": np.isnan(parsed["start"][keep]), "unfinished": np.isnan(parsed["end"][keep])}
    return assemble(columns, errors=errors, lines=kept["line"].to_numpy(), fmt="philly", rows=rows,
                    keep_cpu_only=keep_cpu_only, unusable=unusable,
                    origin_label=lambda first: iso_origin(first, with_offset=False))


_FIELD = {"submitted": "submitted_time", "start": "attempts[0].start_time", "end": "attempts[-1].end_time"}


def _job_objects(path: Path):
    """Yield (line, job) for each element of the top-level JSON list, with the line the element starts on.

    json.load would lose positions, so the list is walked with raw_decode one element at a time.
    The list must be closed and nothing but white space may follow it (else the file was cut short
    or is not one list). A job nested deeper than Python's recursion limit is invalid JSON here.
    """
    with open_text(path, str(path)) as handle:
        text = handle.read()
    decoder = json.JSONDecoder()

    def invalid(message: str, pos: int) -> CapsimError:
        return CapsimError(message, source=str(path), where=f"line {text.count(chr(10), 0, pos) + 1}")

    pos, line = _skip_space(text, 0), 1
    if not text.startswith("[", pos):
        raise invalid("expected a JSON list of jobs ('[' ...)", pos)
    counted = 0
    pos = _skip_space(text, pos + 1)
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            job, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise CapsimError(f"invalid JSON: {exc.msg}", source=str(path), where=f"line {exc.lineno}") from exc
        except RecursionError as exc:
            raise invalid("invalid JSON: a job nested too deeply (expected a job object a few levels deep)",
                          pos) from exc
        except ValueError as exc:  # an integer of more than 4,300 digits
            raise invalid("invalid JSON: a value that cannot be read (a number of thousands of digits?)",
                          pos) from exc
        yield line, job
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        elif pos < len(text) and text[pos] != "]":
            raise invalid("invalid JSON: expected ',' or ']' after a job", pos)
    if pos >= len(text):
        raise invalid("invalid JSON: expected ']' to close the list of jobs (the file may be cut short)", pos)
    if _skip_space(text, pos + 1) < len(text):
        raise invalid("invalid JSON: expected nothing after the list of jobs", _skip_space(text, pos + 1))


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _map_job(job: object) -> dict:
    if not isinstance(job, dict):
        raise _Malformed("expected a job object {jobid, user, vc, status, submitted_time, attempts}")
    missing = [k for k in ("jobid", "status", "submitted_time", "attempts") if k not in job]
    if missing:
        raise _Malformed(f"expected key(s) {', '.join(missing)} in the job object")
    attempts = job["attempts"]
    if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
        raise _Malformed("attempts: expected a list of {start_time, end_time, detail} objects")
    gpus = None  # unknown until an attempt has run; such jobs are dropped as never started
    if attempts:
        detail = attempts[0].get("detail") or []
        if not isinstance(detail, list) or not all(isinstance(d, dict) and isinstance(d.get("gpus", []), list)
                                                   for d in detail):
            raise _Malformed("attempts[0].detail: expected a list of {ip, gpus: [...]} objects")
        gpus = sum(len(d.get("gpus", [])) for d in detail)
    return {
        "job_id": _text(job, "jobid", required=True),
        "user": _text(job, "user"),
        "vc": _text(job, "vc"),
        "status_raw": _text(job, "status"),
        "submitted": _text(job, "submitted_time"),
        "start": _text(attempts[0], "start_time", "attempts[0].") if attempts else None,
        "end": _text(attempts[-1], "end_time", "attempts[-1].") if attempts else None,
        "gpus": gpus,
        "attempts": len(attempts),
    }


def _text(mapping: dict, key: str, prefix: str = "", *, required: bool = False) -> str | None:
    """A field that must be a string or number (or null, unless required) as text."""
    value = mapping.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Malformed(f"{prefix}{key}: expected a string or a number")
    text = str(value)
    # JSON may escape a lone surrogate ("\ud800"), which is no UTF-8 text: replaced, as undecodable bytes are.
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")
