"""From an adapter's mapped columns to a validated job list: drop what is not a GPU job, rebase the clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulator.workload.schema import validate_jobs


@dataclass(frozen=True)
class TraceLoad:
    """A loaded trace and what did not make it into `jobs`.

    rows             records read from the file (job steps and blank lines excluded)
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


def normalise_status(raw: pd.Series, table: dict[str, str]) -> pd.Series:
    """Map a trace's status words to completed/failed/cancelled/other.

    Keys are upper-case; only the first word counts, so sacct's 'CANCELLED by 1234' is 'CANCELLED'.
    """
    codes, uniques = pd.factorize(pd.Series(raw).fillna(""))  # a few distinct words over millions of rows
    words = [str(u).strip().split(maxsplit=1) for u in uniques]
    mapped = np.array([table.get(w[0].upper(), "other") if w else "other" for w in words] + ["other"], dtype=object)
    return pd.Series(mapped[codes], dtype=str)


def assemble(columns: dict[str, object], *, source: str, fmt: str, rows: int, skipped_reasons: Counter,
             keep_cpu_only: bool, unusable: dict[str, np.ndarray] | None = None, rebase: bool = True,
             origin_label: Callable[[float], str | float] | None = None) -> TraceLoad:
    """Build the schema frame from mapped columns (one entry per well-formed record).

    Records that are not replayable GPU jobs are dropped and counted: first CPU-only ones (unless
    `keep_cpu_only`), then each `unusable` mask in order (never_started, unfinished, ...), so a
    pending CPU job counts as cpu_only and `rows - skipped - cpu_only` is the file's GPU jobs.
    Expects absolute `submit_time` and optional absolute `recorded_start_time` (same clock). With
    `rebase`, submit times become seconds since the earliest kept submission and `origin_label`
    (a function of that absolute second; default: the second itself) names the origin in
    `jobs.attrs["origin"]`. Without `rebase` (generic job lists) submit times are kept as written.
    The recorded wait is derived after rebasing, so recorded_start_time - submit_time == recorded_wait
    holds exactly.
    """
    jobs = pd.DataFrame(columns)
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
    jobs = jobs.loc[~drop].reset_index(drop=True)
    origin: str | float | None = None
    if rebase and len(jobs):
        first = float(np.min(jobs["submit_time"].to_numpy(dtype=float)))
        jobs["submit_time"] = jobs["submit_time"].to_numpy(dtype=float) - first
        if "recorded_start_time" in jobs:
            jobs["recorded_start_time"] = jobs["recorded_start_time"].to_numpy(dtype=float) - first
        origin = origin_label(first) if origin_label else first
    if "recorded_start_time" in jobs:
        jobs["recorded_wait"] = jobs["recorded_start_time"] - jobs["submit_time"]
    jobs = validate_jobs(jobs, source, min_gpus=0 if keep_cpu_only else 1)
    if origin is not None:
        jobs.attrs["origin"] = origin
    return TraceLoad(jobs=jobs, source=source, format=fmt, rows=rows, skipped=sum(skipped_reasons.values()),
                     skipped_reasons=dict(skipped_reasons), dropped=dropped)
