"""Entries on SimPy's calendar at a fraction of a Timeout's cost.

The engine puts two entries per job on the calendar (its arrival and its completion). A SimPy
`Timeout` spends about half a microsecond of Python on bookkeeping this engine never reads (its
environment, delay, trigger state); at a million jobs that is a second. `Due` is all that
`Environment.step` needs from an entry: a `callbacks` list and `_ok`. Dues go onto the
Environment's own queue in SimPy's entry format (time, priority, insertion id, event), so they and
ordinary SimPy events share one clock and one order. `tests/test_calendar.py` pins that format.
"""

from __future__ import annotations

from heapq import heappush

import simpy
from simpy.events import NORMAL


class Due:
    """A calendar entry: `callbacks` run at its time with the entry itself; `value` is their payload."""

    __slots__ = ("callbacks", "_value")
    _ok = True  # read by Environment.step: a Due never fails

    @property
    def value(self):
        return self._value


class Calendar:
    """The parts of a SimPy Environment the engine schedules onto."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.queue = env._queue  # SimPy's heap of (time, priority, id, event)
        self.ids = env._eid  # SimPy's insertion counter: ties at one time keep insertion order

    def at(self, time: float, handler, value=None) -> Due:
        """Call `handler(due)` at absolute `time` (the hot paths in the engine inline this)."""
        due = Due()
        due.callbacks = [handler]
        due._value = value
        heappush(self.queue, (time, NORMAL, next(self.ids), due))
        return due

    def next_time(self) -> float:
        """The time of the earliest entry, inf when none is left (Environment.peek without the call)."""
        queue = self.queue
        return queue[0][0] if queue else float("inf")
