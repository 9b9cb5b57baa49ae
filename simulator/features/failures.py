"""Node failures (models/failures.py): failures strike as one Poisson process over the devices in
service; each interrupts the jobs on its node and takes the node down until its repair."""

from __future__ import annotations

import math
import warnings

import numpy as np

from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.models.failures import FailureProcess
from simulator.units import format_duration

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


# A run expected to draw more failures than this would not end in a useful time: refused up front.
MAX_EXPECTED_FAILURES = 10_000_000
# A job expected to need more attempts than this to run its restore and one checkpoint between two
# failures never finishes: refused up front; more than WARN_ATTEMPTS is warned.
MAX_ATTEMPTS, WARN_ATTEMPTS = 1e6, 20.0


def build(setup) -> list:
    spec = setup.scenario.failures
    if spec is None:
        return []
    _check_runs_can_end(setup, spec)
    return [Failures(FailureProcess(setup.cluster, spec.device_mtbf, spec.repair, setup.rng(RNG_STREAM)))]


def _check_runs_can_end(setup, spec) -> None:
    """Refuse failure settings under which the run would not end: more failures than a run can
    simulate, or a job that is interrupted, on average, before it can keep any work. A job of g devices
    is hit at least at rate g / device_mtbf; it keeps work only after a run of restore + checkpoint
    interval + cost, which it gets between two failures with probability exp(-rate x that)."""
    jobs, source = setup.jobs, setup.scenario.source
    if not len(jobs):
        return
    devices = setup.cluster.capacity
    span = float(jobs["submit_time"].iloc[-1] - jobs["submit_time"].iloc[0]) + float(jobs["duration"].max())
    expected = devices * span / spec.device_mtbf
    if expected > MAX_EXPECTED_FAILURES:
        raise CapsimError(
            f"{devices:,} devices with a device MTBF of {format_duration(spec.device_mtbf)} fail about "
            f"{expected:,.0f} times over the workload's span ({format_duration(span)}), more than the "
            f"{MAX_EXPECTED_FAILURES:,} a run can simulate in useful time: the MTBF is per device (hours to "
            "years; the default is Llama 3's 50,700 h)", source=source, where="failures.device_mtbf")
    preemption = setup.scenario.scheduler.preemption
    if preemption.checkpoint_interval is None:
        return  # without periodic checkpoints an interrupted job keeps its work (it checkpoints as it stops)
    needed = preemption.restore + preemption.checkpoint_interval + preemption.checkpoint_cost
    gpus = int(jobs["gpus"].max())
    attempts = math.exp(min(700.0, gpus / spec.device_mtbf * needed))
    message = (f"a {gpus}-device job is hit by a failure every {format_duration(spec.device_mtbf / gpus)} on "
               f"average, but keeps work only after running {format_duration(needed)} (restore + "
               f"checkpoint_interval + checkpoint_cost): it needs about {attempts:,.3g} attempts per checkpoint")
    if attempts > MAX_ATTEMPTS:
        raise CapsimError(message + "; it would never finish. Checkpoint more often or raise the MTBF.",
                          source=source, where="failures.device_mtbf")
    if attempts > WARN_ATTEMPTS:
        warnings.warn(f"{source}: {message}, so it will take very long", stacklevel=3)
