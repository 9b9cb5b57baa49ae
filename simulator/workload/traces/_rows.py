"""Malformed rows: strict loads stop at the first one (file + line), lenient loads skip and count them.

Delimited files are read as strings in one vectorised pass; every row keeps its physical line number,
so an error can point at the line a user would open in an editor.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.traces._times import datetime_seconds, is_missing, number_seconds

_SKIPPED_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


class RowErrors:
    """Where malformed rows go: an exception when strict, a count by reason when lenient."""

    def __init__(self, source: str, *, strict: bool):
        self.source = source
        self.strict = strict
        self.reasons: Counter[str] = Counter()

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    def reject(self, line: int, reason: str, got: object = None) -> None:
        """One malformed row (per-row readers such as JSON, SWF and sacct)."""
        if self.strict:
            detail = f"{reason}, got {got!r}" if got is not None else reason
            raise CapsimError(detail, source=self.source, where=f"line {line}")
        self.reasons[reason] += 1


class TraceTable:
    """A trace file's rows as strings with their line numbers; the checks mark malformed rows out of `keep`."""

    def __init__(self, frame: pd.DataFrame, lines: np.ndarray, errors: RowErrors):
        self.frame = frame
        self.lines = lines
        self.errors = errors
        self.keep = np.ones(len(frame), dtype=bool)

    def __len__(self) -> int:
        return len(self.frame)

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise CapsimError(f"missing column(s) {', '.join(missing)}; the header has "
                              f"{', '.join(map(str, self.frame.columns))}", source=self.errors.source)

    def flag(self, bad: np.ndarray, reason: str, values: pd.Series | np.ndarray | None = None) -> None:
        """Mark rows as malformed (only rows still kept count); strict mode raises on the first one."""
        bad = np.asarray(bad, dtype=bool) & self.keep
        if not bad.any():
            return
        if self.errors.strict:
            i = int(np.flatnonzero(bad)[0])
            got = None if values is None else (values.iloc[i] if isinstance(values, pd.Series) else values[i])
            self.errors.reject(int(self.lines[i]), reason, got)
        self.errors.reasons[reason] += int(bad.sum())
        self.keep &= ~bad

    def text(self, column: str) -> pd.Series:
        """The column's stripped strings, NA where the trace says "no value"."""
        raw = self.frame[column]
        return raw.str.strip().where(~is_missing(raw))

    def numbers(self, column: str, *, required: bool = True, minimum: float | None = None,
                maximum: float | None = None, whole: bool = False) -> np.ndarray:
        """A numeric column as floats (NaN where absent and allowed); flags what cannot be read."""
        raw = self.frame[column]
        missing = is_missing(raw)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.isnan(values) & ~missing
        bad |= ~np.isfinite(values) & ~np.isnan(values)
        if required:
            bad |= missing
        if minimum is not None:
            bad |= values < minimum
        if maximum is not None:
            bad |= values > maximum
        if whole:
            bad |= np.isfinite(values) & (values != np.round(values))
        kind = "a whole number" if whole else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        bound += (" and" if bound else "") + (f" <= {maximum:g}" if maximum is not None else "")
        self.flag(bad, f"column {column!r}: expected {kind}{bound}", raw)
        return np.where(bad, np.nan, values)

    def times(self, column: str, *, unix: bool = False, required: bool = False) -> np.ndarray:
        """Seconds since 1970 (datetimes) or on the trace's numeric clock (unix=True); NaN where absent."""
        raw = self.frame[column]
        seconds, bad = (number_seconds if unix else datetime_seconds)(raw)
        if required:
            bad |= np.isnan(seconds)
        kind = "seconds" if unix else "a date and time such as '2020-04-01 00:00:05'"
        self.flag(bad, f"column {column!r}: expected {kind}", raw)
        return seconds


def read_delimited(path: Path, errors: RowErrors, *, names: list[str] | None = None,
                   sep: str = ",") -> TraceTable:
    """Read a CSV (header line, or headerless with `names`) as strings, keeping physical line numbers.

    Rows with too many fields are malformed; blank lines are ignored.
    """
    header_lines = 0 if names is not None else 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(path, sep=sep, header=None if names is not None else 0, names=names,
                                index_col=False, dtype=str, keep_default_na=False, skip_blank_lines=False,
                                on_bad_lines="warn", encoding_errors="replace")
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame(columns=names or [])
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise CapsimError(f"cannot read as CSV: {exc}", source=errors.source) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    bad_lines = sorted(int(m.group(1)) for w in caught for m in _SKIPPED_LINE.finditer(str(w.message)))
    for line in bad_lines:
        errors.reject(line, f"expected {len(frame.columns)} fields separated by {sep!r}")
    # Data rows are the physical lines after the header, minus those the parser skipped.
    lines = np.arange(header_lines + 1, header_lines + 1 + len(frame) + len(bad_lines))
    lines = np.setdiff1d(lines, np.asarray(bad_lines, dtype=int), assume_unique=True)
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.zeros(len(frame), bool)
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return TraceTable(frame, lines, errors)
