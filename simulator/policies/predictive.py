"""Shared machinery for policies that plan with predicted durations (sjf, srtf, backfilling, edf).

It keeps a predictor (see estimates.py) and the predicted end of every running job, which is what
reservations and shortest-remaining-time preemption need.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from simulator.policies.base import Policy
from simulator.policies.estimates import DurationPredictor, EstimateOptions


class PredictiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    estimates: EstimateOptions = EstimateOptions()


class BackfillOptions(PredictiveOptions):
    backfill_depth: int = Field(default=100, ge=1, description="queued jobs examined per pass")


class PredictivePolicy(Policy):
    Options = PredictiveOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.predictor = DurationPredictor(options.estimates, context.rng)
        self.ends: dict[int, tuple[float, int]] = {}  # running job index -> (predicted end, devices)
        self._devices: dict[int, int] = {}  # devices given in this pass, read back in on_launch

    # -- predictions ----------------------------------------------------------------------------------
    def predicted_run(self, job, devices: int | None = None) -> float:
        """Predicted seconds still to run on `devices` (default: its request), linear scaling."""
        left = self.predictor.remaining(job)
        return left if devices is None or devices == job.gpus else left * job.gpus / devices

    def predicted_end(self, job, now: float) -> float:
        end = self.ends.get(job.index)
        return now if end is None else max(now, end[0])

    def running_ends(self) -> list[tuple[float, int]]:
        return list(self.ends.values())

    # -- launching through the view, remembering the size ---------------------------------------------
    def allocate(self, job, devices: int | None = None):
        alloc = self.view.allocate(job, devices)
        if alloc is not None:
            self._devices[job.index] = alloc.devices
        return alloc

    # -- engine notifications -------------------------------------------------------------------------
    def on_suspend(self, job, now):
        self.ends.pop(job.index, None)

    def on_queued(self, job, now):
        super().on_queued(job, now)
        self.enqueue(job, now)

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.dequeue(job)
        devices = self._devices.pop(job.index, job.gpus)
        restore = self.context.restore_s if job.preemptions else 0.0
        self.ends[job.index] = (now + restore + self.predicted_run(job, devices), devices)

    def on_complete(self, job, now):
        self.ends.pop(job.index, None)
        self.predictor.observe(job)

    # -- the ordered queue, kept by subclasses --------------------------------------------------------
    def enqueue(self, job, now) -> None:
        """A job entered the queue (arrival or preemption): index it."""

    def dequeue(self, job) -> None:
        """A job left the queue: drop it from the index."""
