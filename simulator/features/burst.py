"""Cloud burst: a job may go to a rented pool once it has waited that pool's `burst_after` (the
placement rule is the cluster's); this feature asks for a pass at each such moment, and meters what
the rented pools carried."""

from __future__ import annotations

import numpy as np

from simulator.engine.features import Meter, Source
from simulator.job import QUEUED


class Burst(Source, Meter):
    def __init__(self, waits: list[float], rented: np.ndarray):
        self.waits = waits  # the distinct burst_after of the rented pools
        self.rented = rented  # per pool: rented on demand
        self.sim = None

    def start(self, sim, t0: float) -> None:
        self.sim = sim

    def on_queued(self, job, now: float) -> None:
        """A pass at each wait after which a burst pool would take the job, should it still wait."""
        for wait in self.waits:
            self.sim.calendar.at(job.queued_since + wait, self._on_due, job)

    def _on_due(self, event) -> None:
        if event.value.state == QUEUED:
            self.sim.request_pass(self.sim.now)

    def timeline(self, builder, outcome) -> None:
        _, _, devices, pools = builder.runs
        builder.column("burst_gpus", np.int64)
        builder.per_run("burst_gpus", np.where(self.rented[pools], devices, 0))

    def finish(self, outcome) -> None:
        used = outcome.recorder.device_seconds_by_pool(len(self.rented))
        names = [p.name for p, rented in zip(outcome.cluster.pools, self.rented, strict=True) if rented]
        outcome.summary.update(burst_gpu_hours=float(used[self.rented].sum()) / 3600.0,
                               burst_jobs=int(outcome.jobs["pool"].isin(names).sum()))


def build(setup) -> list:
    rented = np.array([p.burst_after is not None for p in setup.cluster.pools], dtype=bool)
    return [Burst(setup.cluster.burst_waits, rented)] if rented.any() else []
