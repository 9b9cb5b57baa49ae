"""GPU fragmentation over time on sharing pools (`sharing:`, cluster/shared_pool.py): the free GPU capacity
that no waiting job able to use the pool could use now (`SharedPool.fragmented_milli`): the free share of
a GPU smaller than every waiting share, and wholly free GPUs on nodes with too few of them for every
waiting whole-GPU job. It is sharing.py's `fragmented_gpus` measure with the queue as the target
workload. With nothing waiting for a pool it is 0: idle GPUs nobody asks for are not fragmented.

Timeline column `fragmented_gpus` (GPUs, summed over sharing pools) and, for why, `fragmented_shared_gpus`:
the part of it on GPUs partly taken by shares (the rest is whole GPUs stranded on nodes too full for a
waiting gang). Summary keys `fragmented_gpu_hours` (the integral), `fragmented_gpus_mean` (its time
average over the timeline) and `fragmented_shared_gpu_hours`; `offered_gpu_hours` counts a share as its
fraction; jobs.parquet gets `gpu_fraction` (the share a job asked for; empty for whole GPUs). The state is
sampled lazily, as slices.py does: the first change at a new instant records what the previous instant
left.
"""

from __future__ import annotations

import numpy as np

from simulator.cluster.shared_pool import SharedPool, task_of
from simulator.cluster.sharing import FULL
from simulator.engine.features import Meter, Source


class SharingFragmentation(Source, Meter):
    def __init__(self, pools: list[SharedPool], milli: np.ndarray):
        self.pools = pools
        self.milli = milli  # per job of the table: its share in thousandths, 0 for whole GPUs
        self.sim = None
        self._t = None  # the last instant at which something changed
        self._value = (0, 0)
        # waiting jobs by request (gpus, gpu_milli, device): a queue of thousands asks for a few sizes
        self.waiting: dict[tuple, int] = {}
        self.times: list[float] = []
        self.deltas: list[tuple[int, int]] = []

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for pool in self.pools:
            pool.watcher = self._touch

    def _touch(self) -> None:
        """Something is about to change at `now`: if time moved on, record what the last instant left."""
        now = self.sim.env._now
        if now != self._t:
            if self._t is not None:
                self._record(self._t)
            self._t = now

    def _record(self, t: float) -> None:
        value = self.fragmented()
        if value != self._value:
            self.times.append(t)
            self.deltas.append((value[0] - self._value[0], value[1] - self._value[1]))
            self._value = value

    def fragmented(self) -> tuple[int, int]:
        """(free thousandths of GPU no waiting job can use, the part on partly taken GPUs), all pools."""
        total = shared = 0
        for pool in self.pools:
            tasks = {task_of(g, m) for g, m, device in self.waiting if device in (None, pool.device)
                     and g <= pool.capacity}
            if not tasks:
                continue
            unusable = pool.unusable_milli(tasks)
            free = pool.sharing.gpu_free
            total += int(unusable.sum())
            shared += int(unusable[(free > 0) & (free < FULL)].sum())
        return total, shared

    def on_queued(self, job, now: float) -> None:
        self._touch()
        key = (job.gpus, job.gpu_milli, job.device)
        self.waiting[key] = self.waiting.get(key, 0) + 1

    def on_launch(self, job, alloc, work: float) -> bool:
        self._touch()
        key = (job.gpus, job.gpu_milli, job.device)
        left = self.waiting[key] - 1
        if left:
            self.waiting[key] = left
        else:
            del self.waiting[key]
        return False  # the run is not paced here

    def on_release(self, job, alloc, now: float) -> None:
        self._touch()  # another pool's devices freed: the sharing pools' state is unchanged by it

    def job_columns(self, outcome) -> None:
        milli = self.milli.astype(float)
        outcome.jobs["gpu_fraction"] = np.where(milli > 0, milli / FULL, np.nan)

    def timeline(self, builder, outcome) -> None:
        if self._t is not None:
            self._record(self._t)  # what the last instant left
        deltas = np.array(self.deltas, dtype=float).reshape(-1, 2) / FULL
        builder.column("fragmented_gpus", float)
        builder.column("fragmented_shared_gpus", float)
        builder.changes(np.array(self.times, dtype=float), fragmented_gpus=deltas[:, 0],
                        fragmented_shared_gpus=deltas[:, 1])

    def finish(self, outcome) -> None:
        timeline, summary = outcome.timeline, outcome.summary
        time = timeline["time_s"].to_numpy(dtype=float)
        span = float(time[-1] - time[0]) if len(time) > 1 else 0.0
        for column, key in (("fragmented_gpus", "fragmented_gpu_hours"),
                            ("fragmented_shared_gpus", "fragmented_shared_gpu_hours")):
            values = timeline[column].to_numpy(dtype=float)
            area = float((values[:-1] * np.diff(time)).sum()) if len(time) > 1 else 0.0
            summary[key] = area / 3600.0
            if column == "fragmented_gpus":
                summary["fragmented_gpus_mean"] = area / span if span > 0 else 0.0
        jobs = outcome.jobs
        asked = np.where(self.milli > 0, self.milli / FULL, jobs["gpus"].to_numpy(dtype=float))
        summary["offered_gpu_hours"] = float((asked * jobs["duration"].to_numpy(dtype=float)).sum() / 3600.0)


def build(setup) -> list:
    pools = [p for p in setup.cluster.pools if isinstance(p, SharedPool)]
    if not pools:
        return []
    milli = setup.jobs["gpu_milli"].to_numpy(dtype=np.int64)
    return [SharingFragmentation(pools, milli)]
