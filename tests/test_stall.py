"""The stall detector (engine/calendar.py): a run whose simulated time stops advancing ends with one
error naming the handler, within seconds, instead of running for ever; a run with many entries at one
instant that is not stalled is left alone."""

from __future__ import annotations

import time

import pytest

import simulator
from simulator.engine import calendar, simulation
from simulator.engine.features import Source
from simulator.errors import CapsimError

SCENARIO = {
    "name": "stall", "seed": 1,
    "cluster": {"pools": [{"name": "a", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "workload": [{"kind": "synthetic", "jobs": 5, "arrival": {"process": "poisson", "rate_per_hour": 10},
                  "gpus": 1, "duration": {"dist": "constant", "value": "1h"}}],
}


class ZenoSource(Source):
    """Schedules its next event half as far ahead as the last: the clock converges to t0 + 2 s, and
    once the step is below the clock's resolution the time no longer changes at all."""

    def __init__(self):
        self.events = 0

    def start(self, sim, t0):
        self.sim, self.step = sim, 1.0
        sim.calendar.at(t0 + self.step, self.tick)

    def tick(self, _event):
        self.events += 1
        self.step /= 2
        self.sim.calendar.at(self.sim.now + self.step, self.tick)


def test_a_zeno_source_is_stopped_with_one_clear_error():
    zeno = ZenoSource()
    start = time.perf_counter()
    with pytest.raises(CapsimError) as info:
        simulator.run(SCENARIO, features=[zeno], progress=False)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the run stalled: simulated time stopped at t = ")
    assert "ZenoSource.tick" in message and "ever shorter intervals" in message
    # Stopped at the first look past the limit (5 jobs: STALL_EVENTS + 40 entries), not before it.
    limit = calendar.STALL_EVENTS + 8 * 5
    assert limit <= zeno.events <= limit + 2 * calendar.CHECK_EVERY + 2_000
    assert elapsed < 20, elapsed


class BusyInstant(Source):
    """Many entries at one instant, then time moves on: not a stall, and the run ends normally."""

    def __init__(self, entries):
        self.left = entries

    def start(self, sim, t0):
        self.sim = sim
        sim.calendar.at(t0 + 60.0, self.tick)

    def tick(self, _event):
        self.left -= 1
        if self.left > 0:
            self.sim.calendar.at(self.sim.now, self.tick)


def test_many_entries_at_one_instant_below_the_limit_are_not_a_stall(monkeypatch):
    monkeypatch.setattr(simulation, "STALL_EVENTS", 1 << 17)  # read when the simulation is made
    res = simulator.run(SCENARIO, features=[BusyInstant(3 * calendar.CHECK_EVERY)], progress=False)
    assert res.summary["jobs_completed"] == 5


def test_the_limit_counts_entries_at_one_instant(monkeypatch):
    monkeypatch.setattr(simulation, "STALL_EVENTS", 1 << 17)
    with pytest.raises(CapsimError, match=r"BusyInstant\.tick"):
        simulator.run(SCENARIO, features=[BusyInstant(10 * calendar.CHECK_EVERY)], progress=False)
