"""The event loop's core: jobs, pools, the calendar and the policy; every other feature is a source.

Per the engine rules: no process per job and no polling. One arrival feeder walks the sorted job
table; a completion is one calendar entry (engine/calendar.py) carrying (job, version), dropped by
the calendar's loop if the job was interrupted or changed speed since (lazy cancellation); the
scheduler runs once per instant in which state changed. Failures, pools entering and leaving
service, cloud burst and contended fabrics are event sources (engine/features.py, simulator/features/):
they schedule their own events and hear of jobs queued, launched and released. Nothing is recorded
per instant: the recorder keeps each job's runs, and the timeline is rebuilt after the run.

Hot calls go through their objects (`policy.on_queued(...)`, `self.recorder.job_done(...)`) rather
than bound methods cached in locals: the compiled engine (simulator/compiled.py) then dispatches them
in C, and Cython would mis-wrap a typed method taken as a value.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from heapq import heappush

import numpy as np
import pandas as pd
from simpy.events import NORMAL

from simulator.cluster.pool import Cluster
from simulator.engine.calendar import STALL_EVENTS, Calendar, Due, Environment
from simulator.engine.checkpoint import Checkpointing, kept_and_wasted, wall_time
from simulator.engine.features import Source, overrides
from simulator.engine.recorder import Recorder
from simulator.errors import CapsimError
from simulator.job import COMPLETED, QUEUED, REJECTED, RUNNING, Job, duration_runtime
from simulator.policies.base import ClusterView, Policy, contract_of

# Scheduling passes in a row at one instant that suspend jobs before the run is stopped as a livelock.
MAX_SUSPENDING_PASSES = 10_000
STALL_EVENTS_PER_JOB = 8  # calendar entries one job may add at one instant (engine/calendar.py's stall detector)

# Optional job-table columns copied onto the Job record when present (column -> attribute).
_OPTIONAL = {"user": "user", "vc": "vc", "device": "device", "priority": "priority", "deadline": "deadline",
             "estimate": "estimate", "min_gpus": "min_gpus", "max_gpus": "max_gpus", "model": "model",
             "recorded_start_time": "recorded_start", "comm_fraction": "comm_fraction",
             "gpu_milli": "gpu_milli"}


class Simulation:
    def __init__(
        self,
        cluster: Cluster,
        jobs: pd.DataFrame,
        policy: Policy,
        view: ClusterView,
        runtime_of: Callable[[Job, int, str], float],
        checkpointing: Checkpointing | None = None,
        infeasible: np.ndarray | None = None,
        progress=None,
        sources: list[Source] = (),
    ):
        """`infeasible` marks jobs rejected at load time (they can never fit): recorded, never queued.
        `sources` are the run's features that schedule events or listen to jobs (engine/features.py),
        started in this order."""
        self.env = Environment()
        self.env.on_completion = self._on_completion  # what SimPy's own env.step() does with a completion
        self.calendar = Calendar(self.env)
        self.cluster = cluster
        self.policy = policy
        self.view = view
        self.runtime_of = runtime_of
        checkpointing = checkpointing or Checkpointing()
        self.restore_s = checkpointing.restore_s
        self.checkpoint_interval_s = checkpointing.interval_s
        self.checkpoint_cost_s = checkpointing.cost_s
        self.checkpoint_on_preempt = checkpointing.on_preempt
        self.recorder = Recorder(len(jobs))
        self.progress = progress
        self.running = view.running
        # What the policy's class overrides decides what is called and what may be skipped (contract_of):
        # hooks left as the base class has them are not called at all (a call per job each).
        contract = contract_of(type(policy))
        self._admit = policy.admit if contract.admit else None
        self._on_suspend = policy.on_suspend if contract.on_suspend else None
        self._on_complete = policy.on_complete if contract.on_complete else None
        self._wakeups = contract.next_wakeup
        self._in_order = contract.in_order
        self._own_place = contract.own_place
        # The same for the sources: only those that listen are told (no listener, no cost per job).
        self.sources = list(sources)
        self._on_submit_hooks = [s for s in self.sources if overrides(s, Source, "on_submit")]
        self._on_queued_hooks = [s for s in self.sources if overrides(s, Source, "on_queued")]
        self._on_launch_hooks = [s for s in self.sources if overrides(s, Source, "on_launch")]
        self._on_release_hooks = [s for s in self.sources if overrides(s, Source, "on_release")]
        # Jobs with a recorded duration on the devices they asked for need no runtime model call.
        self._durations_only = runtime_of is duration_runtime
        self._pass_pending = False
        self._suspending_at, self._suspending_passes = None, 0  # see _pass_again
        self._wakeup_at = None
        self._woken = False  # the pending pass is one the policy asked for (next_wakeup)
        # The job table as Python lists: indexing them is faster than pandas or numpy scalars.
        self._n = len(jobs)
        # Many completions and passes may fall on one instant: the stall detector allows a few per job.
        self.calendar.stall_events = STALL_EVENTS + STALL_EVENTS_PER_JOB * self._n
        self._ids = jobs["job_id"].astype(str).tolist()
        self._submit = jobs["submit_time"].to_numpy(dtype=float).tolist()
        self._gpus = jobs["gpus"].to_numpy(dtype=np.int64).tolist()
        self._duration = jobs["duration"].to_numpy(dtype=float).tolist()
        self._optional = [(attr, _column_values(jobs[c])) for c, attr in _OPTIONAL.items() if c in jobs.columns]
        self._infeasible = set(np.flatnonzero(infeasible).tolist()) if infeasible is not None else set()
        for i in self._infeasible:
            self.recorder.reject(i)
        self._next = 0
        self._started = self._finished = False
        self.context = None  # what simulator.collect needs beyond the recorder (set by simulator.build)

    # -- running ------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.env.now

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def arrivals_done(self) -> bool:
        """Every job of the table has been submitted."""
        return self._next >= self._n

    def run(self, until: float | None = None) -> Recorder | None:
        """Run to the end (or up to simulated time `until`, to inspect the queue, the running jobs and
        the cluster half-way and then call run again). Returns the recorder once the run has ended,
        None while it has not."""
        if not self._started:
            self._start()
        if not self._finished:
            # The run allocates millions of short-lived, acyclic records (jobs, requests' heap entries); the
            # cyclic garbage collector would rescan every live one again and again, and reference counting
            # frees them anyway.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self.calendar.run(Job, self._on_completion, float("inf") if until is None else until)
            finally:
                if collecting:
                    gc.enable()
            if self.calendar.queue:
                return None
            self._finish()
        return self.recorder

    def _start(self) -> None:
        self._started = True
        t0 = 0.0  # without jobs (a serving-only run) the clock starts at 0
        if self._n:
            t0 = self._submit[0]  # the clock starts with the first job (traces may use unix time)
            self.calendar.at(t0, self._on_arrivals)
        for source in self.sources:
            source.start(self, t0)

    def _finish(self) -> None:
        self._finished = True
        if self.progress is not None:
            self.progress.update(self._n - self.progress.n)
        for job in [*self.policy.queue.values(), *self.running.values()]:
            self.recorder.job_done(job)  # only if a policy never launched a queued job

    def _on_arrivals(self, _event) -> None:
        """Admit the jobs of each arrival instant in turn, each instant followed by its pass.

        The job table is sorted, so the feeder is a merge of it with the calendar: while the next
        arrival comes strictly before every calendar entry, the clock moves to it here instead of
        through a calendar entry of its own. The order of events is the same; only the entry is saved.
        """
        env = self.env
        submit, n = self._submit, self._n
        queue = self.calendar.queue
        i = self._next
        while True:
            now = env._now
            i = self._admit_instant(i, now)
            if i >= n:
                break
            following = submit[i]
            if queue and queue[0][0] <= following:  # Calendar.at, inlined: this runs once per job
                due = Due()
                due.callbacks = [self._on_arrivals]
                heappush(queue, (following, NORMAL, next(self.calendar.ids), due))
                break
            env._now = following
        if self.progress is not None and i - self.progress.n >= 2048:
            self.progress.update(i - self.progress.n)

    def _admit_instant(self, i: int, now: float) -> int:
        """Admit every job submitted at `now` from row `i` on, in trace order, then ask for one pass.
        Returns the next row not yet submitted."""
        submit, n = self._submit, self._n
        policy = self.policy
        had_queue = bool(policy.queue)
        infeasible, admit, queued_hooks = self._infeasible, self._admit, self._on_queued_hooks
        submit_hooks = self._on_submit_hooks
        while i < n and submit[i] <= now:
            if infeasible and i in infeasible:
                i += 1
                continue
            job = Job(i, self._ids[i], submit[i], self._gpus[i], self._duration[i])
            for name, values in self._optional:
                value = values[i]
                if value is not None:
                    setattr(job, name, value)
            reason = None if admit is None else admit(job, now)
            if reason is None and submit_hooks and self._held(job, now):
                pass  # a source queues it later (sim.enqueue)
            elif reason is None:
                policy.on_queued(job, now)
                if queued_hooks:
                    for source in queued_hooks:
                        source.on_queued(job, now)
            else:
                job.state = REJECTED
                job.reject_reason = reason
                self.recorder.job_done(job)
            i += 1
        self._next = i
        if not (had_queue and self._in_order):
            self.request_pass(now)
        return i

    def _on_completion(self, job: Job, now: float) -> None:
        """The job's current run finished (stale completions never reach here: see Calendar.run)."""
        alloc = job.alloc
        alloc.pool.release(alloc)
        self._release(job, alloc, now)
        job.frac_left = 0.0
        job.state = COMPLETED
        job.end = now
        self.recorder.job_done(job)
        job.alloc = None
        if self._on_complete is not None:
            self._on_complete(job, now)
        if self.policy.queue:  # with nothing queued a pass has nothing to start
            self.request_pass(now)

    def _on_wakeup(self, event) -> None:
        now = self.env._now
        if self._wakeup_at == now:
            self._wakeup_at = None
            self._woken = True
            self.request_pass(now)

    def _held(self, job: Job, now: float) -> bool:
        """Whether a source holds the submitted `job` back from the queue (Source.on_submit)."""
        for source in self._on_submit_hooks:
            if source.on_submit(job, now):
                return True
        return False

    # -- what sources may do ------------------------------------------------------------------------
    def enqueue(self, job: Job, now: float) -> None:
        """A job a source held back at its submission (Source.on_submit) joins the queue now."""
        job.queued_since = now
        self.policy.on_queued(job, now)
        for source in self._on_queued_hooks:
            source.on_queued(job, now)
        self.request_pass(now)

    def evict(self, job: Job, now: float, graceful: bool) -> None:
        """Take a running job off its devices now and requeue it: a node failure (`graceful` False: the
        work since its last checkpoint is lost), or a pool leaving service (True: it checkpoints first)."""
        job.alloc.pool.release(job.alloc)
        self._suspend(job, now, graceful)

    def capacity_changed(self, now: float) -> None:
        """Devices left or joined service: policies that plan ahead replan, and waiting jobs get a pass."""
        self.policy.on_capacity_change(now)
        if self.policy.queue:
            self.request_pass(now)

    # -- the scheduling pass ---------------------------------------------------------------------------
    def request_pass(self, now: float) -> None:
        """Coalesce: run the pass now if this is the last event of the instant, else defer it once."""
        if self._pass_pending:
            return
        if self.calendar.next_time() > now:
            self._pass(now)
        else:
            self._pass_pending = True
            self.calendar.at(now, self._deferred_pass)

    def _deferred_pass(self, _event) -> None:
        self._pass_pending = False
        self._pass(self.env._now)

    def _pass(self, now: float) -> None:
        policy = self.policy
        self.view.now = now
        # A class whose `order` was overridden below its `place` is placed by that order (contract_of).
        decision = policy.place(now) if self._own_place else Policy.place(policy, now)
        suspended = bool(decision.suspend)
        if suspended:
            for job in decision.suspend:
                self._suspend(job, now, graceful=self.checkpoint_on_preempt)
            decision.suspend.clear()
        launch = decision.launch
        if launch:
            for job, alloc in launch:
                policy.on_launch(job, now)
                self._launch(job, alloc, now)
            launch.clear()
        if suspended:
            self._pass_again(now)
        if not self._wakeups:
            return
        woken, self._woken = self._woken, False
        if woken and not self.running and self._next >= self._n:
            # A round the policy asked for found nothing running and nothing left to arrive, and started
            # nothing: later rounds cannot either (what remains queued fits no pool still placeable).
            # Only a change of capacity, with its own pass, could; without this the run would not end.
            return
        wake = policy.next_wakeup(now)
        if wake is not None and wake > now and (self._wakeup_at is None or wake < self._wakeup_at):
            self._wakeup_at = wake
            self.calendar.at(wake, self._on_wakeup)

    def _pass_again(self, now: float) -> None:
        """Jobs a pass suspended may fit elsewhere at once: one more pass at this instant. A policy that
        suspends jobs at pass after pass of one instant would never let time move on: stopped, named."""
        if now == self._suspending_at:
            self._suspending_passes += 1
            if self._suspending_passes > MAX_SUSPENDING_PASSES:
                raise CapsimError(
                    f"the policy {self.policy.name!r} suspended jobs at {MAX_SUSPENDING_PASSES} scheduling passes "
                    f"in a row at t = {now:g} s without time moving on: it re-plans without effect (a livelock "
                    "in the policy; its options, e.g. rounds or thresholds, may be too aggressive)",
                    where="scheduler.policy")
        else:
            self._suspending_at, self._suspending_passes = now, 1
        if not self._pass_pending:
            self._pass_pending = True
            self.calendar.at(now, self._deferred_pass)

    # -- job lifecycle -------------------------------------------------------------------------------
    def _launch(self, job: Job, alloc, now: float) -> None:
        pool = alloc.pool
        devices = alloc.devices
        job.alloc = alloc
        job.pool = pool.index
        job.placed_device = pool.device
        job.state = RUNNING
        job.start = now
        if job.first_start is None:
            job.first_start = now
        if self._durations_only and devices == job.gpus:
            runtime = job.duration
        else:
            runtime = self.runtime_of(job, devices, pool.device)
        job.runtime = runtime
        self.running[job.index] = job
        # An uninterrupted job does all its work with no restore: it ends at exactly start + duration.
        work = job.frac_left * runtime if job.preemptions else runtime
        restore = self.restore_s if job.preemptions else 0.0
        job.run_start = now + restore
        if self.checkpoint_cost_s:
            work = wall_time(work, self.checkpoint_interval_s, self.checkpoint_cost_s)
        if self._on_launch_hooks:
            for source in self._on_launch_hooks:
                if source.on_launch(job, alloc, work):
                    return  # the source paces the run and schedules its completion
        end = now + (restore + work)
        # Calendar.completion_at, inlined: this runs once per job.
        heappush(self.calendar.queue, (end, NORMAL, next(self.calendar.ids), job, job.version))

    def _release(self, job: Job, alloc, now: float) -> None:
        """Stop accounting a job as running (its devices go back to the cluster separately)."""
        # a share of one GPU counts as its fraction (the branch keeps whole devices' arithmetic as it was)
        held = (alloc.devices if not alloc.milli else alloc.milli / 1000.0) * (now - job.start)
        job.attained += held
        self.recorder.busy_device_seconds += held
        del self.running[job.index]
        if self._on_release_hooks:
            for source in self._on_release_hooks:
                source.on_release(job, alloc, now)

    def _suspend(self, job: Job, now: float, graceful: bool) -> None:
        """Interrupted (devices already freed): keep the work up to the last checkpoint and lose the rest,
        or keep it all when the scheduler lets the job checkpoint as it is preempted (`graceful`)."""
        alloc = job.alloc
        flow = job.flow  # a run a source paces (a contended fabric): the work done is not the time elapsed
        ran = max(0.0, now - job.run_start) if flow is None else flow.progress_at(now)
        self._release(job, alloc, now)
        interval = None if graceful else self.checkpoint_interval_s
        kept, wasted = kept_and_wasted(ran, interval, self.checkpoint_cost_s)
        job.frac_left = max(0.0, job.frac_left - kept / job.runtime) if job.runtime > 0 else 0.0
        gpus = alloc.devices if not alloc.milli else alloc.milli / 1000.0
        job.lost_work += wasted * gpus
        self.recorder.run_interrupted(job.start, now, gpus, alloc.pool.index)
        job.preemptions += 1
        job.version += 1
        job.state = QUEUED
        job.alloc = None
        job.queued_since = now
        if self._on_suspend is not None:
            self._on_suspend(job, now)
        self.policy.on_queued(job, now)
        if self._on_queued_hooks:
            for source in self._on_queued_hooks:
                source.on_queued(job, now)


def _column_values(series: pd.Series) -> list:
    """A column as a list with missing values as None (so absent fields keep the Job defaults)."""
    values = series.astype(object).where(series.notna(), None).tolist()
    if pd.api.types.is_integer_dtype(series.dtype):
        return [None if v is None else int(v) for v in values]
    return values
