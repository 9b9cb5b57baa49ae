"""A pool whose GPUs jobs may share: a job asking for a fraction of one GPU (`gpu_milli` thousandths,
from the job table's `gpu_fraction`) takes that share of a GPU on a node, several jobs per GPU, placed
by one of cluster/sharing.py's policies (best-fit, spread, pack, fgd) — the same choice the standalone
`capsim gpu-sharing` replay makes. A whole-GPU job that fits in one node is placed by the same policy
on wholly free GPUs; a larger one takes whole free nodes as on any pool (`Pool.allocate`).

The `Pool` index is kept for wholly free GPUs (what whole-GPU and multi-node jobs need, and what
failures and maintenance see); `free` counts the GPUs with any capacity left, so a pass does not stop
looking while a share could still fit. CPU and memory are not modelled here: a node never runs short
of them, so only GPU capacity decides (as in sharing.py with ample CPU and memory).
"""

from __future__ import annotations

import numpy as np

from simulator.cluster.pool import Allocation, fits_counts
from simulator.cluster.sharing import FULL, SharedCluster, TaskClass
from simulator.cluster.synced import NodeSyncedPool


def task_of(devices: int, gpu_milli: int) -> TaskClass:
    """A job's request as a sharing.py task (no CPU or memory)."""
    if devices == 1 and 0 < gpu_milli < FULL:
        return TaskClass(0, 0, 0, int(gpu_milli))
    return TaskClass(0, 0, int(devices), 0)


class SharedPool(NodeSyncedPool):
    __slots__ = ("sharing", "policy", "workload", "watcher", "_held")

    def __init__(self, name: str, device: str, nodes: int, per_node: int, policy: str, index: int = 0,
                 installed: bool = True, burst_after: float | None = None, leaf_size: int = 0,
                 domain_size: int = 0):
        super().__init__(name, device, nodes, per_node, index, installed, burst_after, leaf_size, domain_size)
        self.policy = policy
        # CPU and memory of 1 on every node, asked for by no job: they never decide a placement
        self.sharing = SharedCluster(np.ones(nodes), np.ones(nodes), np.full(nodes, per_node))
        if not installed:
            self.sharing.gpu_free[:] = 0
        self.workload = None  # FGD's target workload [(TaskClass, popularity)], from the run's job table
        self.watcher = None  # called with no argument just before the GPUs' state changes (a meter's hook)
        self._held: dict[int, tuple[TaskClass, list[tuple[int, list[int]]]]] = {}  # id(alloc) -> placement

    def _open_on(self, node: int) -> int:
        return int((self.sharing.gpu_free[node] > 0).sum())

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        t = task_of(devices, gpu_milli)
        if devices > self.per_node:
            return super().fits(devices)
        if self.guard is not None and not self.guard.admits(self, self._opened(t), 0):
            return False
        s = self.sharing
        return bool(s._fits(t, s.gpu_free, s.cpu, s.mem).any())

    def _opened(self, t: TaskClass) -> int:
        """Devices a placement of `t` would start drawing on, for a guard: a share may open an idle GPU."""
        return t.num_gpu or 1

    def allocate(self, devices: int, spread: bool = False, gpu_milli: int = 0) -> Allocation | None:
        """By the pool's sharing policy (`spread` does not apply: the policy decides) within one node;
        a job larger than a node takes whole free nodes (`Pool.allocate`)."""
        t = task_of(devices, gpu_milli)
        s = self.sharing
        if devices > self.per_node:
            alloc = super().allocate(devices)
            if alloc is None:
                return None
            if self.watcher is not None:
                self.watcher()
            placed = []
            for node, count in alloc.nodes:
                gpus = [int(g) for g in np.flatnonzero(s.gpu_free[node] == FULL)[:count]]
                s.gpu_free[node, gpus] = 0
                placed.append((node, gpus))
            self._held[id(alloc)] = (t, placed)  # the job holds `alloc` until release: its id stays unique
            return alloc
        if self.guard is not None and not self.guard.admits(self, self._opened(t), 0):
            return None
        found = s.choose(t, self.policy, self.workload)
        if found is None:
            return None
        if self.watcher is not None:
            self.watcher()
        node, gpus = found
        was_open, was_whole = self._open_on(node), self._free_on[node]
        s.take(t, node, gpus)
        self._moved(node, was_open, was_whole)
        if t.gpu_milli:
            alloc = Allocation(self, [(node, 1)], 1, t.gpu_milli)
            # the guard counts a GPU as drawing while any share is on it
            if self.guard is not None and was_whole != self._free_on[node]:
                self.guard.taken(self, 1)
        else:
            alloc = Allocation(self, [(node, devices)], devices)
            if self.guard is not None:
                self.guard.taken(self, devices)
        self._held[id(alloc)] = (t, [(node, gpus)])
        return alloc

    def _moved(self, node: int, was_open: int, was_whole: int) -> None:
        """Refile `node` after its GPUs changed: its wholly free GPUs in the index, its open ones in `free`."""
        whole = int((self.sharing.gpu_free[node] == FULL).sum())
        if whole != was_whole:
            self._move(node, whole)
        self.free += self._open_on(node) - was_open

    def release(self, alloc: Allocation) -> None:
        if self.watcher is not None:
            self.watcher()
        t, placed = self._held.pop(id(alloc))
        if len(placed) > 1 or t.num_gpu > self.per_node:
            for node, gpus in placed:
                self.sharing.gpu_free[node, gpus] = FULL
            super().release(alloc)
            return
        node, gpus = placed[0]
        was_open, was_whole = self._open_on(node), self._free_on[node]
        self.sharing.give_back(t, node, gpus)
        self._moved(node, was_open, was_whole)
        if self.guard is not None:
            given = self._free_on[node] - was_whole
            if given:
                self.guard.given_back(self, given)

    def _sync(self, node: int) -> None:
        """A node's GPUs are blocked while it is down or the pool is out of service (its jobs were
        released first)."""
        if self.watcher is not None:
            self.watcher()
        self.sharing.gpu_free[node] = 0 if not self.installed or self._holds[node] > 0 else FULL

    def room(self) -> SharedRoom:
        return SharedRoom(self)

    def placement(self, alloc: Allocation) -> list[tuple[int, list[int]]]:
        """(node, GPU indices) an allocation of this pool holds."""
        return self._held[id(alloc)][1]

    def allocated_milli(self) -> np.ndarray:
        """Thousandths allocated on every GPU (nodes x GPUs; a blocked GPU counts as allocated)."""
        return FULL - self.sharing.gpu_free

    def unusable_milli(self, tasks) -> np.ndarray:
        """Free GPU capacity (thousandths, nodes x GPUs) that none of `tasks` (the waiting jobs' requests)
        could use now: the free share of a GPU too small for every fractional request, and wholly free
        GPUs on nodes with too few of them for every whole-GPU request (all free GPU when no task fits)."""
        free = self.sharing.gpu_free
        usable = np.zeros(free.shape, dtype=bool)
        whole = free == FULL
        per_node_whole = whole.sum(axis=1)
        for t in tasks:
            if t.gpu_milli:
                usable |= free >= t.gpu_milli
            elif t.num_gpu <= self.per_node:
                usable |= whole & (per_node_whole >= t.num_gpu)[:, None]
            elif super().fits(t.num_gpu):
                usable |= whole & (per_node_whole == self.per_node)[:, None]
        return np.where(usable, 0, np.clip(free, 0, None))


class SharedRoom:
    """`SharedPool.room`: the GPUs after releasing some allocations, on a copy (the pool is not changed),
    so a preempting policy suspends jobs only when that makes the waiting job's request fit."""

    __slots__ = ("pool", "gpu_free", "freed")

    def __init__(self, pool: SharedPool):
        self.pool = pool
        self.gpu_free = pool.sharing.gpu_free.copy()
        self.freed = 0  # devices released so far (what a placement guard counts as given back)

    def release(self, alloc: Allocation) -> None:
        t, placed = self.pool._held[id(alloc)]
        for node, gpus in placed:
            self.gpu_free[node, gpus] += t.gpu_milli if t.gpu_milli else FULL
        self.freed += alloc.devices

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        pool = self.pool
        if pool.guard is not None and not pool.guard.admits(pool, devices, self.freed):
            return False
        if devices > pool.per_node:
            whole = (self.gpu_free == FULL).sum(axis=1)
            return fits_counts(np.bincount(whole, minlength=pool.per_node + 1).tolist(), pool.per_node, devices)
        s = pool.sharing
        return bool(s._fits(task_of(devices, gpu_milli), self.gpu_free, s.cpu, s.mem).any())


def share_milli(gpus: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """The job table's `gpu_fraction` as thousandths of one GPU: for a one-GPU job asking for a fraction
    in (0, 1), rounded to a thousandth (at least one, at most 999); 0 (whole GPUs) otherwise."""
    fraction = np.asarray(fraction, dtype=float)
    with np.errstate(invalid="ignore"):
        shared = (np.asarray(gpus) == 1) & (fraction > 0) & (fraction < 1)
    milli = np.clip(np.rint(np.where(shared, fraction, 0.0) * FULL), 1, FULL - 1).astype(np.int64)
    return np.where(shared, milli, 0)


def set_target_workload(pools: list, gpus: np.ndarray, milli: np.ndarray) -> None:
    """FGD's target workload on each sharing pool: the run's requests that fit one of its nodes, by
    popularity (sharing.py's `target_workload`, as the standalone replay takes it from the pod list)."""
    from simulator.cluster.sharing import target_workload

    for pool in pools:
        if isinstance(pool, SharedPool) and pool.policy == "fgd":
            keep = np.asarray(gpus) <= pool.per_node
            tasks = [task_of(int(g), int(m)) for g, m in zip(np.asarray(gpus)[keep], np.asarray(milli)[keep],
                                                             strict=True)]
            pool.workload = target_workload(tasks) if tasks else []
