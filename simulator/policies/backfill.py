"""Backfilling on predicted durations: `easy-backfill` (only the head job holds a reservation) and
`conservative-backfill` (every queued job holds one). Queue order is arrival order, as in FIFO; the scan
is bounded by `backfill_depth` so a pass costs the same however long the queue grows.

Plans are kept between passes: devices only become free at a completion or a preemption, so only those
make a full replan; a pass for arrivals just fits the newcomers (at the end of the order) into the plan
of the last pass, which is what a full replan would do for them.
"""

from __future__ import annotations

import heapq

from simulator.policies.predictive import BackfillOptions, PredictivePolicy
from simulator.policies.profile import INF, FreeProfile
from simulator.policies.registry import register_policy
from simulator.policies.sorted_queue import SortedQueue


class _Backfill(PredictivePolicy):
    Options = BackfillOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.reservations: dict[int, float] = {}  # job index -> latest planned start (for inspection)
        self._dirty = True  # the kept plan is stale: replan everything at the next pass
        self._fresh: list = []  # arrivals since the last pass, to fit into the kept plan

    def profile(self, now) -> FreeProfile:
        return FreeProfile(now, self.view.cluster.free, self.running_ends())

    def is_last_in_order(self, job) -> bool:
        return True  # arrival order: a newcomer always goes last

    def on_suspend(self, job, now):
        super().on_suspend(job, now)
        self._dirty = True  # devices freed and a job back in the queue: the plan is stale

    def on_queued(self, job, now):
        super().on_queued(job, now)
        if not self.is_last_in_order(job):
            self._dirty = True
        elif not self._dirty:
            self._fresh.append(job)

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.reservations.pop(job.index, None)

    def on_complete(self, job, now):
        super().on_complete(job, now)
        self._dirty = True

    def on_capacity_change(self, now):
        self._dirty = True

    def place(self, now):
        if self._dirty:
            self._dirty = False
            self._fresh.clear()
            self.replan(now)
        elif self._fresh:
            fresh, self._fresh = self._fresh, []
            self.extend(now, fresh)
        return self.view.take_decision()

    def replan(self, now) -> None:
        raise NotImplementedError

    def extend(self, now, fresh) -> None:
        raise NotImplementedError


@register_policy("easy-backfill")
class EasyBackfill(_Backfill):
    """Start jobs in order while they fit. When the head does not fit, reserve for it the earliest
    time enough devices will be free (the shadow time); a later job may start now only if it ends
    before the shadow time or uses devices the head will not need then (the extra devices)."""

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self._head = None  # the blocked head of the last plan, with its shadow time and extra devices
        self._shadow = self._extra = 0
        self._scanned = 0
        # Running jobs by predicted end, kept as they start and stop: the shadow time is a walk from the
        # front, where a profile of all of them cost a sort at every replan.
        self._by_end = SortedQueue()

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self._by_end.add(job, self.ends[job.index])

    def on_suspend(self, job, now):
        super().on_suspend(job, now)
        self._by_end.remove(job)

    def on_complete(self, job, now):
        super().on_complete(job, now)
        self._by_end.remove(job)

    def shadow(self, now, devices: int) -> tuple[float, int]:
        """`self.profile(now).first_time_with(devices)`: the earliest time `devices` are free as the
        running jobs end (an overdue job counted as ending now), and how many are free then."""
        t, free = now, self.view.cluster.free
        for job in self._by_end.after(None):
            end, freed = self.ends[job.index]
            if end > t:  # every job ending by t is counted: t is a step of the profile
                if free >= devices:
                    return t, free
                t = end
            free += freed
        return (t, free) if free >= devices else (INF, 0)

    def replan(self, now) -> None:
        self._head = None
        queue = iter(self.queue.values())
        for job in queue:
            if self.allocate(job) is not None:
                continue
            self._head = job
            self._shadow, free_then = self.shadow(now, job.gpus)
            self._extra = free_then - job.gpus
            self._scanned = 0
            self.reservations[job.index] = self._shadow
            self._backfill(now, queue)
            return

    def extend(self, now, fresh) -> None:
        if self._head is None:
            self.replan(now)  # nobody was waiting: a newcomer is the head
        else:
            self._backfill(now, fresh)

    def _backfill(self, now, candidates) -> None:
        depth, cluster = self.options.backfill_depth, self.view.cluster
        free = cluster.free  # changes only with the launches below
        for later in candidates:
            if self._scanned >= depth or free == 0:
                return
            self._scanned += 1
            ends_in_time = now + self.predicted_run(later) <= self._shadow
            if not ends_in_time and later.gpus > self._extra:
                continue
            if self.allocate(later) is not None:
                free = cluster.free
                if not ends_in_time:
                    self._extra -= later.gpus


@register_policy("conservative-backfill")
class ConservativeBackfill(_Backfill):
    """Every queued job, in order, gets the earliest reservation that fits around the running jobs
    and the reservations before it; a job starts when its reservation comes. So no job is ever moved
    behind a reservation made for an earlier one.

    The plan is kept while it stays true: with a completion at its predicted end, the jobs reserved
    for that instant start and planning resumes after the last planned job. An early or late
    completion (wrong estimate) or a preemption makes a full replan, which compresses the schedule."""

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self.plan_order = SortedQueue()
        self._profile = None
        self._planned = 0  # queued jobs holding a reservation, bounded by backfill_depth
        self._last = None  # order key of the last planned job: planning resumes after it
        self._starts: list = []  # heap of (start, order key, job) of reservations not yet started

    def enqueue(self, job, now):
        self.plan_order.add(job, self.order_key(job))

    def dequeue(self, job):
        self.plan_order.remove(job)

    def order_key(self, job) -> tuple:
        return (job.submit,)  # arrival order (ties: trace order, by job index)

    def is_last_in_order(self, job) -> bool:
        # A newcomer ordered after every planned job only extends the plan; one ordered before the
        # last planned job (an earlier deadline, in edf) changes it.
        return self._last is None or self.plan_order.key(job) > self._last

    def on_launch(self, job, now):
        if job.index in self.reservations:
            self._planned -= 1
        super().on_launch(job, now)

    def on_complete(self, job, now):
        planned_end = self.ends.get(job.index, (None,))[0]
        was_dirty = self._dirty
        super().on_complete(job, now)  # marks the plan stale...
        if planned_end is not None and abs(planned_end - now) <= 1e-6 * max(1.0, now):
            self._dirty = was_dirty  # ...unless the job ended when the plan said it would

    def place(self, now):
        if self._dirty or self._profile is None:
            self._dirty = False
            self._profile = self.profile(now)
            self._planned, self._last, self._starts = 0, None, []
            self.reservations.clear()
        else:
            self._profile.advance(now)
            self._start_due(now)
        self._fresh.clear()
        self.plan(now, self.plan_order.after(self._last))
        return self.view.take_decision()

    def _start_due(self, now) -> None:
        """Launch the kept reservations whose time has come, in plan order."""
        starts, retry = self._starts, []
        while starts and starts[0][0] <= now:
            entry = heapq.heappop(starts)
            job = entry[2]
            if job.index in self.plan_order and self.allocate(job) is None:
                retry.append(entry)  # fragmentation: it keeps its devices in the plan and retries
        for entry in retry:
            heapq.heappush(starts, entry)

    def plan(self, now, jobs) -> None:
        """Reserve `jobs` in order into the kept profile, until the depth bound or no device is free."""
        profile, depth = self._profile, self.options.backfill_depth
        for job in jobs:
            if self._planned >= depth or profile.free_now() == 0:
                return  # nothing more can start now; planning resumes here at the next pass
            run = self.predicted_run(job)
            start = profile.earliest(job.gpus, run)
            key = self.plan_order.key(job)
            if start == now:
                if self.allocate(job) is None:
                    heapq.heappush(self._starts, (start, key, job))  # fragmented: retry each pass
            elif start != INF:
                heapq.heappush(self._starts, (start, key, job))
            self._planned += 1
            self._last = key
            self.reservations[job.index] = start
            profile.reserve(start, run, job.gpus)
