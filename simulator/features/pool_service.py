"""Pools entering and leaving service: an expansion is installed `available_from` after the first
submission; a retiring pool stops taking jobs `drain_before` its `available_until` and, then, its
jobs checkpoint (no work lost), requeue and may move."""

from __future__ import annotations

import math

from simulator.engine.features import Source


class PoolService(Source):
    def __init__(self, windows: list):
        """`windows`: (pool, available_from, available_until or None, drain_before or None), in seconds
        after the first submission."""
        self.windows = windows
        self.sim = None

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for pool, since, until, _ in self.windows:
            pool.in_service_from = t0 + since if since > 0 else -math.inf
            pool.in_service_until = t0 + until if until is not None else math.inf
        for pool, since, _, _ in self.windows:
            if since > 0:
                sim.calendar.at(t0 + since, self._on_install, pool)
        for pool, _, until, _ in self.windows:
            if until is not None:
                sim.calendar.at(t0 + until, self._on_retire, pool)
        for pool, _, until, drain in self.windows:
            if drain is not None:
                sim.calendar.at(t0 + (until - drain), self._on_drain, pool)

    def _on_install(self, event) -> None:
        event.value.install()
        self.sim.capacity_changed(self.sim.now)

    def _on_drain(self, event) -> None:
        """A pool due to retire stops taking new jobs; those on it run on."""
        sim = self.sim
        sim.cluster.stop_placing(event.value)
        sim.view.placement_changed()
        sim.capacity_changed(sim.now)

    def _on_retire(self, event) -> None:
        sim, now, pool = self.sim, self.sim.now, event.value
        for job in sorted((j for j in sim.running.values() if j.alloc.pool is pool), key=lambda j: j.index):
            sim.evict(job, now, graceful=True)
        pool.retire()
        sim.capacity_changed(now)


def build(setup) -> list:
    windows = [(pool, p.available_from, p.available_until, p.drain_before)
               for p, pool in zip(setup.scenario.cluster.pools, setup.cluster.pools, strict=True)
               if p.available_from > 0 or p.available_until is not None]
    return [PoolService(windows)] if windows else []
