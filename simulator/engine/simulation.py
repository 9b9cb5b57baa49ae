"""The event loop: SimPy's Environment is the calendar, handlers are callbacks on timeouts.

Per the engine rules: no process per job and no polling. One arrival feeder walks the sorted job
table; a completion is one timeout carrying (job, version) and is skipped if the job was interrupted
since (lazy cancellation); the scheduler runs once per instant in which state changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import simpy
from simpy.events import Timeout

from simulator.cluster.pool import Cluster
from simulator.engine.job import COMPLETED, QUEUED, REJECTED, RUNNING, Job
from simulator.engine.recorder import Recorder
from simulator.policies.base import ClusterView, Policy

# Optional job-table columns copied onto the Job record when present (column -> attribute).
_OPTIONAL = {"user": "user", "vc": "vc", "device": "device", "priority": "priority", "deadline": "deadline",
             "estimate": "estimate", "min_gpus": "min_gpus", "max_gpus": "max_gpus", "model": "model",
             "recorded_start_time": "recorded_start"}


class Simulation:
    def __init__(
        self,
        cluster: Cluster,
        jobs: pd.DataFrame,
        policy: Policy,
        view: ClusterView,
        runtime_of: Callable[[Job, int, str], float],
        restore_s: float = 0.0,
        checkpoint_interval_s: float | None = None,
        infeasible: np.ndarray | None = None,
        record_timeline: bool = True,
        progress=None,
    ):
        """`infeasible` marks jobs rejected at load time (they can never fit): recorded, never queued."""
        self.env = simpy.Environment()
        self.cluster = cluster
        self.policy = policy
        self.view = view
        self.runtime_of = runtime_of
        self.restore_s = restore_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.recorder = Recorder(len(jobs), record_timeline)
        self.progress = progress
        self.running = view.running
        self._job_done = self.recorder.job_done
        self._record_sample = self.recorder.sample
        # Skip the per-pass call for policies that never ask to be woken.
        self._wakeups = type(policy).next_wakeup is not Policy.next_wakeup
        self.busy = 0
        self._pass_pending = False
        self._wakeup_at = None
        # The job table as Python lists: indexing them is faster than pandas or numpy scalars.
        self._n = len(jobs)
        self._ids = jobs["job_id"].astype(str).tolist()
        self._submit = jobs["submit_time"].to_numpy(dtype=float).tolist()
        self._gpus = jobs["gpus"].to_numpy(dtype=np.int64).tolist()
        self._duration = jobs["duration"].to_numpy(dtype=float).tolist()
        self._optional = [(attr, _column_values(jobs[c])) for c, attr in _OPTIONAL.items() if c in jobs.columns]
        self._infeasible = set(np.flatnonzero(infeasible).tolist()) if infeasible is not None else set()
        for i in self._infeasible:
            self.recorder.status[i] = REJECTED
        self._next = 0

    # -- running ------------------------------------------------------------------------------------
    def run(self) -> Recorder:
        if self._n:
            Timeout(self.env, self._submit[0]).callbacks.append(self._on_arrivals)
        self.env.run()
        if self.progress is not None:
            self.progress.update(self._n - self.progress.n)
        for job in [*self.policy.queue.values(), *self.running.values()]:
            self._job_done(job)  # only if a policy never launched a queued job
        return self.recorder

    def _on_arrivals(self, _event) -> None:
        """Admit every job submitted at this instant, in trace order, then ask for one pass."""
        now = self.env.now
        submit, n = self._submit, self._n
        i = self._next
        policy = self.policy
        had_queue = bool(policy.queue)
        infeasible = self._infeasible
        while i < n and submit[i] <= now:
            if infeasible and i in infeasible:
                i += 1
                continue
            job = Job(i, self._ids[i], submit[i], self._gpus[i], self._duration[i])
            for name, values in self._optional:
                value = values[i]
                if value is not None:
                    setattr(job, name, value)
            reason = policy.admit(job, now)
            if reason is None:
                policy.on_queued(job, now)
            else:
                job.state = REJECTED
                job.reject_reason = reason
                self._job_done(job)
            i += 1
        if self.progress is not None and i - self.progress.n >= 2048:
            self.progress.update(i - self.progress.n)
        self._next = i
        if i < n:
            Timeout(self.env, submit[i] - now).callbacks.append(self._on_arrivals)
        if not (had_queue and policy.in_order):
            self._request_pass()

    def _on_completion(self, event) -> None:
        job, version = event._value
        if version != job.version:
            return  # the job was interrupted after this completion was scheduled
        now = self.env.now
        self.cluster.release(job.alloc)
        self._release(job, now)
        job.alloc = None
        job.frac_left = 0.0
        job.state = COMPLETED
        job.end = now
        self.policy.on_complete(job, now)
        self._job_done(job)
        if self.policy.queue or self.policy.passes_when_idle:
            self._request_pass()
        else:
            self._sample(now)

    def _on_wakeup(self, event) -> None:
        if self._wakeup_at == self.env.now:
            self._wakeup_at = None
            self._request_pass()

    # -- the scheduling pass ---------------------------------------------------------------------------
    def _request_pass(self) -> None:
        """Coalesce: run the pass now if this is the last event of the instant, else defer it once."""
        if self._pass_pending:
            return
        env = self.env
        if env.peek() > env.now:
            self._pass()
        else:
            self._pass_pending = True
            env.timeout(0).callbacks.append(self._deferred_pass)

    def _deferred_pass(self, _event) -> None:
        self._pass_pending = False
        self._pass()

    def _pass(self) -> None:
        now = self.env.now
        policy = self.policy
        decision = policy.place(now)
        if decision.suspend:
            for job in decision.suspend:
                self._suspend(job, now)
            decision.suspend.clear()
        if decision.launch:
            for job, alloc in decision.launch:
                policy.on_launch(job, now)
                self._launch(job, alloc, now)
            decision.launch.clear()
        self._sample(now)
        if not self._wakeups:
            return
        wake = policy.next_wakeup(now)
        if wake is not None and wake > now and (self._wakeup_at is None or wake < self._wakeup_at):
            self._wakeup_at = wake
            self.env.timeout(wake - now).callbacks.append(self._on_wakeup)

    def _sample(self, now: float) -> None:
        self._record_sample(now, self.busy, len(self.policy.queue), len(self.running))

    # -- job lifecycle -------------------------------------------------------------------------------
    def _launch(self, job: Job, alloc, now: float) -> None:
        job.alloc = alloc
        job.pool = alloc.pool.index
        job.placed_device = alloc.pool.device
        job.state = RUNNING
        job.start = now
        if job.first_start is None:
            job.first_start = now
        job.runtime = self.runtime_of(job, alloc.devices, alloc.pool.device)
        restore = self.restore_s if job.preemptions else 0.0
        job.run_start = now + restore
        self.running[job.index] = job
        self.busy += alloc.devices
        # Computed as a delay from now so an uninterrupted job ends at exactly start + duration.
        delay = restore + job.frac_left * job.runtime if job.frac_left < 1.0 else restore + job.runtime
        Timeout(self.env, delay, (job, job.version)).callbacks.append(self._on_completion)

    def _release(self, job: Job, now: float) -> None:
        """Stop accounting a job as running (its devices go back to the cluster separately)."""
        alloc = job.alloc
        held = alloc.devices * (now - job.start)
        job.attained += held
        self.recorder.busy_device_seconds += held
        self.busy -= alloc.devices
        del self.running[job.index]

    def _suspend(self, job: Job, now: float) -> None:
        """Preempted: keep the work up to the last checkpoint, lose the rest (devices already freed)."""
        alloc = job.alloc
        self._release(job, now)
        ran = max(0.0, now - job.run_start)
        interval = self.checkpoint_interval_s
        saved = ran if interval is None else (ran // interval) * interval
        job.frac_left = max(0.0, job.frac_left - saved / job.runtime) if job.runtime > 0 else 0.0
        job.lost_work += (ran - saved) * alloc.devices
        job.preemptions += 1
        job.version += 1
        job.state = QUEUED
        job.alloc = None
        self.policy.on_queued(job, now)


def _column_values(series: pd.Series) -> list:
    """A column as a list with missing values as None (so absent fields keep the Job defaults)."""
    values = series.astype(object).where(series.notna(), None).tolist()
    if pd.api.types.is_integer_dtype(series.dtype):
        return [None if v is None else int(v) for v in values]
    return values
