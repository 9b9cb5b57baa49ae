"""Elastic jobs (`min_gpus` <= gpus <= `max_gpus`): choosing a size that fits now, and `elastic-fifo`.

The engine scales run time linearly with the devices given (duration_runtime in job.py), so a job started on
half its request runs twice as long; a policy chooses the size once, at launch.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from simulator.policies.base import Policy
from simulator.policies.registry import register_policy

_MAX_TRIES = 64  # sizes tried per job, so a pass stays cheap on big pools


def largest_fitting(view, job, upto: int | None = None) -> int | None:
    """The largest size in [min_gpus, upto (default max_gpus)] that fits now, or None."""
    low = int(job.min_gpus or job.gpus)  # trace columns may arrive as floats
    size = int(min(upto or job.max_gpus or job.gpus, view.cluster.free))
    for _ in range(_MAX_TRIES):
        if size < low:
            return None
        if view.fits(job, size):
            return size
        size -= 1
    return None


class ElasticFifoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    grow: bool = True  # give the head up to max_gpus when devices are free, not just its request


@register_policy("elastic-fifo")
class ElasticFifo(Policy):
    """FIFO with head-of-line blocking where the head starts on as many devices as fit, between its
    `min_gpus` and its request (or `max_gpus` with `grow`); it waits only if even `min_gpus` do not fit."""

    Options = ElasticFifoOptions
    blocking = True
    in_order = True

    def place(self, now):
        view, blocking = self.view, self.blocking
        for job in self.queue.values():
            size = largest_fitting(view, job, None if self.options.grow else job.gpus)
            if (size is None or view.allocate(job, size) is None) and blocking:
                break
        return view.take_decision()
