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

# A link counts as full, and a flow as satisfied, within this relative slack (float rounding).
EPS = 1e-12


def max_min_shares(demand: list[float], loads: list[dict[int, float]], capacity: dict[int, float]) -> list[float]:
    """Each flow's granted fraction of its demand (0-1]: max-min fair in granted GB/s.

    demand[f] > 0; loads[f] maps a link to the GB/s flow f puts on it at full demand (links not in
    `capacity` are not shared and never limit it); capacity[link] > 0."""
    links = list(capacity)
    column = {link: j for j, link in enumerate(links)}
    dem = np.asarray(demand, dtype=float)
    per_grant = np.zeros((len(demand), len(links)))
    for f, flow_loads in enumerate(loads):
        for link, load in flow_loads.items():
            j = column.get(link)
            if j is not None:
                per_grant[f, j] = load / dem[f]
    return shares_of(dem, per_grant, np.array([capacity[link] for link in links])).tolist()


def shares_of(demand: np.ndarray, per_grant: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """max_min_shares on arrays: per_grant[f, l] is the GB/s flow f puts on link l per GB/s granted to
    it (its load at full demand / its demand)."""
    n = len(demand)
    usage = per_grant.T @ demand  # each link's load with every flow at its demand
    if (usage <= capacity).all():
        return np.ones(n)  # nothing is contended (the common case): everyone gets its demand
    crosses = per_grant > 0
    granted = np.zeros(n)
    used = np.zeros(len(capacity))
    active = np.ones(n, dtype=bool)
    while active.any():
        slope = per_grant[active].sum(axis=0)
        step = (demand - granted)[active].min()
        rising = slope > 0
        if rising.any():
            step = min(step, ((capacity[rising] - used[rising]) / slope[rising]).min())
        step = max(step, 0.0)
        granted[active] += step
        used += step * slope
        full = rising & (used >= capacity * (1.0 - EPS))
        done = active & ((granted >= demand * (1.0 - EPS)) | crosses[:, full].any(axis=1))
        if not done.any():  # cannot happen: the step stops at the first flow or link to fill
            raise RuntimeError("progressive filling made no progress")
        active &= ~done
    return np.minimum(1.0, granted / demand)
