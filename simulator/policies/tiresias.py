"""Tiresias (Gu et al., NSDI'19): two-dimensional least attained service, discretised.

A job's attained service is devices x time held. Jobs sit in priority queues split at `thresholds`
(device-seconds): everyone starts in queue 0 and is demoted as its service crosses a threshold (a
`next_wakeup` at the crossing time, so no polling). Within a queue jobs go first come first served;
a queued job preempts running jobs of strictly lower queues, latest started first, on a pool where that
makes room for it (preemption.py), and only jobs that have run long enough to keep work (`RunGuard`:
their restore, plus a checkpoint interval when preemptions lose work). With `promote_after`, a job
queued that long returns to queue 0 (Tiresias' starvation guard, simplified to a wait limit). `gittins`
(gittins.py) changes only the order within a queue.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.cluster.pool import Pool
from simulator.job import RUNNING
from simulator.policies.base import Policy
from simulator.policies.preemption import RunGuard, preempt_for
from simulator.policies.registry import register_policy
from simulator.policies.sorted_queue import SortedQueue
from simulator.units import parse_duration


class TiresiasOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    thresholds: list[float] = Field(default=[3600.0, 36000.0], description="device-seconds per queue")
    promote_after: float | None = Field(default=None, description="wait that sends a job back to queue 0")
    scan_depth: int = Field(default=100, ge=1, description="queued jobs examined per pass")

    _t = field_validator("thresholds", mode="before")(lambda v: sorted(parse_duration(x) for x in v))
    _p = field_validator("promote_after", mode="before")(lambda v: None if v is None else parse_duration(v))


@register_policy("tiresias")
class Tiresias(Policy):
    Options = TiresiasOptions
    remember_failures = True  # skip requests a smaller failed one rules out (place); off only in tests

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.thresholds = list(options.thresholds)
        self.level: dict[int, int] = {}
        # Service at the last promotion: a promoted job is ranked by what it received since then, so
        # it is not demoted again the moment it resumes.
        self.base: dict[int, float] = {}
        self.waiting = SortedQueue()  # by (level, order within level)
        self.running = SortedQueue()  # by (level, -start): victims come from the end
        # (time, index, the job's interruptions then, job): an entry is stale once the job was interrupted
        self._crossings: list[tuple[float, int, int, object]] = []
        self._promotions: list[tuple[float, int, int, object]] = []
        self._devices: dict[int, int] = {}
        self.guard = RunGuard(context)

    # -- priorities --------------------------------------------------------------------------------
    def level_for(self, service: float) -> int:
        return bisect_right(self.thresholds, service)

    def within_level(self, job) -> tuple:
        """Order inside one queue: first come first served."""
        return (job.submit,)

    # -- engine notifications ------------------------------------------------------------------------
    def on_suspend(self, job, now):
        self.running.remove(job)

    def on_queued(self, job, now):
        super().on_queued(job, now)
        level = self.level_for(job.attained - self.base.get(job.index, 0.0))
        self.level[job.index] = level
        self.waiting.add(job, (level, *self.within_level(job)))
        if self.options.promote_after is not None and level > 0:
            heapq.heappush(self._promotions, (now + self.options.promote_after, job.index, job.preemptions, job))

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.waiting.remove(job)
        level = self.level[job.index]
        self.running.add(job, (level, -now))
        self._schedule_crossing(job, level, job.attained, self._devices.pop(job.index, job.gpus), now)

    def on_complete(self, job, now):
        self.running.remove(job)
        self.level.pop(job.index, None)
        self.base.pop(job.index, None)

    def _schedule_crossing(self, job, level, attained, devices, now) -> None:
        if level < len(self.thresholds):
            at = now + (self.thresholds[level] - (attained - self.base.get(job.index, 0.0))) / devices
            heapq.heappush(self._crossings, (at, job.index, job.preemptions, job))

    def next_wakeup(self, now):
        times = [h[0][0] for h in (self._crossings, self._promotions) if h]
        if self.guard.wake < math.inf:
            times.append(self.guard.wake)  # a preemption the guard held back in the last pass
        return min(times) if times else None

    # -- the pass ----------------------------------------------------------------------------------
    def place(self, now):
        self._demote(now)
        self._promote(now)
        self.guard.wake = math.inf
        view, cluster = self.view, self.view.cluster
        # Requests no preemption could make room for since the last one that did (launches only take
        # room away): a later job asking the same finds none either. Burst pools make the answer
        # depend on how long each job has waited, so they are not remembered then.
        hopeless: set[tuple] | None = None if cluster.burst_waits else set()
        # The smallest request that failed to be placed, per constraint (device type, site, share),
        # since the last preemption: a job asking at least as much cannot be placed either, so it is
        # not tried (under a long queue most of a pass's attempts). Only where failure is monotone in
        # size (`size_monotone`); None elsewhere.
        failed: dict[tuple, int] | None = {} if self.remember_failures and size_monotone(cluster) else None
        free = None  # cluster.free, read when needed and forgotten when a launch or preemption changes it
        lowest = self._lowest_level()  # the level a job must be above to preempt; changes with a preemption
        for depth, job in enumerate(self.waiting):
            if depth >= self.options.scan_depth:
                break
            constraint = (job.device, job.site, job.gpu_milli)
            if failed is None or job.gpus < failed.get(constraint, job.gpus + 1):
                if self._allocate(job):
                    free = None
                    continue
                if failed is not None:
                    failed[constraint] = job.gpus
            level = self.level[job.index]
            if lowest <= level:
                if free is None:
                    free = cluster.free
                if free == 0:
                    break  # no free devices and no lower-priority job to preempt, for this or any later job
                continue
            request = (level, job.gpus, job.device)
            if hopeless is not None and request in hopeless:
                continue
            if preempt_for(job, view, self.running, lambda r, level=level: self.level[r.index] > level, self.guard):
                self._allocate(job)
                free, lowest = None, self._lowest_level()
                if failed:
                    failed.clear()  # the suspended jobs gave room back
                if hopeless:
                    hopeless.clear()
            elif hopeless is not None:
                hopeless.add(request)
        return view.take_decision()

    def _lowest_level(self) -> int:
        """The level of the lowest-priority running job (-1: none runs)."""
        lowest = self.running.last()
        return -1 if lowest is None else self.level[lowest.index]

    def _allocate(self, job) -> bool:
        alloc = self.view.allocate(job)
        if alloc is not None:
            self._devices[job.index] = alloc.devices
        return alloc is not None

    def _demote(self, now) -> None:
        heap = self._crossings
        while heap and heap[0][0] <= now + 1e-9:
            _, _, preemptions, job = heapq.heappop(heap)
            if job.state != RUNNING or job.preemptions != preemptions:
                continue  # preempted or finished since
            attained = job.attained_at(now)
            level = max(self.level[job.index], self.level_for(attained - self.base.get(job.index, 0.0) + 1e-6))
            self.level[job.index] = level
            self.running.remove(job)
            self.running.add(job, (level, -job.start))
            self._schedule_crossing(job, level, attained, job.alloc.devices, now)

    def _promote(self, now) -> None:
        heap = self._promotions
        while heap and heap[0][0] <= now:
            _, _, preemptions, job = heapq.heappop(heap)
            if job.index in self.waiting and job.preemptions == preemptions and self.level[job.index] > 0:
                self.level[job.index] = 0
                self.base[job.index] = job.attained
                self.waiting.remove(job)
                self.waiting.add(job, (0, *self.within_level(job)))


def size_monotone(cluster) -> bool:
    """Whether, on `cluster` now, a request that cannot be placed means no larger request with the same
    constraints (device type, site, share) can be, and stays so while placements only take devices.

    True for plain node pools (`Pool`): a request fails when the pool has too few free devices, too few
    free whole nodes for its whole-node part, or no node with room for its remainder, each of which
    only gets worse for a larger request; the placement rules (rack, domain, spread) choose among
    placements only once `fits` said one exists; a power cap (`PlacementGuard`) vetoes by the watts
    a request adds, more for a larger one. Not for torus pools (a slice's shape, not its size, decides),
    sharing pools (a share may fit where a whole GPU does not), or burst pools (the answer depends on
    each job's wait)."""
    return not cluster.burst_waits and all(type(pool) is Pool for pool in cluster.pools)
