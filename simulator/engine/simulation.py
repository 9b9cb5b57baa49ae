"""The event loop: SimPy's Environment is the calendar, handlers are callbacks on its entries.

Per the engine rules: no process per job and no polling. One arrival feeder walks the sorted job
table; a completion is one calendar entry (engine/calendar.py) carrying (job, version), dropped by
the calendar's loop if the job was interrupted or changed speed since (lazy cancellation); the
scheduler runs once per instant in which state changed. A job on a contended fabric progresses at
the rate its share of the bandwidth allows (network/fabric.py): whenever a job joins or leaves that
fabric, the rates are shared out again and each job whose rate changed gets a new completion.
Nothing is recorded per instant: the recorder keeps each job's runs and rebuilds the timeline after
the run.

Hot calls go through their objects (`policy.on_queued(...)`, `self.recorder.job_done(...)`) rather
than bound methods cached in locals: the compiled engine (simulator/compiled.py) then dispatches them
in C, and Cython would mis-wrap a typed method taken as a value.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush

import numpy as np
import pandas as pd
import simpy
from simpy.events import NORMAL

from simulator.cluster.pool import Cluster, Pool
from simulator.engine.calendar import Calendar, Due
from simulator.engine.checkpoint import kept_and_wasted, wall_time
from simulator.engine.recorder import Recorder
from simulator.job import COMPLETED, QUEUED, REJECTED, RUNNING, Job, duration_runtime
from simulator.models.failures import FailureProcess
from simulator.network.fabric import Fabric, Flow
from simulator.policies.base import ClusterView, Policy, contract_of

# Optional job-table columns copied onto the Job record when present (column -> attribute).
_OPTIONAL = {"user": "user", "vc": "vc", "device": "device", "priority": "priority", "deadline": "deadline",
             "estimate": "estimate", "min_gpus": "min_gpus", "max_gpus": "max_gpus", "model": "model",
             "recorded_start_time": "recorded_start", "comm_fraction": "comm_fraction"}


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
        checkpoint_cost_s: float = 0.0,
        checkpoint_on_preempt: bool = False,
        infeasible: np.ndarray | None = None,
        progress=None,
        failures: FailureProcess | None = None,
        installs: list[tuple[float, Pool]] | None = None,
        retirements: list[tuple[float, Pool]] | None = None,
        drains: list[tuple[float, Pool]] | None = None,
        fabrics: list[Fabric | None] | None = None,
        comm_fraction_of: Callable[[Job, int, str], float] | None = None,
    ):
        """`infeasible` marks jobs rejected at load time (they can never fit): recorded, never queued.
        `installs`, `drains` and `retirements` are (seconds after the first submission, pool): pools
        entering service, no longer taking new jobs, and leaving service. `fabrics[i]` is pool i's
        contended fabric, or None (not modelled); `comm_fraction_of(job, devices, device)` gives a
        job's traffic there (default: its own column)."""
        self.env = simpy.Environment()
        self.calendar = Calendar(self.env)
        self.cluster = cluster
        self.policy = policy
        self.view = view
        self.runtime_of = runtime_of
        self.restore_s = restore_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_cost_s = checkpoint_cost_s
        self.checkpoint_on_preempt = checkpoint_on_preempt
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
        # Jobs with a recorded duration on the devices they asked for need no runtime model call.
        self._durations_only = runtime_of is duration_runtime
        self._pass_pending = False
        self._wakeup_at = None
        self._woken = False  # the pending pass is one the policy asked for (next_wakeup)
        # The job table as Python lists: indexing them is faster than pandas or numpy scalars.
        self._n = len(jobs)
        self._ids = jobs["job_id"].astype(str).tolist()
        self._submit = jobs["submit_time"].to_numpy(dtype=float).tolist()
        self._gpus = jobs["gpus"].to_numpy(dtype=np.int64).tolist()
        self._duration = jobs["duration"].to_numpy(dtype=float).tolist()
        self._optional = [(attr, _column_values(jobs[c])) for c, attr in _OPTIONAL.items() if c in jobs.columns]
        self._infeasible = set(np.flatnonzero(infeasible).tolist()) if infeasible is not None else set()
        for i in self._infeasible:
            self.recorder.reject(i)
        self._next = 0
        self.failures = failures
        self._failures_armed = False
        self.installs = installs or []
        self.retirements = retirements or []
        self.drains = drains or []
        self._burst_waits = cluster.burst_waits  # empty without burst pools: no wake-ups to schedule
        self._fabrics = fabrics if fabrics and any(f is not None for f in fabrics) else None
        self.comm_fraction_of = comm_fraction_of
        self._started = self._finished = False
        self.context = None  # what simulator.collect needs beyond the recorder (set by simulator.build)

    # -- running ------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.env.now

    @property
    def finished(self) -> bool:
        return self._finished

    def run(self, until: float | None = None) -> Recorder | None:
        """Run to the end (or up to simulated time `until`, to inspect the queue, the running jobs and
        the cluster half-way and then call run again). Returns the recorder once the run has ended,
        None while it has not."""
        if not self._started:
            self._start()
        if not self._finished:
            self.calendar.run(Job, self._on_completion, float("inf") if until is None else until)
            if self.calendar.queue:
                return None
            self._finish()
        return self.recorder

    def _start(self) -> None:
        self._started = True
        if self._n:
            self.calendar.at(self._submit[0], self._on_arrivals)
            self._arm_failures(self._submit[0])  # the clock starts with the first job (traces may use unix time)
            for offset, pool in self.installs:
                self.calendar.at(self._submit[0] + offset, self._on_install, pool)
            for offset, pool in self.retirements:
                self.calendar.at(self._submit[0] + offset, self._on_retire, pool)
            for offset, pool in self.drains:
                self.calendar.at(self._submit[0] + offset, self._on_drain, pool)

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
        infeasible, admit, bursts = self._infeasible, self._admit, self._burst_waits
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
            if reason is None:
                policy.on_queued(job, now)
                if bursts:
                    self._wake_for_bursts(job)
            else:
                job.state = REJECTED
                job.reject_reason = reason
                self.recorder.job_done(job)
            i += 1
        self._next = i
        if not (had_queue and self._in_order):
            self._request_pass(now)
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
            self._request_pass(now)

    def _wake_for_bursts(self, job: Job) -> None:
        """A pass at each wait after which a burst pool would take the job, should it still wait."""
        for wait in self._burst_waits:
            self.calendar.at(job.queued_since + wait, self._on_burst_due, job)

    def _on_burst_due(self, event) -> None:
        if event._value.state == QUEUED:
            self._request_pass(self.env._now)

    def _on_wakeup(self, event) -> None:
        now = self.env._now
        if self._wakeup_at == now:
            self._wakeup_at = None
            self._woken = True
            self._request_pass(now)

    # -- node failures -------------------------------------------------------------------------------
    def _arm_failures(self, now: float) -> None:
        if self.failures is not None and not self._failures_armed:
            self._failures_armed = True
            self.calendar.at(now + self.failures.next_gap(), self._on_failure)

    def _on_failure(self, _event) -> None:
        now = self.env._now
        self._failures_armed = False
        if not self.running and self._next >= self._n:
            return  # nothing to interrupt and nothing left to arrive; a repair re-arms if work resumes
        hit = self.failures.strike(now, self.running, self._interrupt)
        if hit is not None:
            self.calendar.at(now + self.failures.repair_s, self._on_repair, hit)
            self._capacity_changed(now)
        self._arm_failures(now)

    def _interrupt(self, job: Job) -> None:
        """A node failure: like a preemption (devices freed, work since the checkpoint lost)."""
        job.alloc.pool.release(job.alloc)
        job.failures += 1
        self._suspend(job, self.env._now, graceful=False)

    def _on_repair(self, event) -> None:
        now = self.env._now
        self.failures.repair(*event._value)
        if self.policy.queue:
            self._arm_failures(now)
        self._capacity_changed(now)

    # -- pools entering and leaving service ---------------------------------------------------------------
    def _on_install(self, event) -> None:
        now = self.env._now
        event._value.install()
        self._capacity_changed(now)

    def _on_drain(self, event) -> None:
        """A pool due to retire stops taking new jobs; those on it run on."""
        self.cluster.stop_placing(event._value)
        self.view.placement_changed()
        self._capacity_changed(self.env._now)

    def _on_retire(self, event) -> None:
        """A planned retirement: the pool's jobs checkpoint (no work lost), requeue and may move."""
        now, pool = self.env._now, event._value
        for job in sorted((j for j in self.running.values() if j.alloc.pool is pool), key=lambda j: j.index):
            pool.release(job.alloc)
            self._suspend(job, now, graceful=True)
        pool.retire()
        self._capacity_changed(now)

    def _capacity_changed(self, now: float) -> None:
        """Devices left or joined service: policies that plan ahead replan, and waiting jobs get a pass."""
        self.policy.on_capacity_change(now)
        if self.policy.queue:
            self._request_pass(now)

    # -- the scheduling pass ---------------------------------------------------------------------------
    def _request_pass(self, now: float) -> None:
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
        if decision.suspend:
            for job in decision.suspend:
                self._suspend(job, now, graceful=self.checkpoint_on_preempt)
            decision.suspend.clear()
        launch = decision.launch
        if launch:
            for job, alloc in launch:
                policy.on_launch(job, now)
                self._launch(job, alloc, now)
            launch.clear()
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
        if self._fabrics is not None and self._join_fabric(job, alloc, work):
            return  # its completion follows its rate on the fabric
        end = now + (restore + work)
        # Calendar.completion_at, inlined: this runs once per job.
        heappush(self.calendar.queue, (end, NORMAL, next(self.calendar.ids), job, job.version))

    def _release(self, job: Job, alloc, now: float) -> None:
        """Stop accounting a job as running (its devices go back to the cluster separately)."""
        held = alloc.devices * (now - job.start)
        job.attained += held
        self.recorder.busy_device_seconds += held
        del self.running[job.index]
        if job.flow is not None:
            self._leave_fabric(job, alloc, now)

    def _suspend(self, job: Job, now: float, graceful: bool) -> None:
        """Interrupted (devices already freed): keep the work up to the last checkpoint and lose the rest,
        or keep it all when the scheduler lets the job checkpoint as it is preempted (`graceful`)."""
        alloc = job.alloc
        flow = job.flow  # on a contended fabric the work done is not the time elapsed
        ran = max(0.0, now - job.run_start) if flow is None else flow.progress_at(now)
        self._release(job, alloc, now)
        interval = None if graceful else self.checkpoint_interval_s
        kept, wasted = kept_and_wasted(ran, interval, self.checkpoint_cost_s)
        job.frac_left = max(0.0, job.frac_left - kept / job.runtime) if job.runtime > 0 else 0.0
        job.lost_work += wasted * alloc.devices
        self.recorder.run_interrupted(job.start, now, alloc.devices, alloc.pool.index)
        job.preemptions += 1
        job.version += 1
        job.state = QUEUED
        job.alloc = None
        job.queued_since = now
        if self._on_suspend is not None:
            self._on_suspend(job, now)
        self.policy.on_queued(job, now)
        if self._burst_waits:
            self._wake_for_bursts(job)

    # -- contended fabrics -----------------------------------------------------------------------------
    def _join_fabric(self, job: Job, alloc, work: float) -> bool:
        """A job spread over several nodes of a pool with a contended fabric starts its traffic there;
        `work` is its run at full speed after the restore. False (nothing done) for any other job."""
        fabric = self._fabrics[alloc.pool.index]
        if fabric is None or len(alloc.nodes) < 2:
            return False
        fraction = (job.comm_fraction if self.comm_fraction_of is None
                    else self.comm_fraction_of(job, alloc.devices, alloc.pool.device))
        if not fraction:
            return False
        job.flow = fabric.flows[job] = Flow(fraction * alloc.devices * fabric.per_device_gbs, work, job.run_start)
        self._share_fabric(fabric, job.start, job)
        return True

    def _leave_fabric(self, job: Job, alloc, now: float) -> None:
        flow = job.flow
        flow.set_rate(flow.rate, now)  # close its account up to now
        self.recorder.network_delayed(job.index, flow.delay, flow.delay * alloc.devices)
        fabric = self._fabrics[alloc.pool.index]
        del fabric.flows[job]
        job.flow = None
        self._share_fabric(fabric, now, None)

    def _share_fabric(self, fabric: Fabric, now: float, joined) -> None:
        """Re-share the fabric; every job whose rate changed (and one that just `joined`) gets the
        completion its new rate gives, and its older one goes stale."""
        for job, flow, rate in fabric.fair_rates():
            if rate != flow.rate or job is joined:
                flow.set_rate(rate, now)
                job.version += 1
                heappush(self.calendar.queue, (flow.end_at(), NORMAL, next(self.calendar.ids), job, job.version))


def _column_values(series: pd.Series) -> list:
    """A column as a list with missing values as None (so absent fields keep the Job defaults)."""
    values = series.astype(object).where(series.notna(), None).tolist()
    if pd.api.types.is_integer_dtype(series.dtype):
        return [None if v is None else int(v) for v in values]
    return values
