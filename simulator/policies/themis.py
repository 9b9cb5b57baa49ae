"""Themis (Mahajan et al., NSDI'20): finish-time fairness with leases (`themis`).

rho = shared finish time / ideal finish time, where the ideal is the job's run time on a 1/N share of
the cluster (N active jobs) and the shared time is the time since submission plus the remaining run
time. Every `lease` seconds (a `next_wakeup`), the jobs are ranked by rho, worst first, and the
devices go to the worst `fairness_knob` share of them, then to the rest. A queued lease winner starts
in the round, preempting running jobs that lost their lease (best rho first, on a pool where that makes
room for it; none if nothing would); losers whose devices no winner needs run on, and a job that has
not yet run long enough to keep work (its restore, plus a checkpoint interval when preemptions lose
work: preemption.RunGuard) keeps its lease. Between rounds, devices freed by completions go to queued
jobs in the last ranking (new arrivals by their rho at arrival). With `elastic`, a job that does not fit at its request
starts on as many devices as fit, down to its `min_gpus`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.job import RUNNING
from simulator.policies.base import Policy
from simulator.policies.elastic import largest_fitting
from simulator.policies.preemption import RunGuard, victims_for
from simulator.policies.registry import register_policy
from simulator.policies.sorted_queue import SortedQueue
from simulator.units import parse_duration


class ThemisOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lease: float = Field(default=1200.0, gt=0, description="seconds between lease rounds")
    fairness_knob: float = Field(default=0.8, gt=0, le=1, description="share of jobs bidding first")
    elastic: bool = False
    scan_depth: int = Field(default=100, ge=1, description="queued jobs examined between rounds")

    _l = field_validator("lease", mode="before")(parse_duration)


@register_policy("themis")
class Themis(Policy):
    Options = ThemisOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.ranked = SortedQueue()  # queued jobs by -rho at the last ranking
        self.running: dict[int, object] = {}
        self.next_round = None
        self.guard = RunGuard(context)
        self._launched: set[int] = set()  # started by this pass's round (still ranked until applied)

    def rho(self, job, now: float, active: int) -> float:
        share = self.view.cluster.installed_capacity() / max(active, 1)
        ideal = job.duration * max(1.0, job.gpus / share)
        shared = (now - job.submit) + job.remaining_at(now)
        return shared / ideal if ideal > 0 else 1.0

    def on_suspend(self, job, now):
        self.running.pop(job.index, None)

    def on_queued(self, job, now):
        super().on_queued(job, now)
        # Group 1: not holding a lease from the last round; ordered by rho, worst first.
        self.ranked.add(job, (1, -self.rho(job, now, len(self.queue) + len(self.running)), job.submit))

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.ranked.remove(job)
        self.running[job.index] = job

    def on_complete(self, job, now):
        self.running.pop(job.index, None)

    def rotation_s(self):
        return self.options.lease

    def next_wakeup(self, now):
        if not self.queue:
            self.next_round = None  # nobody waits for a lease; the next arrival restarts the rounds
            return None
        if self.next_round is None:
            self.next_round = now + self.options.lease
        return self.next_round

    def place(self, now):
        self._launched = set()
        if self.next_round is not None and now >= self.next_round - 1e-9:
            self._lease_round(now)
            self.next_round = now + self.options.lease
        self._fill(now)
        return self.view.take_decision()

    def _launch(self, job) -> bool:
        view = self.view
        launched = view.allocate(job) is not None
        if not launched and self.options.elastic and job.min_gpus < job.gpus:
            size = largest_fitting(view, job, job.gpus)
            launched = size is not None and view.allocate(job, size) is not None
        if launched:
            self._launched.add(job.index)
        return launched

    def _fill(self, now) -> None:
        cluster = self.view.cluster
        launched = self._launched
        for depth, job in enumerate(self.ranked):
            if depth >= self.options.scan_depth or cluster.free == 0:
                break
            if job.index not in launched:
                self._launch(job)

    def _lease_round(self, now) -> None:
        """Re-rank every active job; winners keep or get devices, taken from running losers where that
        makes room for them."""
        active = list(self.running.values()) + list(self.queue.values())
        n = len(active)
        rho = {j.index: self.rho(j, now, n) for j in active}
        scored = sorted(active, key=lambda j: (-rho[j.index], j.submit, j.index))
        bidders = max(1, int(round(self.options.fairness_knob * n)))
        left = self.view.cluster.installed_capacity()
        winners = set()
        for job in self.running.values():  # too early to move without losing its run: keeps its lease
            if not self.guard.movable(job, now):
                winners.add(job.index)
                left -= job.size
        for job in scored[:bidders] + scored[bidders:]:
            if job.index in winners:
                continue
            need = job.size if job.state == RUNNING else self._least(job)
            if need <= left:
                winners.add(job.index)
                left -= need
        self.ranked = SortedQueue()
        for job in scored:
            if job.state != RUNNING:
                # Lease winners first (group 0), so _fill hands them the devices; each group by rho.
                self.ranked.add(job, (0 if job.index in winners else 1, -rho[job.index], job.submit))
        losers = [job for job in reversed(scored) if job.state == RUNNING and job.index not in winners]
        gone: set[int] = set()
        for job in scored:
            if job.state == RUNNING or job.index not in winners or self._launch(job):
                continue
            victims = victims_for(job, self.view, (other for other in losers if other.index not in gone),
                                  devices=self._least(job))
            if victims:
                for victim in victims:
                    gone.add(victim.index)
                    self.view.suspend(victim)
                    del self.running[victim.index]
                self._launch(job)

    def _least(self, job) -> int:
        """The fewest devices `job` starts on."""
        return int(job.min_gpus) if self.options.elastic else job.gpus
