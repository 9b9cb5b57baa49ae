"""From an adapter's mapped columns to a validated job list: drop what is not a GPU job, rebase the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulator.workload.schema import validate_jobs
from simulator.workload.traces._rows import INT64_LIMIT, RowErrors


@dataclass(frozen=True)
class TraceLoad:
    """A loaded trace and what did not make it into `jobs`.

    rows             records read from the file, malformed ones included (job steps and blank lines
                     excluded): rows = skipped + sum(dropped) + len(jobs), except that pai's skipped
                     also counts rows of its task table
    skipped          malformed records skipped (lenient mode; strict mode stops at the first)
    skipped_reasons  those, counted by what was wrong
    dropped          well-formed records that are not replayable GPU jobs, by reason:
                     cpu_only (no GPU), never_started, unfinished (no end), unknown_runtime ...
    """

    jobs: pd.DataFrame
    source: str
    format: str
    rows: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_only(self) -> int:
        return self.dropped.get("cpu_only", 0)

    def skipped_text(self) -> str:
        """One line for a lenient load's report: how many rows were skipped, by what was wrong."""
        kinds = "; ".join(f"{reason} ({n:,})" for reason, n in
                          sorted(self.skipped_reasons.items(), key=lambda item: -item[1]))
        return f"{self.source}: skipped {self.skipped:,} malformed row(s): {kinds}"


def normalise_status(raw: pd.Series, table: dict[str, str]) -> pd.Series:
    """Map a trace's status words to completed/failed/cancelled/other.

    Keys are upper-case; only the first word counts, so sacct's 'CANCELLED by 1234' is 'CANCELLED'.
    """
    codes, uniques = pd.factorize(pd.Series(raw).fillna(""))  # a few distinct words over millions of rows
    words = [str(u).strip().split(maxsplit=1) for u in uniques]
    mapped = np.array([table.get(w[0].upper(), "other") if w else "other" for w in words] + ["other"], dtype=object)
    return pd.Series(mapped[codes], dtype=str)


def assemble(columns: dict[str, object], *, errors: RowErrors, lines: np.ndarray, fmt: str, rows: int,
             keep_cpu_only: bool, unusable: dict[str, np.ndarray] | None = None, rebase: bool = True,
             origin_label: Callable[[float], str | float] | None = None) -> TraceLoad:
    """Build the schema frame from mapped columns (one entry per well-formed record, read from `lines`).

    Records that are not replayable GPU jobs are dropped and counted: first CPU-only ones (unless
    `keep_cpu_only`), then each `unusable` mask in order (never_started, unfinished, ...), so a
    pending CPU job counts as cpu_only and `rows - skipped - cpu_only` is the file's GPU jobs.
    What is left must hold a job: finite times, a run time >= 0, a whole GPU count that fits int64,
    finite optional numbers and an id no earlier record has; a record that does not is malformed
    (`errors`: strict stops at its line, lenient skips and counts it). Values an adapter derives
    (end - start, GPUs summed over tasks) are checked here once for all adapters.
    Expects absolute `submit_time` and optional absolute `recorded_start_time` (same clock). With
    `rebase`, submit times become seconds since the earliest kept submission and `origin_label`
    (a function of that absolute second; default: the second itself) names the origin in
    `jobs.attrs["origin"]`. Without `rebase` (generic job lists) submit times are kept as written.
    The recorded wait is derived after rebasing, so recorded_start_time - submit_time == recorded_wait
    holds exactly.
    """
    jobs = pd.DataFrame(columns)
    lines = np.asarray(lines, dtype=int)
    reasons = dict(unusable or {})
    if not keep_cpu_only:
        reasons = {"cpu_only": jobs["gpus"].to_numpy(dtype=float) == 0, **reasons}
    dropped: dict[str, int] = {}
    drop = np.zeros(len(jobs), dtype=bool)
    for reason, mask in reasons.items():
        new = np.asarray(mask, dtype=bool) & ~drop
        if new.any():
            dropped[reason] = int(new.sum())
        drop |= new
    jobs, lines = _malformed_out(jobs.loc[~drop].reset_index(drop=True), lines[~drop], errors, submit_only=True)
    origin: str | float | None = None
    if rebase and len(jobs):
        first = float(np.min(jobs["submit_time"].to_numpy(dtype=float)))
        jobs["submit_time"] = jobs["submit_time"].to_numpy(dtype=float) - first
        if "recorded_start_time" in jobs:
            jobs["recorded_start_time"] = jobs["recorded_start_time"].to_numpy(dtype=float) - first
        origin = origin_label(first) if origin_label else first
    if "recorded_start_time" in jobs:
        jobs["recorded_wait"] = jobs["recorded_start_time"] - jobs["submit_time"]
    jobs, _ = _malformed_out(jobs, lines, errors)
    jobs = validate_jobs(jobs, errors.source, min_gpus=0 if keep_cpu_only else 1, ids_unique=True)
    if origin is not None:
        jobs.attrs["origin"] = origin
    return TraceLoad(jobs=jobs, source=errors.source, format=fmt, rows=rows, skipped=errors.skipped,
                     skipped_reasons=dict(errors.reasons), dropped=dropped)


def _malformed_out(jobs: pd.DataFrame, lines: np.ndarray, errors: RowErrors, *,
                   submit_only: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The records that hold a job; the others go to `errors` (named by line, or skipped and counted)."""
    bad = np.zeros(len(jobs), dtype=bool)

    def check(mask: np.ndarray, reason: str, column: str) -> None:
        nonlocal bad
        mask = np.asarray(mask, dtype=bool) & ~bad
        errors.flag(lines, mask, reason, jobs[column])
        bad |= mask

    check(~np.isfinite(jobs["submit_time"].to_numpy(dtype=float)), "submit time: expected a finite number of seconds",
          "submit_time")
    if not submit_only:
        duration = jobs["duration"].to_numpy(dtype=float)
        check(~(np.isfinite(duration) & (duration >= 0)), "run time: expected a finite number of seconds >= 0",
              "duration")
        gpus = jobs["gpus"].to_numpy(dtype=float)
        whole = np.isfinite(gpus) & (gpus >= 0) & (gpus < INT64_LIMIT) & (gpus == np.round(gpus))
        check(~whole, "GPUs: expected a whole number >= 0 and < 2^63", "gpus")
        for name in jobs.columns:
            if name not in ("submit_time", "duration", "gpus") and jobs[name].dtype.kind == "f":
                check(np.isinf(jobs[name].to_numpy()), f"{name}: expected a finite number", name)
        check(jobs["job_id"].astype(str).duplicated().to_numpy(), "job id: expected an id no earlier row has",
              "job_id")
    if not bad.any():
        return jobs, lines
    return jobs.loc[~bad].reset_index(drop=True), lines[~bad]
