"""Node failures: every device fails as a Poisson process of rate 1 / device_mtbf, so the cluster's
failures form one Poisson process and each lands on a node chosen in proportion to its devices.

A failure interrupts every job with devices on the node (they lose the work since their last checkpoint
and pay the restore cost when they start again, like a preemption), then takes the node out of the
free index until `repair` has passed. A failure that hits a node already down is a no-op: the node is
not running anything, and so is one that lands on a pool not yet installed: the process thins to
rate (devices in service) / device_mtbf, as a Poisson process thinned at random stays Poisson.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.cluster.pool import Cluster


class FailureProcess:
    def __init__(self, cluster: Cluster, device_mtbf_s: float, repair_s: float, rng: np.random.Generator):
        self.cluster = cluster
        self.repair_s = repair_s
        self.rng = rng
        self.rate = cluster.capacity / device_mtbf_s  # failures per second, whole cluster
        # Node k of the cluster, counted across pools; a node's chance is its share of the devices.
        self.nodes = [(pool, node) for pool in cluster.pools for node in range(pool.nodes)]
        weights = np.array([pool.per_node for pool, _ in self.nodes], dtype=float)
        self.weights = weights / weights.sum()
        self.failures: list[tuple[float, int, int]] = []  # (time, pool index, node) of every failure

    def next_gap(self) -> float:
        return float(self.rng.exponential(1.0 / self.rate))

    def strike(self, now: float, running: dict, interrupt: Callable) -> tuple | None:
        """A failure at `now`: interrupt the jobs on the chosen node and take it down. Returns the
        (pool, node) to repair later, or None when the node was already down."""
        pool, node = self.nodes[int(self.rng.choice(len(self.nodes), p=self.weights))]
        if pool.is_down(node) or not pool.installed:
            return None
        self.failures.append((now, pool.index, node))
        hit = [job for job in running.values()
               if job.alloc.pool is pool and any(n == node for n, _ in job.alloc.nodes)]
        for job in sorted(hit, key=lambda j: j.index):  # a fixed order keeps runs reproducible
            interrupt(job)
        pool.take_down(node)
        return pool, node

    def outages(self, retire_at: np.ndarray | None = None) -> np.ndarray:
        """(down, up, devices) of every failure, for the timeline; a node down when its pool retires
        is counted down until then, not until its repair."""
        per_node = {pool.index: pool.per_node for pool in self.cluster.pools}
        end = [np.inf] * len(per_node) if retire_at is None else retire_at.tolist()
        return np.array([(t, min(t + self.repair_s, end[p]), per_node[p]) for t, p, _ in self.failures],
                        dtype=float).reshape(-1, 3)

    def repair(self, pool, node: int) -> None:
        pool.bring_up(node)  # a pool retired meanwhile keeps the node out of service
