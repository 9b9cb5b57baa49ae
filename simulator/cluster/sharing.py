"""GPU sharing: placing tasks that ask for a share of one GPU (or whole GPUs) on a list of nodes, and the
fragmentation that leaves, after Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads
with Fragmentation Gradient Descent" (USENIX ATC '23), whose Alibaba GPU 2023 trace asks for them.

A node has CPU (milli-cores), memory (MiB) and GPUs of 1000 milli each. A task asks for CPU, memory and
either `gpu_milli` < 1000 of one GPU (any GPU with that much free), or `num_gpu` whole GPUs (free ones),
or no GPU. Placement policies, each choosing a node and the GPUs on it:

- `best-fit`: the node left with the least free resources after the task (GPU, CPU and memory, each as a
  share of the node's), GPUs best fitted (the fullest that still fits) — Kubernetes-style packing;
- `spread`: the node left with the most free GPU (worst fit), on its emptiest GPUs;
- `pack`: GPU packing — a GPU already shared first (the fullest that fits), then a node already in use,
  then an idle node;
- `fgd`: fragmentation gradient descent — the placement that least increases the node's fragmentation.

Fragmentation (the paper's measure): for a target workload M of task classes m with popularities p_m,
a node's fragmented GPU is F_n(M) = sum_m p_m F_n(m), where F_n(m) is the free GPU (milli) on the node
that a task of class m could not use: all of it if the node cannot hold m at all (CPU, memory or GPU
short), else the free milli of the GPUs too small for m's share (a whole-GPU task cannot use a
partly taken GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POLICIES = ("best-fit", "spread", "pack", "fgd")
FULL = 1000  # milli per GPU


@dataclass(frozen=True)
class TaskClass:
    cpu_milli: int
    memory_mib: int
    num_gpu: int  # whole GPUs (0 with a fractional share, or a CPU-only task)
    gpu_milli: int  # the share of one GPU for a fractional task, else 0


def task_class(cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int) -> TaskClass:
    """The trace's columns as a task: one GPU with gpu_milli < 1000 is a share of it."""
    if num_gpu == 1 and 0 < gpu_milli < FULL:
        return TaskClass(int(cpu_milli), int(memory_mib), 0, int(gpu_milli))
    return TaskClass(int(cpu_milli), int(memory_mib), int(num_gpu), 0)


class SharedCluster:
    """Free CPU, memory and per-GPU milli of every node (`gpu_free[n, g]`, -1 for a GPU slot the node
    does not have)."""

    def __init__(self, cpu_milli, memory_mib, gpus):
        self.cpu_cap = np.asarray(cpu_milli, dtype=np.int64)
        self.mem_cap = np.asarray(memory_mib, dtype=np.int64)
        gpus = np.asarray(gpus, dtype=np.int64)
        width = max(1, int(gpus.max()) if len(gpus) else 1)
        self.gpu_cap = gpus
        self.cpu = self.cpu_cap.copy()
        self.mem = self.mem_cap.copy()
        self.gpu_free = np.where(np.arange(width)[None, :] < gpus[:, None], FULL, -1)

    @property
    def gpu_capacity_milli(self) -> int:
        return int(self.gpu_cap.sum()) * FULL

    @property
    def gpu_allocated_milli(self) -> int:
        return self.gpu_capacity_milli - int(np.clip(self.gpu_free, 0, None).sum())

    def _fits(self, t: TaskClass, gpu_free: np.ndarray, cpu, mem) -> np.ndarray:
        """Nodes (rows of gpu_free) that can hold the task."""
        ok = (cpu >= t.cpu_milli) & (mem >= t.memory_mib)
        if t.gpu_milli:
            ok &= (gpu_free >= t.gpu_milli).any(axis=1)
        elif t.num_gpu:
            ok &= (gpu_free == FULL).sum(axis=1) >= t.num_gpu
        return ok

    def fragmentation(self, workload: list[tuple[TaskClass, float]], gpu_free=None, cpu=None, mem=None) -> np.ndarray:
        """F_n(M) of every node (milli of GPU), for the target workload [(class, popularity)]."""
        gpu_free = self.gpu_free if gpu_free is None else gpu_free
        cpu = self.cpu if cpu is None else cpu
        mem = self.mem if mem is None else mem
        free = np.clip(gpu_free, 0, None)
        total = free.sum(axis=-1)
        out = np.zeros(total.shape)
        for t, p in workload:
            fits = self._fits(t, gpu_free, cpu, mem)
            if t.gpu_milli:
                unusable = np.where(gpu_free < t.gpu_milli, free, 0).sum(axis=-1)
            elif t.num_gpu:
                unusable = np.where(gpu_free < FULL, free, 0).sum(axis=-1)
            else:
                unusable = total  # a CPU-only task uses no GPU: all free GPU is idle to it
            out += p * np.where(fits, unusable, total)
        return out

    def place(self, t: TaskClass, policy: str, workload=None) -> int | None:
        """Place the task by `policy`; returns its node, or None when no node can hold it."""
        found = self.choose(t, policy, workload)
        if found is None:
            return None
        self.take(t, *found)
        return found[0]

    def choose(self, t: TaskClass, policy: str, workload=None) -> tuple[int, list[int]] | None:
        """The (node, GPUs) `policy` would give the task, changing nothing; None when no node can hold it."""
        nodes = np.flatnonzero(self._fits(t, self.gpu_free, self.cpu, self.mem))
        if len(nodes) == 0:
            return None
        if policy == "fgd":
            return self._fgd(t, nodes, workload)
        node = self._score_nodes(t, nodes, self.gpu_free[nodes], policy)
        return int(node), self._pick_gpus(t, self.gpu_free[node], "spread" if policy == "spread" else "fit")

    def take(self, t: TaskClass, node: int, gpus: list[int], sign: int = 1) -> None:
        """Hold the task's CPU, memory and GPUs on `node` (`sign` -1: give them back)."""
        self.cpu[node] -= sign * t.cpu_milli
        self.mem[node] -= sign * t.memory_mib
        for g in gpus:
            self.gpu_free[node, g] -= sign * (t.gpu_milli if t.gpu_milli else FULL)

    def give_back(self, t: TaskClass, node: int, gpus: list[int]) -> None:
        """The task placed on (node, gpus) has ended."""
        self.take(t, node, gpus, -1)

    def _pick_gpus(self, t: TaskClass, free: np.ndarray, how: str) -> list[int]:
        if t.gpu_milli:
            fits = np.flatnonzero(free >= t.gpu_milli)  # ties: the lowest GPU
            return [int(fits[np.argmax(free[fits]) if how == "spread" else np.argmin(free[fits])])]
        if t.num_gpu:
            return [int(g) for g in np.flatnonzero(free == FULL)[: t.num_gpu]]
        return []

    def _score_nodes(self, t: TaskClass, nodes, gpu, policy: str) -> int:
        asked = t.gpu_milli or t.num_gpu * FULL
        gpu_left = np.clip(gpu, 0, None).sum(axis=1) - asked
        if policy == "spread":
            return int(nodes[np.argmax(gpu_left)])  # ties: the lowest index
        if policy == "pack":
            # a shared GPU that fits first (the fullest), then a node in use, then an idle node
            partly = np.where((gpu > 0) & (gpu < FULL) & (gpu >= max(t.gpu_milli, 1)), gpu, FULL + 1).min(axis=1)
            in_use = (np.clip(gpu, 0, None).sum(axis=1) < self.gpu_cap[nodes] * FULL) | \
                     (self.cpu[nodes] < self.cpu_cap[nodes])
            key = np.where(t.gpu_milli > 0, partly, FULL + 1) * 4 + np.where(in_use, 0, 1) * 2
            best = np.lexsort((gpu_left, key))
            return int(nodes[best[0]])
        # best-fit: least left over, GPU, CPU and memory each as a share of the node's
        cap = np.maximum(self.gpu_cap[nodes] * FULL, 1)
        left = gpu_left / cap + (self.cpu[nodes] - t.cpu_milli) / self.cpu_cap[nodes] + \
            (self.mem[nodes] - t.memory_mib) / self.mem_cap[nodes]
        return int(nodes[np.argmin(left)])

    def _fgd(self, t: TaskClass, nodes, workload) -> tuple[int, list[int]]:
        """The (node, GPUs) whose placement increases that node's fragmentation the least (ties: the
        lowest node, then the fullest GPU)."""
        before = self.fragmentation(workload, self.gpu_free[nodes], self.cpu[nodes], self.mem[nodes])
        cpu = self.cpu[nodes] - t.cpu_milli
        mem = self.mem[nodes] - t.memory_mib
        if not t.gpu_milli:  # whole GPUs (or none): which free GPUs does not change the fragmentation
            after_free = self.gpu_free[nodes].copy()
            picks = [self._pick_gpus(t, row, "fit") for row in after_free]
            for i, gs in enumerate(picks):
                after_free[i, gs] = 0
            delta = self.fragmentation(workload, after_free, cpu, mem) - before
            i = int(np.argmin(delta))
            return int(nodes[i]), picks[i]
        width = self.gpu_free.shape[1]
        best = (np.inf, 0, 0)
        for g in range(width):
            cand = self.gpu_free[nodes, g] >= t.gpu_milli
            if not cand.any():
                continue
            after = self.gpu_free[nodes].copy()
            after[:, g] -= t.gpu_milli
            delta = self.fragmentation(workload, after, cpu, mem) - before
            delta = np.where(cand, delta, np.inf)
            i = int(np.argmin(delta))
            key = (float(delta[i]), int(nodes[i]), int(self.gpu_free[nodes[i], g]))
            if key < best:
                best = key
                chosen = (int(nodes[i]), [g])
        return chosen


def inflate(cluster: SharedCluster, tasks: list[TaskClass], policy: str, rng: np.random.Generator,
            until: float = 1.3, workload=None) -> dict:
    """Workload inflation (the paper's experiment): tasks drawn at random from `tasks` arrive one by one
    and are placed or turned away (never queued, never ended) until the GPU they asked for in all
    reaches `until` x the cluster's GPU capacity. Returns the curve (arrived and allocated GPU, as
    shares of capacity, after each GPU task) and the unallocated GPUs and fragmentation when the
    arrived GPU first reaches the capacity."""
    capacity = cluster.gpu_capacity_milli
    arrived = 0
    curve_arrived, curve_allocated = [], []
    at_full = None
    while arrived < until * capacity:
        t = tasks[int(rng.integers(len(tasks)))]
        asked = t.gpu_milli or t.num_gpu * FULL
        cluster.place(t, policy, workload)
        if not asked:
            continue
        arrived += asked
        curve_arrived.append(arrived / capacity)
        curve_allocated.append(cluster.gpu_allocated_milli / capacity)
        if at_full is None and arrived >= capacity:
            free = capacity - cluster.gpu_allocated_milli
            frag = float(cluster.fragmentation(workload).sum()) if workload else float("nan")
            at_full = {"unallocated_gpus": free / FULL, "fragmented_gpus": frag / FULL,
                       "allocation_rate": cluster.gpu_allocated_milli / capacity}
    return {"arrived": np.array(curve_arrived), "allocated": np.array(curve_allocated), "at_full": at_full,
            "final_allocation_rate": cluster.gpu_allocated_milli / capacity}


def target_workload(tasks: list[TaskClass]) -> list[tuple[TaskClass, float]]:
    """The tasks' classes by GPU demand, each with its tasks' median CPU and memory, and their
    popularity (share of the list): the target workload M of the fragmentation measure."""
    groups: dict[tuple[int, int], list[TaskClass]] = {}
    for t in tasks:
        groups.setdefault((t.num_gpu, t.gpu_milli), []).append(t)
    n = len(tasks)
    return [(TaskClass(int(np.median([t.cpu_milli for t in ts])), int(np.median([t.memory_mib for t in ts])),
                       num_gpu, milli), len(ts) / n)
            for (num_gpu, milli), ts in sorted(groups.items())]

