"""The policy interface: three hooks (admit, order, place) and the view of the cluster they act through.

A policy sees the queue and the running jobs, and answers in one pass:

* ``admit(job)``   on arrival: ``None`` to accept, or a reason string to reject the job;
* ``order(now)``   the queued jobs in the order to try them;
* ``place(now)``   the decision: jobs to suspend, jobs to launch with their allocations.

The default ``place`` walks ``order`` and launches what fits; ``blocking`` policies stop at the first
job that does not fit (strict head-of-line, as FIFO). Allocations go through ``self.view`` so that
devices freed by a suspension in this pass can be given to a launch in the same pass.

What the engine may skip is worked out from what a class overrides (`contract_of`), never inherited
blindly: a subclass that overrides ``order`` is placed by that order, whatever its parent's ``place``.
"""

from __future__ import annotations

from collections import OrderedDict
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
        if only is not None and job.device is None and job.site is None:
            alloc = only.allocate(job.gpus if devices is None else devices, self.spread, job.gpu_milli)
        else:
            alloc = self.cluster.allocate(job.gpus if devices is None else devices, job.device, self.spread,
                                          job.queued_since, self.now, job.site, job.gpu_milli)
        if alloc is not None:
            self.decision.launch.append((job, alloc))
        return alloc

    def suspend(self, job: Job) -> None:
        """Preempt a running job: its devices are free for the rest of this pass."""
        self.cluster.release(job.alloc)
        self.decision.suspend.append(job)

    def fits(self, job: Job, devices: int | None = None) -> bool:
        return self.cluster.fits(job.gpus if devices is None else devices, job.device, job.queued_since, self.now,
                                 job.site, job.gpu_milli)

    def placing(self, job: Job | None) -> None:
        """`job` is about to be placed by a direct call to the cluster or a pool's room (not through
        `allocate` or `fits`), until `placing(None)`: a view that places jobs by more than their size
        (policies/shaped.py) takes note. Nothing to do here."""

    def take_decision(self) -> Decision:
        """The decision of this pass; the engine empties it once applied."""
        return self.decision


class Policy:
    """Base policy: a queue in arrival order, no admission control, greedy placement."""

    name: ClassVar[str] = "base"
    Options: ClassVar[type[BaseModel]] = NoOptions
    blocking: ClassVar[bool] = False  # stop at the first job that does not fit
    # A declaration: jobs start strictly in queue order, so an arrival behind a waiting job cannot start
    # and the engine skips the pass it would otherwise run for that arrival. It holds for the class that
    # declares it and for subclasses that leave `order`, `place`, `blocking` and `on_queued` as that class
    # has them; `contract_of` drops it for any other subclass.
    in_order: ClassVar[bool] = False

    def __init__(self, options: BaseModel, view: ClusterView, context: PolicyContext):
        self.options = options
        self.view = view
        self.context = context
        # Arrival order, re-queued jobs at the end. An OrderedDict, not a dict: a dict leaves a hole
        # where each launched job was, until it next resizes, and iterating from the head walks over
        # them, so under a long queue every in-order pass cost as much as the jobs launched since; an
        # OrderedDict iterates its linked list from the first job still waiting.
        self.queue: dict[int, Job] = OrderedDict()

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
        """A job enters the queue: on arrival, or after a suspension (`on_suspend` came first)."""
        self.queue[job.index] = job

    def on_suspend(self, job: Job, now: float) -> None:
        """A running job stopped before finishing and goes back to the queue: preempted by this policy
        (`view.suspend`), interrupted by a node failure, or moved off a retiring pool. Called before
        `on_queued` re-queues it; the engine has settled the run by then (`job.alloc` is None, `job.start`,
        `job.pool` and `job.placed_device` still describe the run that stopped, `job.attained` counts it)."""

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


@dataclass(frozen=True)
class Contract:
    """What the engine may rely on for one policy class, worked out from what the class overrides."""

    own_place: bool  # call the class's `place`; False: `Policy.place` over the class's `order`
    in_order: bool  # skip the pass for arrivals that join a non-empty queue
    admit: bool  # the hooks and notifications the class overrides; the engine calls no others
    on_suspend: bool
    on_complete: bool
    next_wakeup: bool


def _provider(cls: type, name: str) -> int:
    """Position in `cls`'s MRO of the class `name` comes from (0: `cls` itself; larger: further up)."""
    return next(i for i, klass in enumerate(cls.__mro__) if name in klass.__dict__)


def contract_of(cls: type[Policy]) -> Contract:
    """The engine's view of a policy class; the engine asks once per run, never per pass.

    * A class that takes `order` from further down its MRO than `place` (a subclass that overrides
      `order` under a parent with its own `place`) is placed by `Policy.place` walking that order, with
      the class's `blocking`: the parent's `place` keeps its own order and would ignore the new one.
    * `in_order` holds only where the class declaring it is also where `order`, `place`, `blocking` and
      `on_queued` come from (or a class above it), and the class keeps its own `place`.
    * `admit`, `on_suspend`, `on_complete` and `next_wakeup` are called only when overridden.
    """
    own_place = _provider(cls, "order") >= _provider(cls, "place")
    declared = _provider(cls, "in_order")
    in_order = bool(cls.in_order) and own_place and all(
        _provider(cls, name) >= declared for name in ("order", "place", "blocking", "on_queued"))
    return Contract(own_place=own_place, in_order=in_order,
                    admit=cls.admit is not Policy.admit, on_suspend=cls.on_suspend is not Policy.on_suspend,
                    on_complete=cls.on_complete is not Policy.on_complete,
                    next_wakeup=cls.next_wakeup is not Policy.next_wakeup)


@dataclass
class PolicyContext:
    """Run-wide facts a policy may need: randomness, preemption costs, the runtime model."""

    rng: object
    restore_s: float
    checkpoint_interval_s: float | None
    runtime_of: object  # callable(job, devices, device) -> seconds of run time
    checkpoint_cost_s: float = 0.0
    # The scheduler's preemptions checkpoint first (scheduler.preemption.checkpoint_on_preempt). Left
    # False, a policy assumes they lose the work since the last checkpoint (the cautious reading).
    checkpoint_on_preempt: bool = False
