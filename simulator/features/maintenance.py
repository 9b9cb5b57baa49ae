"""Maintenance windows: a pool taken out of service on a fixed cycle (firmware, cooling, a weekly
reboot). At each window's start the jobs on the pool checkpoint (no work lost), requeue and may move,
and its nodes go down until the window ends. Windows recur while work is running or still to arrive.

This module is also the worked example of docs/engine.md: a feature is a module like this one and
its name in simulator/features/FEATURES."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.units import format_span, parse_duration

SECTION = "maintenance"


class Window(BaseModel):
    """One pool's recurring maintenance window."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pool: str = Field(description="the pool's name (cluster.pools[].name)")
    every: float = Field(gt=0, description="time from one window's start to the next")
    duration: float = Field(gt=0, description="how long each window keeps the pool down")
    first: float = Field(default=0.0, ge=0, description="when the first window starts, after the first submission")

    _d = field_validator("every", "duration", "first", mode="before")(parse_duration)

    @model_validator(mode="after")
    def _shorter_than_cycle(self):
        if self.duration >= self.every:
            raise ValueError("duration must be shorter than every (the pool would never come back)")
        return self


Spec = list[Window]


class Maintenance(Source, Meter):
    def __init__(self, windows: list[tuple[object, Window]]):
        self.windows = windows  # (pool, its window)
        self.sim = None
        self.down: list[tuple[float, float, int]] = []  # (start, end, devices taken out of service)

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for pool, window in self.windows:
            sim.calendar.at(t0 + window.first, self._on_start, (pool, window))

    def _on_start(self, event) -> None:
        sim, now = self.sim, self.sim.now
        if not sim.running and sim.arrivals_done:
            return  # no work left to disturb: no more windows
        pool, window = event.value
        up = sum(not pool.is_down(node) for node in range(pool.nodes)) if pool.installed else 0
        for job in sorted((j for j in sim.running.values() if j.alloc.pool is pool), key=lambda j: j.index):
            sim.evict(job, now, graceful=True)
        for node in range(pool.nodes):
            pool.take_down(node)
        self.down.append((now, now + window.duration, up * pool.per_node))
        sim.calendar.at(now + window.duration, self._on_end, pool)
        sim.calendar.at(now + window.every, self._on_start, (pool, window))
        sim.capacity_changed(now)

    def _on_end(self, event) -> None:
        pool = event.value
        for node in range(pool.nodes):
            pool.bring_up(node)
        self.sim.capacity_changed(self.sim.now)

    def timeline(self, builder, outcome) -> None:
        down = np.array(self.down, dtype=float).reshape(-1, 3)
        builder.changes(down[:, 0], down_gpus=down[:, 2])
        builder.changes(down[:, 1], down_gpus=-down[:, 2])

    def finish(self, outcome) -> None:
        down = np.array(self.down, dtype=float).reshape(-1, 3)
        outcome.summary["maintenance_gpu_hours"] = float(((down[:, 1] - down[:, 0]) * down[:, 2]).sum() / 3600.0)


def build(setup) -> list:
    windows = getattr(setup.scenario, SECTION, None)
    if not windows:
        return []
    pools = {pool.name: pool for pool in setup.cluster.pools}
    for i, window in enumerate(windows):
        if window.pool not in pools:
            raise CapsimError(f"no pool named {window.pool!r}; pools: {', '.join(pools)}",
                              source=setup.scenario.source, where=f"{SECTION}[{i}].pool")
        restore = setup.scenario.scheduler.preemption.restore
        if window.every - window.duration <= restore:
            # A window checkpoints the pool's jobs and the next one comes before a resumed job has
            # finished restoring: a job it interrupts would make no progress again, and the windows
            # (which recur while work is left) would go on for ever.
            raise CapsimError(f"the pool is up for {format_span(window.every - window.duration)} between "
                              f"windows, no longer than a resumed job's restore "
                              f"({format_span(restore)}, scheduler.preemption.restore): a job the windows "
                              "interrupt would never finish", source=setup.scenario.source,
                              where=f"{SECTION}[{i}].every")
    return [Maintenance([(pools[w.pool], w) for w in windows])]
