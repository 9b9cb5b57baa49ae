"""How a feature plugs into the engine: as an event source, a meter, or both.

The core (simulation.py) knows jobs, pools, the calendar and the policy. Everything else a run can
model (node failures, pools entering and leaving service, cloud burst, a contended fabric, power,
cost, maintenance windows) is a feature that

- as a **Source**, schedules its own events on the calendar (`start`) and reacts to the engine's
  notifications about jobs (`on_submit`, `on_queued`, `on_launch`, `on_release`); and
- as a **Meter**, adds to what `simulator.collect` builds after the run: job columns, timeline
  columns and change sets, summary keys.

A class overrides only the hooks it needs: the engine calls a notification only on the sources that
override it, so a feature costs nothing in the hot loop unless it listens there. From its handlers a
source acts on the run through the engine's small public surface: `sim.calendar.at(time, handler,
value)`, `sim.env` (SimPy's Environment: a source may also be a SimPy process), `sim.evict(job, now,
graceful)`, `sim.enqueue(job, now)`, `sim.capacity_changed(now)`, `sim.request_pass(now)`, `sim.running`, `sim.cluster`,
`sim.policy` and `sim.arrivals_done`.

The built-in features and their registration are in simulator/features/; docs/engine.md shows how to
write one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from simulator.cluster.pool import Allocation, Cluster
    from simulator.engine.recorder import Recorder
    from simulator.engine.simulation import Simulation
    from simulator.engine.timeline import TimelineBuilder
    from simulator.job import Job


class Source:
    """An event source. `start` runs once, when the run starts; the notifications run during it."""

    def start(self, sim: Simulation, t0: float) -> None:
        """Schedule the first events. `t0` is the first submission: the run's clock starts there
        (traces may use unix time), and scenario times such as `available_from` count from it."""

    def on_submit(self, job: Job, now: float) -> bool:
        """`job` was submitted and admitted. Return True to hold it back from the queue: the source then
        queues it later with `sim.enqueue(job, now)` (a job whose input data must move first)."""
        return False

    def on_queued(self, job: Job, now: float) -> None:
        """`job` joined the queue: on arrival, or again after an interruption."""

    def on_launch(self, job: Job, alloc: Allocation, work: float) -> bool:
        """`job` starts a run on `alloc` at `job.start` that, at full speed, does `work` seconds of work
        from `job.run_start` (after its restore). Return True to pace it yourself: the engine then
        schedules no completion, and the source must (`sim.calendar.completion_at`), setting
        `job.flow` to an object whose `progress_at(now)` is the work done so far."""
        return False

    def on_release(self, job: Job, alloc: Allocation, now: float) -> None:
        """`job`'s run on `alloc` ended at `now`: it completed, or it was interrupted (its devices are
        already back in the pool). Called before the engine records an interruption's lost work."""


@dataclass
class Outcome:
    """What a finished run hands its meters: the engine's record and the tables built from it.
    `jobs`, `timeline` and `summary` fill in as `collect` goes; a meter adds to them."""

    recorder: Recorder
    cluster: Cluster
    given: pd.DataFrame  # the job table the run was given, in submission order
    jobs: pd.DataFrame | None = None
    timeline: pd.DataFrame | None = None
    summary: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)  # further tables by name (requests): <name>.parquet


class Meter:
    """A meter. `collect` calls each phase on every meter, in registration order, before the next."""

    def job_columns(self, outcome: Outcome) -> None:
        """Add columns to `outcome.jobs` (one row per job)."""

    def timeline(self, builder: TimelineBuilder, outcome: Outcome) -> None:
        """Declare timeline columns and add their changes (see engine/timeline.py)."""

    def finish(self, outcome: Outcome) -> None:
        """Add summary keys to `outcome.summary` (the core's are there, and those of the meters
        before this one), columns computed from the finished timeline to `outcome.timeline`, and
        tables of its own to `outcome.tables` (the serving feature's `requests`)."""


def overrides(obj: object, base: type, hook: str) -> bool:
    """Whether `obj`'s class overrides `hook` of `base` (a hook left as the base has it is not called)."""
    return getattr(type(obj), hook, None) is not getattr(base, hook)
