"""Max-min fair sharing of a link graph by progressive filling.

Each flow asks for `demand` GB/s and, at that demand, puts `loads[link]` GB/s on each link it crosses
(a job's traffic spread over its nodes crosses several switch links, each with part of it). Granted
g GB/s, it puts g / demand of those loads on them. Progressive filling raises every unfrozen flow's
grant at the same pace; a flow freezes when it has its whole demand or when a link it crosses is full.
The result is the max-min fair allocation of the grants (no flow can get more without taking from one
that has no more than it), the fluid model of flow-level network simulators (Bertsekas & Gallager,
Data Networks, sec. 6.5.2). With one link that every flow crosses with all its traffic it is the
water-filling of network/fabric.py.
"""

from __future__ import annotations

import numpy as np

from simulator.network import fill

# A link counts as full, and a flow as satisfied, within this relative slack (float rounding).
EPS = 1e-12


def max_min_shares(demand: list[float], loads: list[dict[int, float]], capacity: dict[int, float]) -> list[float]:
    """Each flow's granted fraction of its demand (0-1]: max-min fair in granted GB/s.

    demand[f] > 0; loads[f] maps a link to the GB/s flow f puts on it at full demand (links not in
    `capacity` are not shared and never limit it); capacity[link] > 0."""
    # Each link's load with every flow at its demand, added in flow order as plain doubles (as the
    # fabric's link_load does), not a matrix product, whose summation order depends on the BLAS kernel:
    # the same decision on any machine. Nothing over its capacity (the common case): all get their demand.
    full = dict.fromkeys(capacity, 0.0)
    for flow_loads in loads:
        for link, load in flow_loads.items():
            if link in full:
                full[link] += load
    if all(full[link] <= cap for link, cap in capacity.items()):
        return [1.0] * len(demand)
    links = list(capacity)
    column = {link: j for j, link in enumerate(links)}
    per_grant = np.zeros((len(demand), len(links)))
    for f, flow_loads in enumerate(loads):
        for link, load in flow_loads.items():
            j = column.get(link)
            if j is not None:
                per_grant[f, j] = load / demand[f]
    return filling(list(demand), per_grant, np.array([capacity[link] for link in links]))


def filling(demand: list[float], per_grant: np.ndarray, capacity: np.ndarray) -> list[float]:
    """Progressive filling (max_min_shares without its uncontended shortcut): each flow's granted fraction.

    Every unfrozen flow has been raised by the same steps from 0, so their grants are one `level`; the
    smallest demand left sets the next step unless a link fills first. Only the links' loads and
    slopes are arrays (numpy calls cost as much as a few dozen Python float operations, so per-flow
    arrays would not pay). The operations and their order are those of a plain loop that raises every
    unfrozen flow by the step and recomputes each link's slope as per_grant's unfrozen rows summed
    in order, which a test checks bit for bit. The compiled build runs the same operations as a loop on
    C doubles (network/fill.py); numpy sums a single column or a non-C-contiguous array's axis 0
    pairwise, which that loop does not reproduce, so those stay here."""
    if (fill.IS_COMPILED and per_grant.shape[1] > 1 and per_grant.flags.c_contiguous
            and per_grant.dtype == np.float64):
        return fill.fill(demand, per_grant, capacity, 1.0 - EPS)
    n = len(demand)
    keep = 1.0 - EPS  # a link counts as full, and a flow as satisfied, within this slack
    crosses = per_grant > 0
    slope = per_grant.sum(axis=0)  # GB/s each link gains per GB/s of level: numpy adds the rows in order
    room_cap = capacity.copy()  # a full link's is infinite, so it never limits a step again
    full_at = capacity * keep
    used = np.zeros(len(capacity))
    granted = [0.0] * n
    active = np.ones(n, dtype=bool)
    by_demand = sorted(range(n), key=demand.__getitem__)
    first = 0  # by_demand[first:] holds every unfrozen flow
    left = n
    level = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):  # links no unfrozen flow crosses: x / 0 = inf
        while left:
            while not active[by_demand[first]]:
                first += 1
            step = demand[by_demand[first]] - level
            room = float(((room_cap - used) / slope).min())
            if room < step:
                step = room
            if step < 0.0:
                step = 0.0
            level += step
            used += step * slope
            full = (used >= full_at).nonzero()[0]  # not np.flatnonzero: its wrapper costs as much
            if len(full):
                room_cap[full] = full_at[full] = np.inf
                frozen = (active & crosses[:, full].any(axis=1)).nonzero()[0].tolist()
                active[frozen] = False
            else:
                frozen = []
            for f in by_demand[first:]:  # satisfied flows: a prefix of the unfrozen ones by demand
                if active[f]:
                    if level < demand[f] * keep:
                        break
                    active[f] = False
                    frozen.append(f)
            if not frozen:  # cannot happen: the step stops at the first flow or link to fill
                raise RuntimeError("progressive filling made no progress")
            left -= len(frozen)
            for f in frozen:
                granted[f] = level
            if left:
                slope = per_grant[active].sum(axis=0)
    return [min(1.0, g / d) for g, d in zip(granted, demand, strict=True)]
