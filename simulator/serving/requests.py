"""The request table: the scenario's `requests:` sources drawn or read into columns (arrival_s,
prompt_tokens, output_tokens, service), merged in arrival order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.serving.spec import MAX_TOKENS, LengthDist, SyntheticRequests, TraceRequests

COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")


def lengths(spec, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` token counts: a constant, or drawn from a LengthDist (rounded, at least 1, clipped at max, and
    at MAX_TOKENS: a lognormal's tail beyond int64 would wrap round to negative counts)."""
    if not isinstance(spec, LengthDist):
        return np.full(n, int(spec), dtype=np.int64)
    if spec.dist == "lognormal":
        x = spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    elif spec.dist == "exponential":
        x = rng.exponential(spec.mean, n)
    else:
        x = rng.integers(spec.low, spec.high + 1, n).astype(float)
    x = np.maximum(np.rint(x), 1)
    x = np.minimum(x, MAX_TOKENS if spec.max is None else spec.max)
    return x.astype(np.int64)


def synthetic(spec: SyntheticRequests, rng: np.random.Generator) -> pd.DataFrame:
    """Poisson arrivals at `rate_per_s` from `start`: `requests` of them, or those before `until`."""
    mean_gap = 1.0 / spec.arrival.rate_per_s
    if spec.requests is not None:
        arrival = spec.start + np.cumsum(rng.exponential(mean_gap, spec.requests))
    else:
        span = spec.until - spec.start
        chunks, t = [], spec.start
        while t < spec.until:  # draw in chunks until past the end
            gaps = rng.exponential(mean_gap, max(16, int(1.2 * span / mean_gap) + 16))
            times = t + np.cumsum(gaps)
            chunks.append(times)
            t = times[-1]
        arrival = np.concatenate(chunks) if chunks else np.empty(0)
        arrival = arrival[arrival < spec.until]
    n = len(arrival)
    return pd.DataFrame({"arrival_s": arrival, "prompt_tokens": lengths(spec.prompt_tokens, rng, n),
                         "output_tokens": lengths(spec.output_tokens, rng, n)})


def trace(spec: TraceRequests, base_dir: Path, source: str, where: str) -> pd.DataFrame:
    """A request list from CSV or Parquet: arrival_s, prompt_tokens, output_tokens (other columns ignored)."""
    path = spec.path if spec.path.is_absolute() else Path(base_dir) / spec.path
    try:
        frame = pd.read_csv(path) if spec.format == "csv" else pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise CapsimError(f"cannot read the request list {str(path)!r}: {exc}", source=source, where=where) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CapsimError(f"the request list lacks column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})",
                          source=str(path), where=where)
    frame = frame[list(COLUMNS)]
    if frame.isna().any().any():
        raise CapsimError("the request list has empty cells", source=str(path), where=where)
    arrival = frame["arrival_s"].to_numpy(dtype=float)
    prompt, output = frame["prompt_tokens"].to_numpy(), frame["output_tokens"].to_numpy()
    if not np.isfinite(arrival).all() or (arrival < 0).any():
        raise CapsimError("arrival_s must be finite seconds >= 0 from the run's start", source=str(path), where=where)
    for name, col in (("prompt_tokens", prompt), ("output_tokens", output)):
        try:
            values = np.asarray(col, dtype=float)
        except (TypeError, ValueError):
            values = np.array([np.nan])
        if not ((values >= 1) & (values <= MAX_TOKENS) & (values % 1 == 0)).all():
            raise CapsimError(f"{name} must be whole numbers from 1 to {MAX_TOKENS:,}", source=str(path),
                              where=where)
    return pd.DataFrame({"arrival_s": arrival, "prompt_tokens": np.asarray(prompt, dtype=float).astype(np.int64),
                         "output_tokens": np.asarray(output, dtype=float).astype(np.int64)})


def request_table(sources, services: list[str], rngs, base_dir: Path, source: str = "<scenario>") -> pd.DataFrame:
    """Every source's requests (source i draws from rngs[i]) with their service's index and name, in
    arrival order (stable: sources in scenario order on ties); request_id is the row number."""
    parts = []
    for i, spec in enumerate(sources):
        where = f"requests[{i}]"
        frame = synthetic(spec, rngs[i]) if spec.kind == "synthetic" else trace(spec, base_dir, source, where)
        frame["service"] = spec.service
        frame["service_index"] = services.index(spec.service)
        parts.append(frame)
    if not parts:
        table = pd.DataFrame({c: pd.Series(dtype=float if c == "arrival_s" else np.int64) for c in COLUMNS})
        table["service"], table["service_index"] = pd.Series(dtype=object), pd.Series(dtype=np.int64)
    else:
        table = pd.concat(parts, ignore_index=True)
    table = table.sort_values("arrival_s", kind="stable").reset_index(drop=True)
    table.insert(0, "request_id", np.arange(len(table), dtype=np.int64))
    return table
