"""Node failures (models/failures.py): failures strike as one Poisson process over the devices in
service; each interrupts the jobs on its node and takes the node down until its repair."""

from __future__ import annotations

import numpy as np

from simulator.engine.features import Meter, Source
from simulator.models.failures import FailureProcess

RNG_STREAM = 0  # this feature's random stream (features/__init__.py Setup.rng): fixed forever


class Failures(Source, Meter):
    def __init__(self, process: FailureProcess):
        self.process = process
        self.sim = None
        self._armed = False
        self._outages = None

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        self._arm(t0)

    def _arm(self, now: float) -> None:
        if not self._armed:
            self._armed = True
            self.sim.calendar.at(now + self.process.next_gap(), self._on_failure)

    def _on_failure(self, _event) -> None:
        sim, now = self.sim, self.sim.now
        self._armed = False
        if not sim.running and sim.arrivals_done:
            return  # nothing to interrupt and nothing left to arrive; a repair re-arms if work resumes
        hit = self.process.strike(now, sim.running, self._interrupt)
        if hit is not None:
            sim.calendar.at(now + self.process.repair_s, self._on_repair, hit)
            sim.capacity_changed(now)
        self._arm(now)

    def _interrupt(self, job) -> None:
        """Like a preemption: devices freed, the work since the last checkpoint lost."""
        job.failures += 1
        self.sim.evict(job, self.sim.now, graceful=False)

    def _on_repair(self, event) -> None:
        sim, now = self.sim, self.sim.now
        self.process.repair(*event.value)
        if sim.policy.queue:
            self._arm(now)
        sim.capacity_changed(now)

    def timeline(self, builder, outcome) -> None:
        retire_at = np.array([p.in_service_until for p in outcome.cluster.pools], dtype=float)
        outages = self._outages = self.process.outages(retire_at)
        builder.changes(outages[:, 0], down_gpus=outages[:, 2])  # a node goes down
        builder.changes(outages[:, 1], down_gpus=-outages[:, 2])  # and comes back

    def finish(self, outcome) -> None:
        outages = self._outages
        outcome.summary.update(
            failures=len(self.process.failures), failure_interruptions=int(outcome.jobs["failures"].sum()),
            down_gpu_hours=float(((outages[:, 1] - outages[:, 0]) * outages[:, 2]).sum() / 3600.0))


def build(setup) -> list:
    spec = setup.scenario.failures
    if spec is None:
        return []
    return [Failures(FailureProcess(setup.cluster, spec.device_mtbf, spec.repair, setup.rng(RNG_STREAM)))]
