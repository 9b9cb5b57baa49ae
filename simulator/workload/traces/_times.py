"""Trace clocks → float seconds on one axis (datetimes as UTC wall time, unix seconds as they are)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# Spellings the traces use for "no value": empty cells, Python's None in JSON, sacct's Unknown/None.
MISSING_TOKENS = frozenset({"", "none", "null", "nan", "nat", "unknown", "n/a", "na", "-"})

_UNIX_EPOCH = pd.Timestamp(0, tz="UTC")
_HAS_OFFSET = re.compile(r"(?:[+-]\d{2}:?\d{2}|Z)$")


def is_missing(text: pd.Series) -> np.ndarray:
    """True where a string cell holds one of the trace's "no value" spellings."""
    return text.isna().to_numpy() | text.fillna("").str.strip().str.lower().isin(MISSING_TOKENS).to_numpy()


def datetime_seconds(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since 1970 for ISO-like datetimes ('2020-04-01 00:00:05', '...T...', '...+00:00').

    Naive times are read as UTC wall time: differences stay exact and no daylight-saving jump
    is invented for traces that never said which zone they were in.
    Returns (seconds with NaN where missing or unreadable, mask of unreadable non-missing cells).
    """
    missing = is_missing(text)
    parsed = pd.to_datetime(text.str.strip(), format="ISO8601", errors="coerce", utc=True)
    # In the parsed values' own unit: a year such as 7200 fits in seconds, not in nanoseconds.
    since = parsed - _UNIX_EPOCH.as_unit(parsed.dt.unit)
    seconds = (since / pd.Timedelta(1, "s")).to_numpy(dtype=float, na_value=np.nan)
    return seconds, np.isnan(seconds) & ~missing


def number_seconds(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Plain numbers of seconds (unix or a trace's own clock); same return shape as datetime_seconds."""
    missing = is_missing(text)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values) & ~missing
    return np.where(bad | missing, np.nan, values), bad


def has_utc_offset(text: pd.Series) -> bool:
    """Whether the first present datetime carries a zone offset (then the origin is written with one)."""
    present = text.dropna().str.strip()
    present = present[present != ""]
    return bool(len(present)) and bool(_HAS_OFFSET.search(str(present.iloc[0])))


def iso_origin(seconds: float, *, with_offset: bool) -> str:
    """The origin of a datetime trace as an ISO string, naive when the trace's own times were naive."""
    stamp = pd.Timestamp(seconds, unit="s", tz="UTC")
    return stamp.isoformat() if with_offset else stamp.tz_localize(None).isoformat()
