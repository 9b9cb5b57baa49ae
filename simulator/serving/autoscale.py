"""Autoscaling a service: the recommendation at each evaluation, the scale-down stabilization, and the
replicas' busy time read from their busy periods (features/serving.py places and releases the replicas).

Evaluations fall on a fixed grid, t0 + k x interval (k >= 1), one calendar entry each, never one per
request. The recommendation is ceil(load / target), at least 1 while a request is outstanding, clipped
to [min, max]: load is the mean number of busy replicas over the last window (metric `utilization`; the
busy replica-seconds since the snapshot one window back, over the time since) or the outstanding
requests (metric `queue`: arrived, not rejected, not finished, including those waiting for a replica).
Scaling up goes to the recommendation at once; scaling down only to the largest recommendation of the
last `scale_down_delay` seconds (Kubernetes HPA's stabilization window: a window (now - delay, now]).

Metric `ttft` (a custom latency metric, as Kubernetes HPA or KEDA users scale on) recommends
ceil(current x observed / target), the HPA formula desired = ceil(current x metric / target), where
current counts the replicas provisioning or ready and observed is LatencyWindow's quantile at the
evaluation: of the time to first token of the service's requests arrived in (now - window, now] (a
request still without its first token counting its age so far, now - arrival: a lower bound, so a
backlog shows at once) and of every earlier request still without its first token (its age), by the
nearest-rank rule (`nearest_rank`: numpy's method "inverted_cdf"). With none of them, observed is 0:
the recommendation is min (at least 1 while a request is outstanding), the count still going down only
as the stabilization window allows. With current 0 (scaled to zero) the formula gives 0: the replica a
waiting request starts (features/serving.py) is the one it then multiplies.

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
        return self._clip(load / self.target, outstanding)

    def recommend_latency(self, now: float, outstanding: int, observed: float, current: int) -> int:
        """metric `ttft`: ceil(current x observed / target) (Kubernetes HPA's formula), clipped as the others."""
        ratio = observed / self.target * current if current else 0.0
        return self._clip(ratio, outstanding)

    def _clip(self, ratio: float, outstanding: int) -> int:
        # the ratio may overflow to inf on a tiny target: clipped to max before the ceiling
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


def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile of `values` (not empty, 0 < q <= 1) by the nearest-rank rule: the smallest value with at
    least q x n of the values at or below it, the k-th smallest for k = ceil(q x n), at least the first.
    The index is computed as numpy's method "inverted_cdf" computes it (n x q - 1, rounded up), so the two
    agree exactly (tests/serving/test_latency_autoscale.py)."""
    k = math.ceil(len(values) * q - 1)
    return sorted(values)[k if k > 0 else 0]


class LatencyWindow:
    """The times to first token an evaluation of metric `ttft` reads, incrementally from the fleet's columns.

    `requests` are the service's requests in arrival order (the fleet's `order`), without those refused on
    arrival (they never get a first token). Two cursors bound the window's requests, (now - window, now]:
    an evaluation moves them past the requests arrived or aged out since the last one, and a request leaving
    the window without its first token is kept aside (`waiting`) until it has it. So an evaluation costs a
    step per request in the window, per request that arrived or left it since the last, and per older
    request still waiting: never a pass over the service's requests, and nothing for other services.

    At `now` a request's value is first - arrival once it has its first token, else now - arrival (its age:
    a lower bound of its TTFT). Observed: their `nearest_rank` quantile; 0 with none."""

    def __init__(self, requests: list[int], arrival: list[float], first: list[float], window: float, q: float):
        self.requests, self.arrival, self.first = requests, arrival, first
        self.window, self.q = window, q
        self.lo = self.hi = 0  # the window's requests are requests[lo:hi]
        self.waiting: list[int] = []  # requests arrived before the window, still without their first token
        self.count = 0  # values the last observation read

    def observe(self, now: float) -> float:
        requests, arrival, first = self.requests, self.arrival, self.first
        n, hi, lo = len(requests), self.hi, self.lo
        while hi < n and arrival[requests[hi]] <= now:
            hi += 1
        edge = now - self.window
        waiting = [r for r in self.waiting if first[r] != first[r]]  # NaN until the first token
        while lo < hi and arrival[requests[lo]] <= edge:
            r = requests[lo]
            if first[r] != first[r]:
                waiting.append(r)
            lo += 1
        self.lo, self.hi, self.waiting = lo, hi, waiting
        values = [now - arrival[r] for r in waiting]
        for i in range(lo, hi):
            r = requests[i]
            f = first[r]
            values.append(f - arrival[r] if f == f else now - arrival[r])
        self.count = len(values)
        return nearest_rank(values, self.q) if values else 0.0
