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
    n = len(demand)
    links = len(capacity)
    rows = per_grant  # read element by element: a typed view of the array when compiled
    cap = capacity
    # Each row's nonzero entries (a flow crosses a few of the links): start[f]:start[f + 1] index its
    # columns `at` and values `val`. Skipping the zeros changes no sum: x + 0.0 == x.
    start = array("q", [0]) * (n + 1)
    at = array("q", [0]) * (n * links)
    val = array("d", [0.0]) * (n * links)
    k = 0
    for f in range(n):
        for j in range(links):
            if rows[f, j] != 0.0:
                at[k] = j
                val[k] = rows[f, j]
                k += 1
        start[f + 1] = k
    slope = array("d", [0.0]) * links  # GB/s each link gains per GB/s of level
    used = array("d", [0.0]) * links
    full = array("b", [0]) * links  # a full link never limits a step again
    active = array("b", [1]) * n
    granted = array("d", [0.0]) * n
    by_demand = sorted(range(n), key=demand.__getitem__)
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
        step = demand[f] - level
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
                if level < demand[f] * keep:
                    break
                active[f] = 0
                granted[f] = level
                frozen += 1
        if not frozen:  # cannot happen: the step stops at the first flow or link to fill
            raise RuntimeError("progressive filling made no progress")
        left -= frozen
    return [min(1.0, granted[f] / demand[f]) for f in range(n)]
