"""Per-team quotas with borrowing (`quota`), after Philly/Helios virtual clusters.

Each group (the job's `vc`, or its `user` with `by: user`) owns a quota of devices. A job whose group
stays within its quota runs as *guaranteed*; with `borrow: true` a job beyond the quota may run on idle
devices as *borrowed*. When a guaranteed job cannot fit, borrowed jobs of other groups are preempted
(most recently started first, on a pool where that makes room for it, and none if nothing would) to give
the owner its quota back. Within the queue, higher `priority` first, then arrival order. A finished
guaranteed job lets its group's borrowed jobs become guaranteed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.policies.base import Policy
from simulator.policies.preemption import victims_for
from simulator.policies.registry import register_policy
from simulator.policies.sorted_queue import SortedQueue


class QuotaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    by: Literal["vc", "user"] = "vc"
    quotas: dict[str, int] = Field(default_factory=dict, description="devices owned per group")
    default_quota: int = Field(default=0, ge=0, description="quota of a group not listed")
    borrow: bool = True
    scan_depth: int = Field(default=100, ge=1, description="queued jobs examined per pass")


@register_policy("quota")
class Quota(Policy):
    Options = QuotaOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.waiting = SortedQueue()
        self.guaranteed: dict[object, int] = defaultdict(int)  # devices held within quota, per group
        self.borrowed = SortedQueue()  # running borrowed jobs by start time (latest last)
        self.within: set[int] = set()  # running jobs counted in their group's guaranteed devices
        self.group_of: dict[int, object] = {}
        self._borrowing: dict[int, bool] = {}  # decided in place, applied in on_launch

    def group(self, job):
        return job.vc if self.options.by == "vc" else job.user

    def quota_of(self, group) -> int:
        return self.options.quotas.get(str(group), self.options.default_quota)

    def on_suspend(self, job, now):
        group = self.group_of.pop(job.index)
        if job.index in self.within:  # a guaranteed job stopped by a node failure or a retirement
            self.within.remove(job.index)
            self.guaranteed[group] -= job.gpus  # it asks for its quota again from the queue
        else:
            self.borrowed.remove(job)  # (a job this policy reclaimed devices from is out already)

    def on_queued(self, job, now):
        super().on_queued(job, now)
        self.waiting.add(job, (-job.priority, job.submit))

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.waiting.remove(job)
        group = self.group(job)
        self.group_of[job.index] = group
        if self._borrowing.pop(job.index, False):  # absent: launched by Policy.place (contract_of)
            self.borrowed.add(job, (now,))
        else:
            self.guaranteed[group] += job.gpus
            self.within.add(job.index)

    def on_complete(self, job, now):
        group = self.group_of.pop(job.index)
        if job.index in self.borrowed:
            self.borrowed.remove(job)
            return
        self.within.discard(job.index)
        self.guaranteed[group] -= job.gpus
        # Quota freed: the group's borrowed jobs that now fit in it stop being preemptible.
        for other in self.borrowed:
            if self.group_of[other.index] == group and self.guaranteed[group] + other.gpus <= self.quota_of(group):
                self.borrowed.remove(other)
                self.guaranteed[group] += other.gpus
                self.within.add(other.index)

    def place(self, now):
        view = self.view
        pending: dict[object, int] = defaultdict(int)  # guaranteed devices granted in this pass
        for depth, job in enumerate(self.waiting):
            if depth >= self.options.scan_depth or (view.cluster.free == 0 and not len(self.borrowed)):
                break
            group = self.group(job)
            within = self.guaranteed[group] + pending[group] + job.gpus <= self.quota_of(group)
            if within and (view.fits(job) or self._reclaim(job, group)):
                if view.allocate(job) is not None:
                    self._borrowing[job.index] = False
                    pending[group] += job.gpus
            elif not within and self.options.borrow and view.allocate(job) is not None:
                self._borrowing[job.index] = True
        return view.take_decision()

    def _reclaim(self, job, group) -> bool:
        """Preempt other groups' borrowed jobs, latest started first, so that `job` can start: on a pool
        where that makes room for it, and none if no choice would (preemption.victims_for)."""
        group_of = self.group_of
        victims = victims_for(job, self.view, (other for other in self.borrowed.reversed()
                                               if group_of[other.index] != group))
        if not victims:
            return victims is not None
        for victim in victims:
            self.borrowed.remove(victim)
            self.view.suspend(victim)
        return True
