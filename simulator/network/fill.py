# cython: boundscheck=False, wraparound=False
"""Progressive filling as a scalar loop over the links: what maxmin.filling runs when compiled.

maxmin.filling does each step's link arithmetic with numpy, whose calls cost as much as the work on
a fabric's few dozen links. Compiled (simulator/compiled.py; the C types are in fill.pxd) this loop
runs on C doubles. It does the same floating-point operations in the same order as maxmin.filling,
so it returns the same floats, bit for bit (tests/test_topology.py checks both against the plain
loop). As plain Python it is slower than the numpy loop, so maxmin uses it only when compiled.
"""

from __future__ import annotations

from array import array

IS_COMPILED = not __file__.endswith(".py")  # a built extension module runs in place of this file


def fill(demand: list[float], per_grant, capacity, keep: float) -> list[float]:
    """maxmin.filling on a C-contiguous per_grant (flows x links) with more than one column (numpy
    sums a single column pairwise, not row after row as this loop does); keep = 1 - maxmin.EPS."""
    return Filling(capacity).dense(demand, per_grant, keep)


class Filling:
    """The filling on the links of `capacity`, with its work arrays kept from one call to the next: a
    fabric re-shares thousands of times, and allocating them on each call cost as much as the filling
    of a few dozen flows."""

    def __init__(self, capacity):
        self.links = len(capacity)
        self.cap = array("d", [float(c) for c in capacity])
        self.slope = array("d", [0.0]) * self.links  # GB/s each link gains per GB/s of level
        self.used = array("d", [0.0]) * self.links
        self.full = array("b", [0]) * self.links  # a full link never limits a step again
        self.flows = self.size = 0
        self._room(16, 64)

    def _room(self, n: int, size: int) -> None:
        """Arrays for `n` flows with `size` nonzero entries in all, at least."""
        if n > self.flows:
            self.flows = max(n, 2 * self.flows)
            self.start = array("q", [0]) * (self.flows + 1)
            self.dem = array("d", [0.0]) * self.flows
            self.by_demand = array("q", [0]) * self.flows
            self.active = array("b", [0]) * self.flows
            self.granted = array("d", [0.0]) * self.flows
        if size > self.size:
            self.size = max(size, 2 * self.size)
            self.at = array("q", [0]) * self.size
            self.val = array("d", [0.0]) * self.size

    def dense(self, demand: list[float], per_grant, keep: float) -> list[float]:
        """fill: the flows' rows of per_grant, read element by element (a typed view when compiled)."""
        n = len(demand)
        links = self.links
        rows = per_grant
        self._room(n, n * links)
        start, at, val = self.start, self.at, self.val
        # Each row's nonzero entries (a flow crosses a few of the links): start[f]:start[f + 1] index its
        # columns `at` and values `val`. Skipping the zeros changes no sum: x + 0.0 == x.
        k = 0
        start[0] = 0
        for f in range(n):
            for j in range(links):
                if rows[f, j] != 0.0:
                    at[k] = j
                    val[k] = rows[f, j]
                    k += 1
            start[f + 1] = k
        return self._run(demand, keep)

    def rows(self, demand: list[float], cols: list, vals: list, keep: float) -> list[float]:
        """fill given each flow's entries instead of its dense row: flow f puts vals[f][i] GB/s per GB/s
        granted on column cols[f][i] (each column once, in any order). The same floats as fill on the
        dense rows: a flow adds to each column's slope once, so the order of its entries changes no sum,
        and the zeros are skipped as fill skips them. (No matrix to build or scan on each re-share.)"""
        n = len(demand)
        size = 0
        for f in range(n):
            size += len(cols[f])
        self._room(n, size)
        start, at, val = self.start, self.at, self.val
        k = 0
        start[0] = 0
        for f in range(n):
            row_cols, row_vals = cols[f], vals[f]
            for i in range(len(row_cols)):
                v = row_vals[i]
                if v != 0.0:
                    at[k] = row_cols[i]
                    val[k] = v
                    k += 1
            start[f + 1] = k
        return self._run(demand, keep)

    def _run(self, demand: list[float], keep: float) -> list[float]:
        """The filling of the flows whose entries `start`, `at` and `val` hold."""
        n = len(demand)
        links = self.links
        cap, slope, used, full = self.cap, self.slope, self.used, self.full
        start, at, val = self.start, self.at, self.val
        dem, active, granted, by_demand = self.dem, self.active, self.granted, self.by_demand
        for j in range(links):
            used[j] = 0.0
            full[j] = 0
        for f in range(n):
            dem[f] = demand[f]
            active[f] = 1
            granted[f] = 0.0
        # The flows by demand, ties in flow order: sorted(range(n), key=demand.__getitem__), as an
        # insertion sort (a stable sort's order is unique; a sorted call cost more than the filling's steps).
        for f in range(n):
            i = f
            while i and dem[by_demand[i - 1]] > dem[f]:
                by_demand[i] = by_demand[i - 1]
                i -= 1
            by_demand[i] = f
        first = 0  # by_demand[first:] holds every unfrozen flow
        left = n
        level = 0.0  # every unfrozen flow's grant: each has been raised by the same steps
        while left:
            # The unfrozen flows' rows summed in order, as numpy sums a C-contiguous array's axis 0.
            for j in range(links):
                slope[j] = 0.0
            for f in range(n):
                if active[f]:
                    for k in range(start[f], start[f + 1]):
                        slope[at[k]] += val[k]
            f = by_demand[first]
            while not active[f]:
                first += 1
                f = by_demand[first]
            step = dem[f] - level
            for j in range(links):
                if slope[j] > 0.0 and not full[j]:  # numpy's others give inf, which never sets the step
                    room = (cap[j] - used[j]) / slope[j]
                    if room < step:
                        step = room
            if step < 0.0:
                step = 0.0
            level += step
            filled = False
            for j in range(links):
                used[j] += step * slope[j]
                if not full[j] and used[j] >= cap[j] * keep:
                    full[j] = 1
                    filled = True
            frozen = 0
            if filled:  # no unfrozen flow crosses a link that filled before: checking every full one is the same
                for f in range(n):
                    if active[f]:
                        for k in range(start[f], start[f + 1]):
                            if full[at[k]] and val[k] > 0.0:
                                active[f] = 0
                                granted[f] = level
                                frozen += 1
                                break
            for i in range(first, n):  # satisfied flows: a prefix of the unfrozen ones by demand
                f = by_demand[i]
                if active[f]:
                    if level < dem[f] * keep:
                        break
                    active[f] = 0
                    granted[f] = level
                    frozen += 1
            if not frozen:  # cannot happen: the step stops at the first flow or link to fill
                raise RuntimeError("progressive filling made no progress")
            left -= frozen
        return [min(1.0, granted[f] / dem[f]) for f in range(n)]
