"""The policy interface: three hooks (admit, order, place) and the view of the cluster they act through.

A policy sees the queue and the running jobs, and answers in one pass:

* ``admit(job)``   on arrival: ``None`` to accept, or a reason string to reject the job;
* ``order(now)``   the queued jobs in the order to try them;
* ``place(now)``   the decision: jobs to suspend, jobs to launch with their allocations.

The default ``place`` walks ``order`` and launches what fits; ``blocking`` policies stop at the first
job that does not fit (strict head-of-line, as FIFO). Allocations go through ``self.view`` so that
devices freed by a suspension in this pass can be given to a launch in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from simulator.cluster.pool import Allocation, Cluster
    from simulator.job import Job


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Decision:
    suspend: list[Job] = field(default_factory=list)
    launch: list[tuple[Job, Allocation]] = field(default_factory=list)


class ClusterView:
    """What a policy may do to the cluster during one scheduling pass; the engine applies the result."""

    def __init__(self, cluster: Cluster, spread: bool = False):
        self.cluster = cluster
        self.spread = spread
        self.placement_changed()
        self.running: dict[int, Job] = {}  # maintained by the engine
        self.decision = Decision()
        self.now = 0.0  # the time of the pass, set by the engine

    def placement_changed(self) -> None:
        """The pools jobs may be placed on changed (a pool started draining)."""
        # One owned pool: nothing to choose and no wait to check.
        pools = self.cluster.candidate_pools(None)
        self._only = pools[0] if len(pools) == 1 and not self.cluster.burst_waits else None

    def allocate(self, job: Job, devices: int | None = None) -> Allocation | None:
        """Place `job` now (on `devices` devices, default its request) and record the launch."""
        only = self._only
        if only is not None and job.device is None:
            alloc = only.allocate(job.gpus if devices is None else devices, self.spread)
        else:
            alloc = self.cluster.allocate(job.gpus if devices is None else devices, job.device, self.spread,
                                          job.queued_since, self.now)
        if alloc is not None:
            self.decision.launch.append((job, alloc))
        return alloc

    def suspend(self, job: Job) -> None:
        """Preempt a running job: its devices are free for the rest of this pass."""
        self.cluster.release(job.alloc)
        self.decision.suspend.append(job)

    def fits(self, job: Job, devices: int | None = None) -> bool:
        return self.cluster.fits(job.gpus if devices is None else devices, job.device, job.queued_since, self.now)

    def take_decision(self) -> Decision:
        """The decision of this pass; the engine empties it once applied."""
        return self.decision


class Policy:
    """Base policy: a queue in arrival order, no admission control, greedy placement."""

    name: ClassVar[str] = "base"
    Options: ClassVar[type[BaseModel]] = NoOptions
    blocking: ClassVar[bool] = False  # stop at the first job that does not fit
    # True when jobs start strictly in queue order: an arrival behind a waiting job cannot start, so
    # the engine skips the pass it would otherwise run for that arrival.
    in_order: ClassVar[bool] = False
    # With an empty queue there is nothing to launch; a policy that also reshapes running jobs
    # (elastic growth, lease rounds) sets this to be called anyway.
    passes_when_idle: ClassVar[bool] = False

    def __init__(self, options: BaseModel, view: ClusterView, context: PolicyContext):
        self.options = options
        self.view = view
        self.context = context
        self.queue: dict[int, Job] = {}  # insertion-ordered: arrival order, re-queued jobs at the end

    # -- the three hooks -------------------------------------------------------------------------
    def admit(self, job: Job, now: float) -> str | None:
        return None

    def order(self, now: float) -> Iterable[Job]:
        return self.queue.values()

    def place(self, now: float) -> Decision:
        view = self.view
        blocking = self.blocking
        for job in self.order(now):
            if view.allocate(job) is None and blocking:
                break
        return self.view.decision

    # -- notifications from the engine ------------------------------------------------------------
    def on_queued(self, job: Job, now: float) -> None:
        """A job enters the queue: on arrival, or after a preemption."""
        self.queue[job.index] = job

    def on_launch(self, job: Job, now: float) -> None:
        del self.queue[job.index]

    def on_complete(self, job: Job, now: float) -> None:
        """A job finished; policies that learn from history (duration predictors) hook here."""

    def on_capacity_change(self, now: float) -> None:
        """A node failed or came back: policies that plan ahead on the free capacity replan."""

    def next_wakeup(self, now: float) -> float | None:
        """A time at which the policy wants a pass even if nothing else happens (e.g. a quantum)."""
        return None

    def rotation_s(self) -> float | None:
        """Seconds between the rounds at which the policy may move running jobs (lease ends), if any."""
        return None


@dataclass
class PolicyContext:
    """Run-wide facts a policy may need: randomness, preemption costs, the runtime model."""

    rng: object
    restore_s: float
    checkpoint_interval_s: float | None
    runtime_of: object  # callable(job, devices, device) -> seconds of run time
