"""Making room for a job by suspending running jobs: shared by every policy that preempts (srtf,
tiresias, gittins, quota, gavel, themis).

Two rules keep a preemption from being wasted, whatever the shape of the cluster:

* **Room where the job can go** (`victims_for`). Victims are chosen in one pool the job may be placed
  on (its device type, or the type a policy picked for it; a burst pool only once the job has waited
  its `burst_after`; never a draining pool), by that pool's nodes: only jobs on that pool, and only if
  releasing them lets the job be placed there. Jobs elsewhere, and jobs whose release the fit does not
  need, keep running; if no choice lets the job start, nobody is suspended. (Counting free devices over
  the whole cluster suspended jobs that freed nothing the job could use; on two pools where some jobs
  fit only one, Tiresias and Gittins suspended millions of times and never finished.)
* **A run long enough to keep work** (`RunGuard`, for the policies that re-rank running jobs as time
  passes: tiresias, gittins, gavel, themis). A job is not preempted before it has run its restore
  and, when a preemption loses the work since the last checkpoint, one checkpoint interval (and its
  cost); when a preemption loses nothing, as long again as its restore. Every run that a preemption
  ends then moves its job forward, so rounds or demotions shorter than a checkpoint cannot rotate jobs
  forever without progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from simulator.policies.base import ClusterView
from simulator.policies.sorted_queue import SortedQueue
from simulator.units import format_duration

_OWN = object()  # `device` default: the job's own device constraint
_PRUNE_LIMIT = 64  # victims beyond this are kept as taken (pruning costs their number squared)


def placeable_pools(view: ClusterView, job, device=_OWN) -> list:
    """The pools `job` may be placed on now, in the order `Cluster.allocate` tries them: those of its
    device type (`device`: of that type instead; None: any) at its site, if it is held to one, a burst
    pool once it has waited long enough."""
    now = view.now
    return [p for p in view.cluster.candidate_pools(job.device if device is _OWN else device, job.site)
            if p.burst_after is None or now >= job.queued_since + p.burst_after]


class _Released:
    """One pool as it would be once some of its running jobs were released (the pool is not changed):
    the pool's own `room`, so a torus pool answers with its slices and a node pool with its nodes."""

    __slots__ = ("pool", "room", "jobs")

    def __init__(self, pool):
        self.pool = pool
        self.room = pool.room()
        self.jobs: list = []

    def release(self, job) -> None:
        self.room.release(job.alloc)
        self.jobs.append(job)

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        return self.room.fits(devices, gpu_milli)


def _needed(pool, jobs: list, devices: int, gpu_milli: int) -> list:
    """`jobs` (enough to fit `devices` on `pool`, in the order taken) less those the fit does not need,
    the latest taken dropped first. The last one taken is always needed: without it the fit failed."""
    if len(jobs) > _PRUNE_LIMIT:
        return jobs
    kept = list(jobs)
    for i in range(len(kept) - 2, -1, -1):
        trial = kept[:i] + kept[i + 1:]
        room = _Released(pool)
        for other in trial:
            room.release(other)
        if room.fits(devices, gpu_milli):
            kept = trial
    return kept


def victims_for(job, view: ClusterView, candidates: Iterable, devices: int | None = None,
                device=_OWN) -> list | None:
    """The running jobs to suspend so that `job`, on `devices` (default its request), can be placed:
    [] if it fits now; None if no choice among `candidates` makes it fit (then suspend nobody).

    `candidates` are running jobs in the order they may be taken (lowest priority first; the walk stops
    at the first fit, so a lazy iterator is read only as far as needed). The victims all come from one
    pool the job may use (`placeable_pools`, with `device` in place of the job's own constraint): the
    first pool whose room is made in that order, and of the jobs taken there only those the fit needs."""
    view.placing(job)  # a torus pool fits the slice shape the job names, if it names one
    try:
        return _victims_for(job, view, candidates, devices, device)
    finally:
        view.placing(None)


def _victims_for(job, view: ClusterView, candidates: Iterable, devices: int | None, device) -> list | None:
    need = job.gpus if devices is None else devices
    milli = job.gpu_milli if devices is None else 0  # a share of one GPU on a sharing pool
    usable = {p.index: p for p in placeable_pools(view, job, device) if p.capacity >= need}
    if not usable:
        return None
    if any(p.fits(need, milli) for p in usable.values()):
        return []
    rooms: dict[int, _Released] = {}
    for candidate in candidates:
        pool = candidate.alloc.pool
        room = rooms.get(pool.index)
        if room is None:
            if usable.get(pool.index) is not pool:
                continue  # its release frees nothing the job could use
            room = rooms[pool.index] = _Released(pool)
        room.release(candidate)
        if room.fits(need, milli):
            return _needed(pool, room.jobs, need, milli)
    return None


def preempt_for(job, view: ClusterView, running: SortedQueue, outranks: Callable[[object], bool],
                guard: RunGuard | None = None) -> bool:
    """Suspend running jobs that `job` outranks, lowest-ranked first, so that `job` can start now
    (`victims_for`); with a `guard`, only jobs it lets move. `running` is sorted highest priority
    first; victims leave it. Returns whether `job` can start now; nothing is suspended when it cannot."""
    now = view.now

    def candidates():
        for candidate in running.reversed():
            if not outranks(candidate):
                return
            if guard is None or guard.movable(candidate, now):
                yield candidate

    victims = victims_for(job, view, candidates())
    if victims is None:
        return False
    for victim in victims:
        running.remove(victim)
        view.suspend(victim)
    return True


def min_run(restore: float, interval: float | None, cost: float, checkpoint_on_preempt: bool) -> float:
    """Seconds a resumed job must run before a preemption leaves it further on than before: its restore,
    then one checkpoint interval and its cost if a preemption loses the work since the last checkpoint,
    else as long again as the restore (at least as much work as restoring)."""
    if interval is not None and not checkpoint_on_preempt:
        return restore + interval + cost
    return 2 * restore


class RunGuard:
    """When a running job may be preempted (see the module's doc): `movable`, and `wake`, the earliest
    time a job that `movable` held back becomes movable (a policy asks for a pass then; reset it to
    `math.inf` at the start of a pass)."""

    def __init__(self, context):
        lossy = context.checkpoint_interval_s is not None and not context.checkpoint_on_preempt
        # A job's first run pays no restore: only the checkpoint, if preemptions lose work.
        self.fresh = context.checkpoint_interval_s + context.checkpoint_cost_s if lossy else 0.0
        self.resumed = min_run(context.restore_s, context.checkpoint_interval_s, context.checkpoint_cost_s,
                               context.checkpoint_on_preempt)
        self.wake = math.inf

    def movable_at(self, job) -> float:
        return job.start + (self.resumed if job.preemptions else self.fresh)

    def movable(self, job, now: float) -> bool:
        at = self.movable_at(job)
        if at <= now:
            return True
        if at < self.wake:
            self.wake = at
        return False


def rotation_loses_work(policy, preemption) -> str | None:
    """The warning for a policy that moves running jobs every round (`rotation_s`, e.g. gavel, themis)
    when its round is shorter than a run that keeps work (`min_run`): the policy then holds jobs past
    rounds until that run is done, and a move may still lose the work since the last checkpoint. None
    when the rounds are long enough. `preemption` is the scenario's `scheduler.preemption`."""
    rotation = policy.rotation_s()
    if rotation is None:
        return None
    restore, interval = preemption.restore, preemption.checkpoint_interval
    needed = min_run(restore, interval, preemption.checkpoint_cost, preemption.checkpoint_on_preempt)
    if rotation >= needed:
        return None
    if interval is not None and not preemption.checkpoint_on_preempt:
        return (f"{policy.name} moves jobs every {format_duration(rotation)}, but its preemptions do not checkpoint "
                f"and a moved job keeps work only once it has run its restore and one checkpoint "
                f"(scheduler.preemption.restore {format_duration(restore)} + checkpoint_interval "
                f"{format_duration(interval)}): jobs are held past rounds until they have run "
                f"{format_duration(needed)}, and a move loses the work since the last checkpoint. Gavel and "
                "Themis checkpoint at lease ends: set scheduler.preemption.checkpoint_on_preempt: true.")
    return (f"{policy.name} moves jobs every {format_duration(rotation)}, less than twice the restore "
            f"(scheduler.preemption.restore: {format_duration(restore)}): a job moved every round would "
            f"spend more time restoring than working, so jobs are held past rounds until they have run "
            f"{format_duration(needed)}. Lengthen the round or shorten the restore.")
