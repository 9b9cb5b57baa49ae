"""Shortest job first (`sjf`, non-preemptive, head-of-line blocking like fifo) and shortest remaining
time first (`srtf`, preemptive), both on predicted durations (see estimates.py)."""

from __future__ import annotations

from pydantic import Field

from simulator.policies.predictive import PredictiveOptions, PredictivePolicy
from simulator.policies.preemption import preempt_for
from simulator.policies.registry import register_policy
from simulator.policies.sorted_queue import SortedQueue


class _ByPredictedLength(PredictivePolicy):
    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.by_length = SortedQueue()

    def enqueue(self, job, now):
        # Ties (equal predictions) go in arrival order, as FIFO would.
        self.by_length.add(job, (self.predicted_run(job), job.submit))

    def dequeue(self, job):
        self.by_length.remove(job)

    def order(self, now):
        return iter(self.by_length)


@register_policy("sjf")
class ShortestJobFirst(_ByPredictedLength):
    blocking = True

    def place(self, now):
        blocking = self.blocking
        for job in self.by_length:
            if self.allocate(job) is None and blocking:
                break
        return self.view.take_decision()


class SrtfOptions(PredictiveOptions):
    scan_depth: int = Field(default=100, ge=1, description="queued jobs examined per pass")


@register_policy("srtf")
class ShortestRemainingTimeFirst(_ByPredictedLength):
    """A queued job preempts running jobs whose predicted remaining time is longer than its own by
    more than the restore cost (otherwise the swap loses time). Victims: longest remaining first, on a
    pool where suspending them makes room for the job (preemption.py), and none if nothing would."""

    Options = SrtfOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.by_end = SortedQueue()  # running jobs by predicted end = by remaining time

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.by_end.add(job, (self.ends[job.index][0],))

    def on_suspend(self, job, now):
        self.by_end.remove(job)
        super().on_suspend(job, now)

    def on_complete(self, job, now):
        self.by_end.remove(job)
        super().on_complete(job, now)

    def place(self, now):
        view, cluster = self.view, self.view.cluster
        margin = self.context.restore_s
        for depth, job in enumerate(self.by_length):
            if depth >= self.options.scan_depth:
                break
            if self.allocate(job) is not None:
                continue
            mine = self.predicted_run(job) + margin
            longest = self.by_end.last()
            if longest is None or self.predicted_end(longest, now) - now <= mine:
                if cluster.free == 0:
                    break  # nothing free and nobody to preempt: later (longer) jobs cannot start either
                continue
            if preempt_for(job, view, self.by_end, lambda r, mine=mine: self.predicted_end(r, now) - now > mine):
                self.allocate(job)
        return view.take_decision()
