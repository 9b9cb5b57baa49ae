"""Malformed rows: strict loads stop at the first one (file + line), lenient loads skip and count them.

Delimited files are read as strings in one vectorised pass; every row keeps its physical line number,
so an error can point at the line a user would open in an editor. Before that pass, one cheap scan
of the lines checks what the parser would hide: rows with fewer fields than the header (the parser
pads them), a header too wide to be a trace's or naming a column twice, and a last line with no line
end (a file cut short, whose last row may look whole: `j2,30,1,90` cut to `j2,30,1,9`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.traces._times import datetime_seconds, is_missing, number_seconds

# Real traces have a dozen or two columns (sacct can list ~100 fields); a wider header is not a trace,
# and parsing a million columns takes minutes.
MAX_COLUMNS = 1000
INT64_LIMIT = 2.0 ** 63  # integers stored as int64 must stay below this (as floats: strictly)
CUT_SHORT = ("expected a line end after the last line: the file may be cut short (if its last row is whole, "
             "end the file with a line end)")
_COMPRESSION = {".gz": ("gzip", gzip.open), ".bz2": ("bz2", bz2.open), ".xz": ("xz", lzma.open)}
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


def snippet(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to about `limit` characters: errors quote a file's content, never much of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


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
            detail = f"{reason}, got {snippet(got)}" if got is not None else reason
            raise CapsimError(detail, source=self.source, where=f"line {line}")
        self.reasons[reason] += 1

    def flag(self, lines: np.ndarray, bad: np.ndarray, reason: str,
             values: pd.Series | np.ndarray | None = None) -> None:
        """Many rows at once: strict mode raises on the first bad one, lenient mode counts them all."""
        if not bad.any():
            return
        if self.strict:
            i = int(np.flatnonzero(bad)[0])
            got = None if values is None else (values.iloc[i] if isinstance(values, pd.Series) else values[i])
            self.reject(int(lines[i]), reason, got)
        self.reasons[reason] += int(bad.sum())

    def cannot_read(self, what: str, exc: BaseException) -> CapsimError:
        """A file-level failure of a parser, quoted briefly (its message may hold the file's content)."""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CapsimError(f"cannot read as {what}: {message[:200]}", source=self.source)


def check_width(columns: int, source: str, *, where: str | None = "line 1") -> None:
    """A table wider than MAX_COLUMNS is refused before it is parsed."""
    if columns > MAX_COLUMNS:
        raise CapsimError(f"expected at most {MAX_COLUMNS:,} columns, got {columns:,}: this does not look "
                          "like a trace", source=source, where=where)


def check_header(names: list[str], source: str, *, where: str | None = "line 1") -> list[str]:
    """Stripped column names; a header wider than MAX_COLUMNS or naming a column twice is refused.

    An empty name (a spreadsheet's trailing commas) becomes 'Unnamed: i', as pandas would name it.
    """
    check_width(len(names), source, where=where)
    names = [str(n).strip() or f"Unnamed: {i}" for i, n in enumerate(names)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CapsimError(f"column {snippet(name)} appears twice in the header; expected each column once",
                              source=source, where=where)
        seen.add(name)
    return names


def compression(path: Path) -> str | None:
    """The compression a file's name says it has (gzip, bz2, xz), as pandas names it."""
    return _COMPRESSION.get(path.suffix.lower(), (None, None))[0]


@contextmanager
def open_text(path: Path, source: str) -> Iterator[TextIO]:
    """A text file as the loaders read it: UTF-8 with or without a byte-order mark, any line ends,
    undecodable bytes replaced (they then fail the field checks like any other bad value), gzip, bz2
    or xz compressed when its name ends so. NUL bytes or a UTF-16 mark at the start mean it is not
    UTF-8 text: refused as a whole rather than read as rows of junk."""
    opener = _COMPRESSION.get(path.suffix.lower(), (None, open))[1]
    try:
        with opener(path, "rb") as raw:
            start = raw.read(4096)
        if b"\x00" in start or start.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise CapsimError("expected UTF-8 text; this file has NUL bytes or a UTF-16 mark (a binary or "
                              "UTF-16 file, or a compressed one not named .gz, .bz2 or .xz?)", source=source)
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as handle:
            yield handle
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:  # unreadable or corrupt compressed data
        raise CapsimError(f"cannot read: {str(exc)[:200]}", source=source) from exc


def numbered_lines(path: Path, errors: RowErrors) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) for every non-blank line; a last line with no line end
    after other lines is malformed (strict: an error; lenient: skipped and counted)."""
    first = True
    with open_text(path, errors.source) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if not raw.endswith("\n") and not first:
                errors.reject(number, CUT_SHORT)
                continue
            first = False
            yield number, raw.rstrip("\n")


class TraceTable:
    """A trace file's rows as strings with their line numbers; the checks mark malformed rows out of `keep`.

    `unread` counts the records the reader refused before they became rows (wrong number of fields).
    """

    def __init__(self, frame: pd.DataFrame, lines: np.ndarray, errors: RowErrors, *, unread: int = 0):
        self.frame = frame
        self.lines = lines
        self.errors = errors
        self.unread = unread
        self.keep = np.ones(len(frame), dtype=bool)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def records(self) -> int:
        """Records in the file, malformed ones included: rows - skipped - dropped = jobs."""
        return len(self.frame) + self.unread

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            names = [str(c) for c in self.frame.columns]
            shown = ", ".join(snippet(n)[1:-1] for n in names[:20]) + (f", ... ({len(names)} columns)"
                                                                       if len(names) > 20 else "")
            raise CapsimError(f"missing column(s) {', '.join(missing)}; the header has {shown or 'no columns'}",
                              source=self.errors.source)

    def flag(self, bad: np.ndarray, reason: str, values: pd.Series | np.ndarray | None = None) -> None:
        """Mark rows as malformed (only rows still kept count); strict mode raises on the first one."""
        bad = np.asarray(bad, dtype=bool) & self.keep
        self.errors.flag(self.lines, bad, reason, values)
        self.keep &= ~bad

    def text(self, column: str) -> pd.Series:
        """The column's stripped strings, NA where the trace says "no value"."""
        raw = self.frame[column]
        return raw.str.strip().where(~is_missing(raw))

    def numbers(self, column: str, *, required: bool = True, minimum: float | None = None,
                maximum: float | None = None, whole: bool = False) -> np.ndarray:
        """A numeric column as floats (NaN where absent and allowed); flags what cannot be read.

        Numbers must be finite; whole numbers must also fit in 64 bits (they may be stored as int64).
        """
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
            bad |= np.isfinite(values) & ((values != np.round(values)) | (np.abs(values) >= INT64_LIMIT))
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"<= {maximum:g}" if maximum is not None else "",
                  "< 2^63" if whole and maximum is None else ""]
        kind = ("a whole number " if whole else "a number ") + " and ".join(b for b in bounds if b)
        self.flag(bad, f"column {column!r}: expected {kind.strip()}", raw)
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


@dataclass
class _Layout:
    """What one pass over a delimited file's lines finds (blank lines count as lines but hold no row)."""

    header: list[str] | None = None
    lines: int = 0  # physical lines
    rows: int = 0  # non-blank lines after the header
    fields: dict[int, int] = field(default_factory=dict)  # line -> fields, where not the header's count
    blank: list[int] = field(default_factory=list)
    cut: int | None = None  # the last line, when it has no line end and other lines came before it
    open_quote: int | None = None  # the first line whose quotes do not close on it


def _split(text: str, sep: str) -> list[str]:
    """One line's fields, honouring quotes where the line has any."""
    if '"' not in text:
        return text.split(sep)
    try:
        return next(csv.reader([text], delimiter=sep), [])
    except csv.Error:  # a field over the csv module's size limit: quotes are then beside the point
        return text.split(sep)


def _scan(path: Path, sep: str, names: list[str] | None, source: str) -> _Layout:
    """Count each line's fields against the header's; the header itself is checked here."""
    layout = _Layout()
    expected = len(names) if names is not None else None
    with open_text(path, source) as handle:
        for number, raw in enumerate(handle, start=1):
            layout.lines = number
            text = raw.rstrip("\n")
            if expected is None:  # the header line
                layout.header = check_header(_split(text, sep) if text.strip() else [], source)
                expected = len(layout.header)
                continue
            if not text.strip():
                layout.blank.append(number)
                continue
            if '"' in text:
                if text.count('"') % 2 and layout.open_quote is None:
                    layout.open_quote = number
                count = len(_split(text, sep))
            else:
                count = text.count(sep) + 1
            if count != expected:
                layout.fields[number] = count
            if not raw.endswith("\n") and (names is None or layout.rows):
                layout.cut = number
            layout.rows += 1
    return layout


def read_delimited(path: Path, errors: RowErrors, *, names: list[str] | None = None,
                   sep: str = ",") -> TraceTable:
    """Read a CSV (header line, or headerless with `names`) as strings, keeping physical line numbers.

    Rows with too many or too few fields are malformed (the parser never sees them), as is a last
    line with no line end; blank lines (and rows of empty fields) are ignored.
    """
    layout = _scan(path, sep, names, errors.source)
    columns = names if names is not None else layout.header or []
    if not columns:  # an empty file or a blank header line: the loader names the columns it needs
        return TraceTable(pd.DataFrame(), np.zeros(0, dtype=int), errors)
    reason = f"expected {len(columns)} fields separated by {sep!r}"
    wrong = sorted(layout.fields)
    if wrong and errors.strict:  # stop before parsing
        errors.reject(wrong[0], reason, layout.fields[wrong[0]])
    header_lines = 0 if names is not None else 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(path, sep=sep, header=None, names=columns,
                                skiprows=set(range(header_lines)) | {n - 1 for n in wrong},  # 0-based lines
                                index_col=False, dtype=str, keep_default_na=False, skip_blank_lines=False,
                                on_bad_lines="warn", encoding="utf-8", encoding_errors="replace",
                                compression=compression(path))
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame(columns=columns, dtype=str)
        except (ValueError, OSError, EOFError) as exc:  # pandas' ParserError, corrupt compressed data
            raise errors.cannot_read("CSV", exc) from exc
    # Lines the parser found too long although the scan did not (quoting read differently): malformed too.
    dropped = sorted(int(m.group(1)) for w in caught for m in _SKIPPED_LINE.finditer(str(w.message)))
    if dropped and errors.strict:
        errors.reject(dropped[0], reason)
    if wrong or dropped:
        errors.reasons[reason] += len(wrong) + len(dropped)
    lines = np.setdiff1d(np.arange(header_lines + 1, layout.lines + 1), np.asarray(wrong + dropped, dtype=int))
    if len(lines) != len(frame):
        where = f"line {layout.open_quote}" if layout.open_quote else None
        raise CapsimError("expected one row per line; a quoted field seems to run over a line end",
                          source=errors.source, where=where)
    blank = np.isin(lines, layout.blank) | (frame == "").all(axis=1).to_numpy()
    table = TraceTable(frame.loc[~blank].reset_index(drop=True), lines[~blank], errors,
                       unread=len(wrong) + len(dropped))
    if layout.cut is not None:
        table.flag(table.lines == layout.cut, CUT_SHORT)
    return table
