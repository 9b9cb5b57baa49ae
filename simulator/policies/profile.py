"""Free devices over time as a step function, for planning reservations (backfilling, EDF admission).

Built from the running jobs' predicted ends; reservations subtract devices over an interval. Counting
devices ignores node boundaries (as most backfilling simulators do): the real placement still checks
that a job fits, so fragmentation can only make a job start later than planned, never oversubscribe.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

INF = float("inf")


class FreeProfile:
    def __init__(self, now: float, free_now: int, ends: list[tuple[float, int]]):
        """`ends`: (predicted end, devices) of running jobs; an overdue job is taken to end now."""
        times, free = [now], [free_now]
        for t, d in sorted(ends):
            if t <= times[-1]:
                free[-1] += d
            else:
                times.append(t)
                free.append(free[-1] + d)
        self.times = times
        self.free = free

    def advance(self, now: float) -> None:
        """Move the origin to `now` (a later instant of the same plan), dropping the past."""
        if now <= self.times[0]:
            return
        i = bisect_right(self.times, now) - 1
        self.times = [now] + self.times[i + 1:]
        self.free = self.free[i:]

    def free_now(self) -> int:
        return self.free[0]

    def first_time_with(self, devices: int) -> tuple[float, int]:
        """Earliest time at which `devices` are free from then on (only running jobs ending), and how
        many are free then. Valid before any reservation, when free devices never decrease."""
        for t, f in zip(self.times, self.free, strict=True):
            if f >= devices:
                return t, f
        return INF, 0

    def earliest(self, devices: int, duration: float) -> float:
        """Earliest breakpoint from which `devices` stay free for `duration` seconds."""
        times, free = self.times, self.free
        n = len(times)
        i = 0
        while i < n:
            if free[i] < devices:
                i += 1
                continue
            end = times[i] + duration
            j = i + 1
            while j < n and times[j] < end and free[j] >= devices:
                j += 1
            if j == n or times[j] >= end:
                return times[i]
            i = j + 1  # the window broke at j: no start before j+1 can work
        return INF

    def reserve(self, start: float, duration: float, devices: int) -> None:
        if start == INF:
            return
        end = start + duration
        i = self._breakpoint(start)
        j = self._breakpoint(end) if end < INF else len(self.times)
        free = self.free
        for k in range(i, j):
            free[k] -= devices

    def _breakpoint(self, t: float) -> int:
        """Index of a breakpoint at time t, inserting one (copying the level before it) if needed."""
        times = self.times
        i = bisect_left(times, t)
        if i < len(times) and times[i] == t:
            return i
        times.insert(i, t)
        self.free.insert(i, self.free[i - 1])
        return i
