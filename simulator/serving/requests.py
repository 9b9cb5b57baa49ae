"""The request table: the scenario's `requests:` sources drawn or read into columns (arrival_s,
prompt_tokens, output_tokens, service, and session when a source has sessions: -1 for none), merged in
arrival order. With closed-loop sessions also follows (the row of a later turn's previous turn, -1 for
a request that arrives at its arrival_s) and think_s (the think time before it): a later turn's
arrival_s is then its open-loop time, which orders the rows (the same request ids as open loop), and
the fleet sets its actual arrival."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.serving.spec import MAX_TOKENS, LengthDist, SyntheticRequests, ThinkTime
from simulator.serving.traces import load_requests

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


YEAR_S = 365 * 86400.0
GRID_S = 60.0  # the rate's integral is tabulated every minute (hour boundaries fall on the grid)
MAX_GRID = 4_000_000  # points of that table; a longer horizon takes coarser steps (whole hours)


def unit_gaps(arrival, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` gaps of mean 1: exponential (Poisson), or gamma with shape 1/cv^2 (coefficient of variation cv)."""
    if arrival.process == "gamma":
        return rng.gamma(1.0 / arrival.cv**2, arrival.cv**2, n)
    return rng.exponential(1.0, n)


def rate_at(arrival, t: np.ndarray) -> np.ndarray:
    """The arrival rate (requests per second) at times `t` from the run's start."""
    rate = np.full(len(t), arrival.rate_per_s)
    if arrival.sinusoid is not None:
        d = arrival.sinusoid
        a = (d.peak_to_trough - 1.0) / (d.peak_to_trough + 1.0)
        rate *= 1.0 + a * np.cos(2 * np.pi * (t - 3600.0 * d.peak_hour) / d.period)
    if arrival.hourly is not None:
        hourly = np.asarray(arrival.hourly, dtype=float)
        rate *= (hourly / hourly.mean())[(t // 3600.0).astype(np.int64) % 24]
    if arrival.annual_growth:
        rate *= np.exp(np.log1p(arrival.annual_growth) * t / YEAR_S)
    return rate


def cumulative_rate(arrival, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """(grid, expected arrivals from 0 to each grid time) up to `horizon` at least: the rate taken at
    each step's midpoint (exact for the hourly profile, within 1e-6 of a daily sinusoid's integral)."""
    step = GRID_S if horizon / GRID_S <= MAX_GRID else 3600.0 * math.ceil(horizon / (3600.0 * MAX_GRID))
    k = int(math.ceil(horizon / step)) + 1
    grid = np.arange(k + 1, dtype=float) * step
    expected = np.concatenate([[0.0], np.cumsum(rate_at(arrival, grid[:-1] + step / 2) * step)])
    return grid, expected


def _invert(grid: np.ndarray, expected: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The times at which the expected arrivals reach `u` (the first, where the rate is 0 for a while)."""
    i = np.searchsorted(expected, u, side="right")  # expected[i - 1] <= u < expected[i]
    lo = expected[i - 1]
    return grid[i - 1] + (u - lo) / (expected[i] - lo) * (grid[i] - grid[i - 1])


def modulated_arrivals(spec: SyntheticRequests, rng: np.random.Generator, where: str = "requests",
                       source: str = "<scenario>") -> np.ndarray:
    """Arrival times under a rate that varies (a daily profile, growth): unit-rate gaps mapped through
    the rate's integral from `start` (time rescaling)."""
    arrival = spec.arrival
    if spec.requests is not None:
        u = np.cumsum(unit_gaps(arrival, rng, spec.requests))
        horizon = spec.start + 2.0 * spec.requests / arrival.rate_per_s + 86400.0
        while True:
            grid, expected = cumulative_rate(arrival, horizon)
            base = float(np.interp(spec.start, grid, expected))
            if expected[-1] - base > u[-1]:
                break
            if horizon > 1000 * YEAR_S:
                raise CapsimError(f"the rate falls too fast: {spec.requests:,} requests do not arrive within 1,000 "
                                  "years (give until, or a smaller decline)", source=source,
                                  where=f"{where}.arrival")
            horizon *= 2
        return _invert(grid, expected, u + base)
    grid, expected = cumulative_rate(arrival, spec.until)
    base = float(np.interp(spec.start, grid, expected))
    total = float(np.interp(spec.until, grid, expected)) - base
    chunks, u = [], 0.0
    while u < total:
        gaps = unit_gaps(arrival, rng, max(16, int(1.2 * total) + 16))
        times = u + np.cumsum(gaps)
        chunks.append(times)
        u = times[-1]
    u = np.concatenate(chunks) if chunks else np.empty(0)
    u = u[u < total]
    times = _invert(grid, expected, u + base)
    return times[times < spec.until]


def synthetic(spec: SyntheticRequests, rng: np.random.Generator, where: str = "requests",
              source: str = "<scenario>") -> pd.DataFrame:
    """Arrivals from `start`: `requests` of them, or those before `until`; Poisson or gamma gaps at
    `rate_per_s`, or, with a daily profile or growth, at the rate of the moment."""
    if spec.arrival.modulated:
        arrival = modulated_arrivals(spec, rng, where, source)
    elif spec.arrival.process == "gamma":
        mean_gap = 1.0 / spec.arrival.rate_per_s
        if spec.requests is not None:
            arrival = spec.start + np.cumsum(unit_gaps(spec.arrival, rng, spec.requests) * mean_gap)
        else:
            span = spec.until - spec.start
            chunks, t = [], spec.start
            while t < spec.until:
                times = t + np.cumsum(unit_gaps(spec.arrival, rng, max(16, int(1.2 * span / mean_gap) + 16)) * mean_gap)
                chunks.append(times)
                t = times[-1]
            arrival = np.concatenate(chunks) if chunks else np.empty(0)
            arrival = arrival[arrival < spec.until]
    else:
        arrival = _poisson(spec, rng)
    n = len(arrival)
    if spec.sessions is not None:
        return _sessions(spec, rng, arrival)
    return pd.DataFrame({"arrival_s": arrival, "prompt_tokens": lengths(spec.prompt_tokens, rng, n),
                         "output_tokens": lengths(spec.output_tokens, rng, n)})


def times(spec, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` durations (seconds): a constant, or drawn from a ThinkTime."""
    if not isinstance(spec, ThinkTime):
        return np.full(n, float(spec))
    if spec.dist == "exponential":
        return rng.exponential(spec.mean, n)
    if spec.dist == "lognormal":
        return spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    return rng.uniform(spec.low, spec.high, n)


def _within(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sums of `values` restarting at each session's first row (`first`: their indices)."""
    total = np.cumsum(values)
    base = np.repeat(total[first] - values[first], np.diff(np.append(first, len(values))))
    return total - base


def _sessions(spec: SyntheticRequests, rng: np.random.Generator, starts: np.ndarray) -> pd.DataFrame:
    """Sessions starting at `starts`: each turn arrives think_time after the previous one's arrival, and
    its prompt is the previous turn's prompt and output plus prompt_tokens new tokens (at most MAX_TOKENS)."""
    turns = lengths(spec.sessions.turns, rng, len(starts))
    first = np.cumsum(turns) - turns  # each session's first row
    session = np.repeat(np.arange(len(starts), dtype=np.int64), turns)
    think = times(spec.sessions.think_time, rng, len(session))
    think[first] = 0.0
    new = lengths(spec.prompt_tokens, rng, len(session))
    output = lengths(spec.output_tokens, rng, len(session))
    # turn k's prompt: the new tokens of turns 0..k and the outputs of turns 0..k-1
    prompt = _within(new, first) + _within(output, first) - output
    frame = pd.DataFrame({"arrival_s": starts[session] + _within(think, first),
                          "prompt_tokens": np.minimum(prompt, MAX_TOKENS),
                          "output_tokens": output, "session": session})
    if spec.sessions.closed_loop:  # the same draws; the fleet times the later turns (CLOSED_LOOP)
        follows = np.arange(len(session), dtype=np.int64) - 1
        follows[first] = -1
        frame["follows"], frame["think_s"] = follows, think
    return frame


def _poisson(spec: SyntheticRequests, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals at a constant rate (the first slice's draws, kept so its scenarios stay the same)."""
    mean_gap = 1.0 / spec.arrival.rate_per_s
    if spec.requests is not None:
        return spec.start + np.cumsum(rng.exponential(mean_gap, spec.requests))
    span = spec.until - spec.start
    chunks, t = [], spec.start
    while t < spec.until:  # draw in chunks until past the end
        gaps = rng.exponential(mean_gap, max(16, int(1.2 * span / mean_gap) + 16))
        times = t + np.cumsum(gaps)
        chunks.append(times)
        t = times[-1]
    arrival = np.concatenate(chunks) if chunks else np.empty(0)
    return arrival[arrival < spec.until]


def request_table(sources, services: list[str], rngs, base_dir: Path, source: str = "<scenario>") -> pd.DataFrame:
    """Every source's requests (source i draws from rngs[i]) with their service's index and name, in
    arrival order (stable: sources in scenario order on ties); request_id is the row number."""
    parts = []
    sessions = 0  # session ids taken by the sources before (each source's sessions are its own)
    rows = 0  # rows of the sources before
    for i, spec in enumerate(sources):
        where = f"requests[{i}]"
        frame = synthetic(spec, rngs[i], where, source) if spec.kind == "synthetic" else load_requests(spec, base_dir)
        if "follows" in frame:  # closed-loop turns: their previous turn's row in the concatenation
            frame["follows"] = np.where(frame["follows"] >= 0, frame["follows"] + rows, -1)
        rows += len(frame)
        if "session" in frame:
            ids = frame["session"].to_numpy()
            _, inverse = np.unique(ids, return_inverse=True)
            frame["session"] = np.where(ids >= 0, inverse.astype(np.int64) - int((ids < 0).any()) + sessions, -1)
            sessions = int(frame["session"].max()) + 1 if (ids >= 0).any() else sessions
        frame["service"] = spec.service
        frame["service_index"] = services.index(spec.service)
        parts.append(frame)
    if any("session" in p for p in parts):  # only then: tables without sessions stay as they were
        for p in parts:
            if "session" not in p:
                p["session"] = np.full(len(p), -1, dtype=np.int64)
    closed = any("follows" in p for p in parts)
    if closed:  # only then: the other tables stay as they were
        for p in parts:
            if "follows" not in p:
                p["follows"], p["think_s"] = np.full(len(p), -1, dtype=np.int64), np.zeros(len(p))
    if not parts:
        table = pd.DataFrame({c: pd.Series(dtype=float if c == "arrival_s" else np.int64) for c in COLUMNS})
        table["service"], table["service_index"] = pd.Series(dtype=object), pd.Series(dtype=np.int64)
    else:
        table = pd.concat(parts, ignore_index=True)
    table = table.sort_values("arrival_s", kind="stable")
    if closed:  # the previous turns' rows once sorted
        row = np.empty(len(table), dtype=np.int64)
        row[table.index.to_numpy()] = np.arange(len(table), dtype=np.int64)
        follows = table["follows"].to_numpy()
        table["follows"] = np.where(follows >= 0, row[np.maximum(follows, 0)], -1)
    table = table.reset_index(drop=True)
    table.insert(0, "request_id", np.arange(len(table), dtype=np.int64))
    return table
