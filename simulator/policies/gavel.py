"""Gavel (Narayanan et al., OSDI'20): heterogeneity-aware max-min fairness (`gavel`).

Each `round` seconds the allocation LP is solved with scipy's linprog: x[j, t] is the share of time job
j should run on device type t; maximise the smallest normalised throughput
sum_t x[j, t] * speed[j, t] / max_t speed[j, t], with sum_t x[j, t] <= 1 per job and
sum_j x[j, t] * gpus_j <= devices of type t. Speeds are `throughputs` (relative speed per device type)
or, by default, the profiles' peak bf16 TFLOPS. Rounding to whole placements follows Gavel's rounds:
the (job, type) pairs are taken in order of x[j, t] / (share of time j has received on t), each while its
type has the devices. A job chosen for a type starts there in the round, preempting running jobs that
were not chosen where they run (lowest priority first, on a pool where that makes room for it; none if
nothing would); a running job chosen for another type moves there the same way. Running jobs not chosen
whose devices no choice needs run on, and a job that has not yet run long enough to keep work (its
restore, plus a checkpoint interval when preemptions lose work: preemption.RunGuard) keeps its place.
Between rounds, freed devices go to queued jobs in the round's order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.job import RUNNING
from simulator.policies.base import Policy
from simulator.policies.preemption import RunGuard, victims_for
from simulator.policies.registry import register_policy
from simulator.units import parse_duration


class GavelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    round: float = Field(default=360.0, gt=0, description="seconds between allocation rounds")
    throughputs: dict[str, float] | None = Field(default=None, description="relative speed per device type")
    max_jobs: int = Field(default=200, ge=1, description="jobs in one LP (longest-waiting first)")

    _r = field_validator("round", mode="before")(parse_duration)


def peak_speed(device: str) -> float:
    from simulator.profiles import load_profile_yaml

    try:
        return float(load_profile_yaml(device)["spec"]["peak_tflops"]["bf16"])
    except (KeyError, TypeError, FileNotFoundError):
        return 1.0


def max_min_shares(gpus: np.ndarray, speed: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Solve the max-min fairness LP; returns x (jobs x types)."""
    n, k = speed.shape
    if k == 1:
        # One device type: every job gets the same share z, the largest with sum z * gpus <= capacity.
        return np.full((n, 1), min(1.0, capacity[0] / max(gpus.sum(), 1e-12)))
    from scipy import sparse  # here, not at import: scipy.optimize alone takes ~1 s to load
    from scipy.optimize import linprog

    norm = speed / np.maximum(speed.max(axis=1, keepdims=True), 1e-12)
    jobs = np.repeat(np.arange(n), k)  # the job of variable j*k + t
    types = np.tile(np.arange(k), n)
    variables = np.arange(n * k)
    # Rows: n of  z - sum_t x[j,t] norm[j,t] <= 0;  n of  sum_t x[j,t] <= 1;  k of  sum_j x[j,t] gpus_j <= cap_t.
    rows = np.concatenate([jobs, np.arange(n), n + jobs, 2 * n + types])
    cols = np.concatenate([variables, np.full(n, n * k), variables, variables])
    vals = np.concatenate([-norm.ravel(), np.ones(n), np.ones(n * k), gpus[jobs]])
    a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(2 * n + k, n * k + 1))
    b_ub = np.concatenate([np.zeros(n), np.ones(n), capacity])
    cost = np.zeros(n * k + 1)
    cost[-1] = -1.0  # maximise z
    upper = np.append(np.where(speed.ravel() > 0, 1.0, 0.0), np.inf)
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=np.column_stack([np.zeros(n * k + 1), upper]),
                     method="highs")
    if not result.success:
        return np.full((n, k), 1.0 / k)
    return result.x[:-1].reshape(n, k)


@register_policy("gavel")
class Gavel(Policy):
    Options = GavelOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        cluster = view.cluster
        self.types = sorted(cluster.by_device)
        given = options.throughputs or {}
        self.speed = np.array([given.get(t, peak_speed(t) if not given else 1.0) for t in self.types])
        self.running: dict[int, object] = {}
        self.ran_on: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # seconds per type
        # (job, type) in priority order from the last round; until the first round, arrival order.
        self.order_now: list[tuple[object, str]] = []
        self.next_round = None
        self.guard = RunGuard(context)
        self._launched: set[int] = set()  # started by this pass's round (still in the queue until applied)

    def on_suspend(self, job, now):
        # Every run counts in the time the job has had on its device type, however it was cut short:
        # by this policy's round (which has already taken it out of `running`), a failure or a retirement.
        self.running.pop(job.index, None)
        self.ran_on[job.index][job.placed_device] += now - job.start

    def on_launch(self, job, now):
        super().on_launch(job, now)
        self.running[job.index] = job

    def on_complete(self, job, now):
        self.running.pop(job.index, None)
        self.ran_on.pop(job.index, None)

    def rotation_s(self):
        return self.options.round

    def next_wakeup(self, now):
        if not self.queue:
            self.next_round = None
            return None
        if self.next_round is None:
            self.next_round = now + self.options.round
        return self.next_round

    def place(self, now):
        self._launched = set()
        if self.next_round is not None and now >= self.next_round - 1e-9:
            self._round(now)
            self.next_round = now + self.options.round
        self._fill()
        return self.view.take_decision()

    def _speed_of(self, job) -> np.ndarray:
        if job.device is None:
            return self.speed
        return np.where(np.array(self.types) == job.device, self.speed, 0.0)

    def _round(self, now) -> None:
        running = list(self.running.values())
        waiting = sorted(self.queue.values(), key=lambda j: j.submit)
        active = (running + waiting)[: max(self.options.max_jobs, len(running))]
        if not active:
            self.order_now = []
            return
        speed = np.array([self._speed_of(j) for j in active])
        gpus = np.array([j.gpus for j in active], float)
        capacity = np.array([self.view.cluster.installed_capacity(t) for t in self.types], float)
        x = max_min_shares(gpus, speed, capacity)
        pairs = []
        for j, job in enumerate(active):
            lived = max(now - job.submit, 1e-9)
            ran = self.ran_on.get(job.index, {})
            for t, device in enumerate(self.types):
                if x[j, t] > 1e-6:
                    held = ran.get(device, 0.0) + (now - job.start if job.state == RUNNING
                                                   and job.placed_device == device else 0.0)
                    pairs.append((x[j, t] / (held / lived + 1e-3), job.submit, job.index, job, device))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        left = dict(zip(self.types, capacity.tolist(), strict=True))
        chosen: dict[int, str] = {}
        for job in running:  # too early to move without losing its run: it stays (RunGuard)
            if not self.guard.movable(job, now):
                chosen[job.index] = job.placed_device
                left[job.placed_device] = left.get(job.placed_device, 0.0) - job.alloc.devices
        for _, _, index, job, device in pairs:
            if index not in chosen and job.gpus <= left[device]:
                chosen[index] = device
                left[device] -= job.gpus
        self._start_chosen(pairs, chosen, running)
        launched = self._launched
        self.order_now = [(job, device) for _, _, index, job, device in pairs
                          if chosen.get(index) == device and job.state != RUNNING and index not in launched]
        self.order_now += [(job, device) for _, _, index, job, device in pairs if index not in chosen]

    def _start_chosen(self, pairs, chosen: dict[int, str], running: list) -> None:
        """Start the round's choices in priority order, each on its type, taking the devices of running
        jobs not chosen where they run (lowest priority first) where that makes room, and only then."""
        view = self.view
        best: dict[int, float] = {}
        for priority, _, index, _, _ in pairs:  # pairs are sorted best first
            best.setdefault(index, priority)
        losers = sorted((job for job in running if chosen.get(job.index) != job.placed_device),
                        key=lambda job: (best.get(job.index, -1.0), -job.start, job.index))
        if not losers and view.cluster.free == 0:
            return
        gone: set[int] = set()
        launched = self._launched
        for _, _, index, job, device in pairs:
            if chosen.get(index) != device or index in launched:
                continue
            moving = job.state == RUNNING and index not in gone  # (one taken as a victim is off already)
            if moving and job.placed_device == device:
                continue  # keeps its place
            victims = victims_for(job, view, (other for other in losers if other.index not in gone),
                                  device=device)
            if victims is None:
                continue
            for victim in victims:
                gone.add(victim.index)
                self._preempt(victim)
            if moving:
                gone.add(index)
                self._preempt(job)
            view.placing(job)
            alloc = view.cluster.allocate(job.gpus, device, view.spread, job.queued_since, view.now, job.site,
                                          job.gpu_milli)
            view.placing(None)
            if alloc is not None:  # (victims_for made the room: it is there)
                view.decision.launch.append((job, alloc))
                launched.add(index)

    def _preempt(self, job) -> None:
        self.view.suspend(job)
        del self.running[job.index]

    def _fill(self) -> None:
        view = self.view
        queue = self.queue
        self.order_now = [(job, device) for job, device in self.order_now if job.index in queue]
        in_round = {job.index for job, _ in self.order_now}
        placed = self._launched
        for job, device in self.order_now:
            if view.cluster.free == 0:
                break
            if job.index in placed or job.index not in self.queue:
                continue
            view.placing(job)
            alloc = view.cluster.allocate(job.gpus, device, view.spread, job.queued_since, view.now, job.site,
                                          job.gpu_milli)
            view.placing(None)
            if alloc is not None:
                # ClusterView.allocate places by the job's own device constraint; Gavel picks the type.
                view.decision.launch.append((job, alloc))
                placed.add(job.index)
        # Jobs that arrived since the round, first come first served on whatever is free.
        for depth, job in enumerate(queue.values()):
            if view.cluster.free == 0 or depth >= self.options.max_jobs:
                break
            if job.index not in placed and job.index not in in_round:
                view.allocate(job)
