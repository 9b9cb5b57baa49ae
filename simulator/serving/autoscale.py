"""Autoscaling a service: the recommendation at each evaluation, the scale-down stabilization, and the
replicas' busy time read from their busy periods (features/serving.py places and releases the replicas).

Evaluations fall on a fixed grid, t0 + k x interval (k >= 1), one calendar entry each, never one per
request. The recommendation is ceil(load / target), at least 1 while a request is outstanding, clipped
to [min, max]: load is the mean number of busy replicas over the last window (metric `utilization`; the
busy replica-seconds since the snapshot one window back, over the time since) or the outstanding
requests (metric `queue`: arrived, not rejected, not finished, including those waiting for a replica).
Scaling up goes to the recommendation at once; scaling down only to the largest recommendation of the
last `scale_down_delay` seconds (Kubernetes HPA's stabilization window: a window (now - delay, now]).

A service at rest (its least replicas, all idle and ready, nothing outstanding, and no larger
recommendation in the window) would get the same recommendation at every evaluation until a request
arrives: its evaluations stop until then (features/serving.py), and resume on the same grid.
"""

from __future__ import annotations

import math
from collections import deque

# ceil of a load that is a whole multiple of the target up to rounding (3 x 0.7 / 0.7 = 3.0000000000000004)
_ROUND = 1e-9


class Scaler:
    def __init__(self, metric: str, target: float, interval: float, window: float | None, delay: float,
                 lo: int, hi: int, t0: float, initial: int):
        self.metric, self.target, self.interval, self.delay = metric, target, interval, delay
        self.window = interval if window is None else window
        self.lo, self.hi, self.t0 = lo, hi, t0
        # (evaluation time, recommendation), decreasing: the largest of the window first
        self.recs: deque[tuple[float, int]] = deque([(t0, initial)])
        self.snapshots: deque[tuple[float, float]] = deque([(t0, 0.0)])  # (time, busy replica-seconds so far)

    def _tol(self, now: float) -> float:
        return 1e-9 * max(1.0, abs(now), self.interval)

    def next_time(self, now: float) -> float:
        """The first evaluation of the grid strictly after `now`."""
        k = math.floor((now - self.t0) / self.interval) + 1
        while self.t0 + k * self.interval <= now:
            k += 1
        return self.t0 + k * self.interval

    def recommend(self, now: float, outstanding: int, busy: float) -> int:
        """The replicas wanted now, from the outstanding requests or the busy replica-seconds so far."""
        if self.metric == "queue":
            load = float(outstanding)
        else:
            # Busy replica-seconds at the window's start: the latest snapshot at or before it. Awake, there is
            # one at every evaluation and the window is a whole number of intervals, so it is exact; across a
            # sleep (every replica idle, nothing outstanding) the busy time did not change, so it still is.
            snaps = self.snapshots
            snaps.append((now, busy))
            edge = now - self.window
            while len(snaps) > 1 and snaps[1][0] <= edge + self._tol(now):
                snaps.popleft()
            b_old = snaps[0][1]
            span = now - max(edge, self.t0)  # a window reaching before the run's start is cut there
            load = (busy - b_old) / span if span > 0 else 0.0
        ratio = load / self.target  # may overflow to inf on a tiny target: clipped to max before the ceiling
        want = self.hi if not ratio <= self.hi else math.ceil(ratio - _ROUND)
        if outstanding > 0:
            want = max(want, 1)
        return min(max(want, self.lo), self.hi)

    def stable(self, now: float, want: int) -> int:
        """Record this evaluation's recommendation; the largest of the last `delay` seconds (with it)."""
        self._record(now, want)
        return self.recs[0][1]

    def woken(self, now: float, replicas: int) -> None:
        """The service left zero replicas between evaluations (a request arrived): counts as a recommendation."""
        self._record(now, replicas)

    def _record(self, now: float, want: int) -> None:
        """The window's maximum kept as a deque of decreasing recommendations (a later, larger one makes
        the earlier ones irrelevant), so an evaluation costs O(1) however long the delay."""
        recs = self.recs
        edge = now - self.delay + self._tol(now)
        while recs and recs[0][0] <= edge:
            recs.popleft()
        while recs and recs[-1][1] <= want:
            recs.pop()
        recs.append((now, want))


class BusyMeter:
    """Busy replica-seconds of a service's replicas so far, read incrementally from their busy periods
    (start, end, start, ...; odd length while busy), so an evaluation costs a step per live replica and per
    period closed since the last."""

    def __init__(self):
        self.done = 0.0
        self.live: dict = {}  # replica -> [periods read, their busy seconds]

    def add(self, rep) -> None:
        self.live[rep] = [0, 0.0]

    def remove(self, rep, now: float) -> None:
        self.done += self._read(rep, now)
        del self.live[rep]

    def total(self, now: float) -> float:
        return self.done + sum(self._read(rep, now) for rep in self.live)

    def _read(self, rep, now: float) -> float:
        state = self.live[rep]
        periods = rep.periods
        c, n = state[0], len(periods)
        while c + 1 < n:
            state[1] += periods[c + 1] - periods[c]
            c += 2
        state[0] = c
        return state[1] + (now - periods[c] if c < n else 0.0)
