"""Tiresias' Gittins-index variant (`gittins`): the same discretised queues as `tiresias`, but within a
queue the job with the highest Gittins index of its attained service goes first.

The index of a job that has received service a is max over quanta D of
P(S - a <= D | S > a) / E[min(S - a, D) | S > a]: the chance to finish within the next quantum per unit
of service spent. S (device-seconds) comes from `service_samples`, or is learned from completed jobs
(the last `window` of them, refreshed every `refresh` completions). Without any samples the order
within a queue is first come first served.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from simulator.policies.registry import register_policy
from simulator.policies.tiresias import Tiresias, TiresiasOptions


class GittinsOptions(TiresiasOptions):
    service_samples: list[float] | None = Field(default=None, description="device-seconds per job")
    window: int = Field(default=5000, ge=10)
    refresh: int = Field(default=200, ge=1)
    quanta: int = Field(default=128, ge=2, description="candidate quanta D per index evaluation")


class GittinsIndex:
    def __init__(self, samples, quanta: int):
        s = np.sort(np.asarray(samples, dtype=float))
        self.samples = s
        self.prefix = np.concatenate([[0.0], np.cumsum(s)])
        self.quanta = quanta
        self.fresh = self._index(0.0)  # most calls are for jobs that have not run yet

    def __call__(self, attained: float) -> float:
        return self.fresh if attained == 0.0 else self._index(attained)

    def _index(self, attained: float) -> float:
        s, n = self.samples, len(self.samples)
        first = int(np.searchsorted(s, attained, side="right"))  # samples with S > attained
        alive = n - first
        if alive == 0:
            return 0.0
        # Candidate quanta end exactly at sample points (where the ratio can peak), thinned for speed.
        ks = np.unique(np.linspace(first, n - 1, min(self.quanta, alive)).astype(np.int64))
        done = ks - first + 1
        quantum = s[ks] - attained
        spent = (self.prefix[ks + 1] - self.prefix[first]) - done * attained + (alive - done) * quantum
        ratio = np.where(spent > 0, done / np.maximum(spent, 1e-12), np.inf)
        return float(ratio.max())


@register_policy("gittins")
class Gittins(Tiresias):
    Options = GittinsOptions

    def __init__(self, options, view, context):
        super().__init__(options, view, context)
        self._history: list[float] = []
        self._since_refresh = 0
        given = options.service_samples
        self.index = GittinsIndex(given, options.quanta) if given else None

    def within_level(self, job) -> tuple:
        gittins = self.index(job.attained) if self.index is not None else 0.0
        return (-gittins, job.submit)

    def on_complete(self, job, now):
        super().on_complete(job, now)
        if self.options.service_samples:
            return
        self._history.append(job.gpus * job.duration)
        self._since_refresh += 1
        if self._since_refresh >= self.options.refresh:
            self._history = self._history[-self.options.window:]
            self.index = GittinsIndex(self._history, self.options.quanta)
            self._since_refresh = 0
