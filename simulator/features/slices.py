"""TPU slice fragmentation over time: on torus pools (`topology: torus`, cluster/torus.py), the free chips
that the first queued job able to use the pool could not take, because no free block of its slice shape
covers them (`Torus.fragmentation`, the measure of cluster/sharing.py's `fragmented_gpus` applied to
slices: all free chips count when the job cannot be placed at all). A job that names its slice shape
(`slice_shape`) is measured with that shape. With nothing waiting for the pool it
is 0: idle chips nobody asks for are not fragmented.

Timeline column `fragmented_chips` (summed over torus pools); summary keys `fragmented_chip_hours` (its
integral) and `fragmented_chips_mean` (its time average over the timeline). The state is sampled lazily:
the first change at a new instant (a slice placed or freed, chips blocked or unblocked, a job queued)
records the state the previous instant left, so there is no sampling per tick and none per job.
"""

from __future__ import annotations

import numpy as np

from simulator.cluster.torus import TorusPool
from simulator.engine.features import Meter, Source


class SliceFragmentation(Source, Meter):
    def __init__(self, pools: list[TorusPool]):
        self.pools = pools
        self.sim = None
        self._t = None  # the last instant at which something changed
        self._value = 0
        self.times: list[float] = []
        self.deltas: list[int] = []

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for pool in self.pools:
            pool.watcher = self._touch

    def _touch(self, queued=None) -> None:
        """Something is about to change at `now`: if time moved on, record what the last instant left
        (`queued`: a job already in the queue that was not there then)."""
        now = self.sim.env._now
        if now != self._t:
            if self._t is not None:
                self._record(self._t, queued)
            self._t = now

    def _record(self, t: float, skip=None) -> None:
        value = self.fragmented(skip)
        if value != self._value:
            self.times.append(t)
            self.deltas.append(value - self._value)
            self._value = value

    def fragmented(self, skip=None) -> int:
        """Free chips on the torus pools that the first queued job able to use each pool cannot take."""
        total = 0
        queue = self.sim.policy.queue.values()
        for pool in self.pools:
            for job in queue:
                if job is skip or job.device not in (None, pool.device):
                    continue
                shape = pool.job_shape(job)  # the one it names (`slice_shape`), else its size's standard one
                if shape is not None:
                    total += pool.torus.fragmentation(shape)
                    break
        return total

    def on_queued(self, job, now: float) -> None:
        self._touch(job)

    def on_release(self, job, alloc, now: float) -> None:
        self._touch()  # another pool's devices freed: the torus pools' state is unchanged by it

    def timeline(self, builder, outcome) -> None:
        if self._t is not None:
            self._record(self._t)  # what the last instant left
        builder.column("fragmented_chips", np.int64)
        builder.changes(np.array(self.times, dtype=float), fragmented_chips=np.array(self.deltas, dtype=np.int64))

    def finish(self, outcome) -> None:
        timeline = outcome.timeline
        time = timeline["time_s"].to_numpy(dtype=float)
        chips = timeline["fragmented_chips"].to_numpy(dtype=float)
        area = float((chips[:-1] * np.diff(time)).sum()) if len(time) > 1 else 0.0
        span = float(time[-1] - time[0]) if len(time) > 1 else 0.0
        outcome.summary["fragmented_chip_hours"] = area / 3600.0
        outcome.summary["fragmented_chips_mean"] = area / span if span > 0 else 0.0


def build(setup) -> list:
    pools = [p for p in setup.cluster.pools if isinstance(p, TorusPool)]
    return [SliceFragmentation(pools)] if pools else []
