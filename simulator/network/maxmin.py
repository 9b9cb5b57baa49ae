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

# A link counts as full, and a flow as satisfied, within this relative slack (float rounding).
EPS = 1e-12


def max_min_shares(demand: list[float], loads: list[dict[int, float]], capacity: dict[int, float]) -> list[float]:
    """Each flow's granted fraction of its demand (0-1]: max-min fair in granted GB/s.

    demand[f] > 0; loads[f] maps a link to the GB/s flow f puts on it at full demand (links not in
    `capacity` are not shared and never limit it); capacity[link] > 0."""
    n = len(demand)
    granted = [0.0] * n
    active = set(range(n))
    # usage per unit of common grant increase, over the active flows, per link
    used = {link: 0.0 for link in capacity}
    while active:
        slope = {}
        for f in active:
            for link, load in loads[f].items():
                if link in capacity:
                    slope[link] = slope.get(link, 0.0) + load / demand[f]
        step = min(demand[f] - granted[f] for f in active)
        for link, s in slope.items():
            if s > 0:
                step = min(step, (capacity[link] - used[link]) / s)
        step = max(step, 0.0)
        for f in active:
            granted[f] += step
        for link, s in slope.items():
            used[link] += step * s
        full = {link for link in slope if used[link] >= capacity[link] * (1.0 - EPS)}
        done = {f for f in active
                if granted[f] >= demand[f] * (1.0 - EPS) or any(link in full for link in loads[f])}
        if not done:  # cannot happen: the step stops at the first flow or link to fill
            raise RuntimeError("progressive filling made no progress")
        active -= done
    return [min(1.0, granted[f] / demand[f]) for f in range(n)]
