"""Request traces: a request list (CSV or Parquet) and the public LLM-serving traces in their released
formats, read into arrival_s, prompt_tokens, output_tokens.

- `csv` / `parquet`: arrival_s (seconds from the run's start), prompt_tokens, output_tokens (whole, >= 1),
  and optionally session (a whole number >= 0 that a session's turns share; blank for none); other
  columns are ignored.
- `azure`: the Azure LLM inference traces (Azure/AzurePublicDataset, AzureLLMInferenceTrace_{code,conv}
  2023 and the 2024 week-long ones): TIMESTAMP (a datetime, with or without an offset), ContextTokens,
  GeneratedTokens.
- `burstgpt`: BurstGPT (HPMLL/BurstGPT): Timestamp (seconds from the trace's start), Model, Request
  tokens, Response tokens, Total tokens, Log Type.
- `mooncake`: the Mooncake traces (kvcache-ai/Mooncake, FAST'25): JSON lines with timestamp
  (milliseconds), input_length, output_length and hash_ids (prefix-cache blocks, not modelled: ignored).

They are read like the training traces (workload/traces/_rows.py): strict by default, the first
malformed row stops the load with its file and line (a row short of fields, a value that is not a
finite number, a negative count, a whole number beyond int64); a UTF-8 byte-order mark and gzip, bz2
or xz compression are taken in stride. With `strict: false` malformed rows are skipped and counted in
a warning. In the public traces a request with 0 prompt or 0 output tokens (BurstGPT records failed
requests so) cannot be served: such rows are left out and counted in a warning. A public trace's
clock is rebased so that its first request arrives at `start`; gaps are divided by `speedup`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.serving.spec import MAX_TOKENS
from simulator.workload.traces._rows import INT64_LIMIT, RowErrors, numbered_lines, read_delimited, snippet

COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
# format -> (time column, prompt column, output column, clock: seconds | datetime)
DELIMITED = {
    "csv": ("arrival_s", "prompt_tokens", "output_tokens", "seconds"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens", "datetime"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens", "seconds"),
}
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")


def load_requests(spec, base_dir: Path) -> pd.DataFrame:
    """The requests of a `kind: trace` source: arrival_s on the run's clock (start and speedup applied,
    those at or after `until` left out), prompt_tokens, output_tokens."""
    path = spec.path if spec.path.is_absolute() else Path(base_dir) / spec.path
    if not path.is_file():
        raise CapsimError("no such request trace", source=str(path))
    errors = RowErrors(str(path), strict=spec.strict)
    session = None
    if spec.format == "parquet":
        t, prompt, output, session = _parquet(path, errors)
    elif spec.format == "mooncake":
        t, prompt, output = _mooncake(path, errors)
    else:
        t, prompt, output, session = _delimited(path, spec.format, errors)
    public = spec.format not in ("csv", "parquet")
    if public:
        unservable = (prompt < 1) | (output < 1)
        if unservable.any():
            warnings.warn(f"{path}: {int(unservable.sum()):,} request(s) with 0 prompt or 0 output tokens (failed "
                          "requests) left out", stacklevel=3)
            t, prompt, output = t[~unservable], prompt[~unservable], output[~unservable]
    for name, counts in (("prompt tokens", prompt), ("output tokens", output)):
        over = np.flatnonzero(counts > MAX_TOKENS)
        if len(over):  # beyond any model's context, and token and block sums would overflow int64
            raise CapsimError(f"{len(over):,} request(s) with more than {MAX_TOKENS:,} {name} (the first is "
                              f"request {int(over[0]) + 1:,} of the file)", source=str(path))
    if errors.skipped:
        reasons = "; ".join(f"{n:,} {r}" for r, n in errors.reasons.most_common(3))
        warnings.warn(f"{path}: {errors.skipped:,} malformed row(s) skipped ({reasons})", stacklevel=3)
    origin = float(t.min()) if public and len(t) else 0.0
    arrival = spec.start + (t - origin) / spec.speedup
    if spec.until is not None:
        keep = arrival < spec.until
        arrival, prompt, output = arrival[keep], prompt[keep], output[keep]
        session = None if session is None else session[keep]
    frame = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": prompt.astype(np.int64),
                          "output_tokens": output.astype(np.int64)})
    if session is not None:  # a request list's sessions (-1: none)
        frame["session"] = np.where(np.isnan(session), -1, session).astype(np.int64)
    return frame


def _delimited(path: Path, fmt: str, errors: RowErrors) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                 np.ndarray | None]:
    time_col, prompt_col, output_col, clock = DELIMITED[fmt]
    table = read_delimited(path, errors)
    table.require(time_col, prompt_col, output_col)
    if clock == "datetime":
        t = table.times(time_col, required=True)
    else:
        t = table.numbers(time_col, minimum=0)
    least = 1 if fmt == "csv" else 0  # a request list must be servable; a public trace may record failures
    prompt = table.numbers(prompt_col, minimum=least, whole=True)
    output = table.numbers(output_col, minimum=least, whole=True)
    session = table.numbers("session", required=False, minimum=0, whole=True) \
        if fmt == "csv" and table.has("session") else None
    keep = table.keep
    t = t[keep]
    if clock == "datetime" and len(t):
        # Seconds since 1970 as floats keep about 0.2 microseconds: rebase in integer nanoseconds first.
        stamps = pd.to_datetime(table.frame[time_col][keep].str.strip(), format="ISO8601", utc=True)
        ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        t = (ns - ns.min()) / 1e9
    return t, prompt[keep], output[keep], None if session is None else session[keep]


def _parquet(path: Path, errors: RowErrors) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A Parquet request list; a bad row is named by its row number (1 = the first row)."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise errors.cannot_read("Parquet", exc) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CapsimError(f"missing column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})", source=errors.source)
    rows = np.arange(1, len(frame) + 1)
    keep = np.ones(len(frame), dtype=bool)
    out = []
    columns = [("arrival_s", 0, False), ("prompt_tokens", 1, True), ("output_tokens", 1, True)]
    if "session" in frame.columns:
        columns.append(("session", 0, True))
    for name, least, whole in columns:
        raw = frame[name]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(values) | (values < least)
        if name == "session":  # optional per row: a missing value is no session
            bad &= ~raw.isna().to_numpy()
        if whole:
            bad |= np.isfinite(values) & ((values != np.round(values)) | (values >= INT64_LIMIT))
        kind = f"a whole number >= {least} and < 2^63" if whole else f"a number >= {least}"
        if bad.any() and errors.strict:
            i = int(np.flatnonzero(bad)[0])
            raise CapsimError(f"column {name!r}: expected {kind}, got {snippet(raw.iloc[i])}", source=errors.source,
                              where=f"row {rows[i]}")
        if bad.any():
            errors.reasons[f"column {name!r}: expected {kind}"] += int((bad & keep).sum())
        keep &= ~bad
        out.append(values)
    session = out[3][keep] if len(out) > 3 else None
    return out[0][keep], out[1][keep], out[2][keep], session


def _mooncake(path: Path, errors: RowErrors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mooncake's JSON lines: {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]}."""
    t, prompt, output = [], [], []
    for line, text in numbered_lines(path, errors):
        try:
            row = json.loads(text)
        except ValueError:
            errors.reject(line, "expected one JSON object per line", text)
            continue
        if not isinstance(row, dict):
            errors.reject(line, "expected one JSON object per line", text)
            continue
        missing = [k for k in MOONCAKE_KEYS if k not in row]
        if missing:
            errors.reject(line, f"missing key(s) {', '.join(missing)}")
            continue
        values = []
        for key in MOONCAKE_KEYS:
            v = row[key]
            whole = key != "timestamp"
            ok = (isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < INT64_LIMIT  # before float(v)
                  and math.isfinite(v) and v >= 0 and (not whole or float(v).is_integer()))
            if not ok:
                kind = "a whole number >= 0 and < 2^63" if whole else "milliseconds >= 0"
                errors.reject(line, f"key {key!r}: expected {kind}", v)
                break
            values.append(float(v))
        else:
            t.append(values[0] / 1000.0)
            prompt.append(values[1])
            output.append(values[2])
    return np.array(t, dtype=float), np.array(prompt, dtype=float), np.array(output, dtype=float)
