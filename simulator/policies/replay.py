"""Replay: start every job at the start time its trace recorded.

A check of the adapters and the clock, not a scheduling policy: with room enough, the simulated
queueing delay of each job equals the delay the trace recorded, exactly. A job whose devices are
not free at its recorded time (the simulated cluster is smaller than the real one) starts as soon
as they are, in recorded-start order.
"""

from __future__ import annotations

import heapq

from simulator.policies.base import Decision, Policy
from simulator.policies.registry import register_policy


@register_policy("replay")
class Replay(Policy):
    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self._due: list[tuple[float, int]] = []  # (recorded start, job index)

    def admit(self, job, now):
        if job.recorded_start is None:
            return "replay needs a recorded start time (the trace column recorded_start_time)"
        return None

    def on_queued(self, job, now):
        super().on_queued(job, now)
        heapq.heappush(self._due, (job.recorded_start, job.index))

    def place(self, now: float) -> Decision:
        due = self._due
        while due and due[0][0] <= now:
            job = self.queue[due[0][1]]
            if self.view.allocate(job) is None:
                break  # wait for devices, keeping recorded order
            heapq.heappop(due)
        return self.view.decision

    def next_wakeup(self, now: float) -> float | None:
        return self._due[0][0] if self._due and self._due[0][0] > now else None
