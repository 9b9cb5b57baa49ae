"""Entries on SimPy's calendar at a fraction of a Timeout's cost, and the loop that runs them.

A SimPy `Timeout` spends about half a microsecond of Python on bookkeeping this engine never reads
(its environment, delay, trigger state); at a million jobs that is a second. `Due` is all that
`Environment.step` needs from an entry: a `callbacks` list and `_ok`. Dues go onto the
Environment's own queue in SimPy's entry format (time, priority, insertion id, event), so they and
ordinary SimPy events share one clock and one order. `tests/test_calendar.py` pins that format.

A job's completion, the one entry every job has, is leaner still: the bare tuple (time, priority,
insertion id, job, version), which `Calendar.run` hands straight to the engine's completion handler.
A serving replica's next change is the same bare tuple with the replica in it, run by the replica's
`fire(now)`; in both, an entry whose version is no longer its object's is stale and dropped.
`Calendar.run` is `Environment.run` for this mix: the same pops in the same order, one call fewer
per entry. The engine's `Environment` is SimPy's, extended the way SimPy means it to be (as
`simpy.rt.RealtimeEnvironment` does, by overriding `step`): its `step` runs completion entries too,
so SimPy's own `run()`, `step()` and processes work beside the engine's entries. The engine keeps
its own loop, which saves a call per entry (cachegrind counts in docs/benchmarks.md; in wall time the
two are within noise), and SimPy's stays available to anyone who wants it.

Both read SimPy's queue, clock and insertion counter (`_queue`, `_now`, `_eid`), as a subclass may:
`tests/test_calendar.py` pins their format, and pyproject.toml pins SimPy below 5.
"""

from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL

from simulator.errors import CapsimError

# The stall detector: the loop looks at the clock once every CHECK_EVERY entries (a countdown, not a
# test of the time per entry), and stops a run whose clock has not moved on at STALL_EVENTS looks in a
# row (the engine adds a few entries per job, as many completions may fall on one instant). Looking
# changes nothing in the run: it reads the clock and raises or returns.
CHECK_EVERY = 1 << 16
STALL_EVENTS = 1 << 21


class Due:
    """A calendar entry: `callbacks` run at its time with the entry itself; `value` is their payload."""

    __slots__ = ("callbacks", "_value")
    _ok = True  # read by Environment.step: a Due never fails

    @property
    def value(self):
        return self._value


class Environment(simpy.Environment):
    """SimPy's Environment whose queue may also hold the engine's completion entries, (time, priority,
    insertion id, job, version): `step` hands a current one to `on_completion(job, now)` and drops a
    stale one; every other entry is SimPy's own."""

    def __init__(self, initial_time: float = 0):
        super().__init__(initial_time)
        self.on_completion = None

    def step(self) -> None:
        queue = self._queue
        if queue and len(queue[0]) == 5:
            now, _, _, obj, version = heappop(queue)
            self._now = now
            if version == obj.version:
                fire = getattr(obj, "fire", None)  # a serving replica's next change; else a job's completion
                if fire is not None:
                    fire(now)
                else:
                    self.on_completion(obj, now)
            return
        super().step()


class Calendar:
    """The parts of a SimPy Environment the engine schedules onto."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.queue = env._queue  # SimPy's heap of (time, priority, id, event)
        self.ids = env._eid  # SimPy's insertion counter: ties at one time keep insertion order
        self.stall_events = STALL_EVENTS  # entries at one instant before the run is stopped as stalled
        self._still_at = float("nan")  # the clock at the last look, and entries since it last moved
        self._still = 0

    def at(self, time: float, handler, value=None) -> Due:
        """Call `handler(due)` at absolute `time` (the hot paths in the engine inline this)."""
        due = Due()
        due.callbacks = [handler]
        due._value = value
        heappush(self.queue, (time, NORMAL, next(self.ids), due))
        return due

    def completion_at(self, time: float, obj) -> None:
        """A versioned entry at `time` for `obj` at its current version: a job's completion (the end of its
        current run; the engine's launch inlines this), or a serving replica's next change."""
        heappush(self.queue, (time, NORMAL, next(self.ids), obj, obj.version))

    def run(self, job_type: type, on_completion, until: float = float("inf")) -> None:
        """Run every entry at or before `until` (all of them by default): `on_completion(job, now)` for a
        completion entry whose version is still the job's (a stale one, lazily cancelled, is dropped);
        the callbacks of any other entry, as `Environment.step` runs them. Stopping early leaves the
        clock at `until` and the later entries in place, so a second call carries on."""
        env, queue = self.env, self.queue
        left = CHECK_EVERY
        while queue:
            if queue[0][0] > until:
                env._now = until
                return
            entry = heappop(queue)
            now = env._now = entry[0]
            event = entry[3]
            left -= 1
            if not left:
                left = CHECK_EVERY
                self._look_at_clock(now, event)
            if event.__class__ is job_type:  # a completion: the hot case
                if entry[4] == event.version:
                    on_completion(event, now)
                continue
            if len(entry) == 5:  # a serving replica's next change
                if entry[4] == event.version:
                    event.fire(now)
                continue
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                raise event._value  # a failed SimPy event nobody handled, as Environment.step does

    def _look_at_clock(self, now: float, event) -> None:
        """Every CHECK_EVERY entries: a clock that has not moved on for `stall_events` entries is a stalled
        run (a Zeno run, whose steps shrink until adding them no longer changes the time, or a handler that
        re-plans at one instant without effect): stopped with one error naming the latest handler."""
        if now != self._still_at:
            self._still_at, self._still = now, 0
            return
        self._still += CHECK_EVERY
        if self._still >= self.stall_events:
            raise CapsimError(f"the run stalled: simulated time stopped at t = {now:g} s, {self._still:,} calendar "
                              f"entries in a row without the clock moving on, the latest from {_handler(event)}: a "
                              "source or policy scheduling events at ever shorter intervals, or re-planning "
                              "without effect")

    def next_time(self) -> float:
        """The time of the earliest entry, inf when none is left (Environment.peek without the call)."""
        queue = self.queue
        return queue[0][0] if queue else float("inf")


def _handler(event) -> str:
    """Who an entry calls, for the stall error: a job's completion, or its handler's class and name."""
    if not hasattr(event, "callbacks"):
        return f"the completion of job {getattr(event, 'id', '?')}"
    callbacks = event.callbacks or []
    if not callbacks:
        return "an entry without handlers"
    handler = callbacks[0]
    owner = getattr(handler, "__self__", None)
    name = getattr(handler, "__qualname__", None) or repr(handler)
    if owner is not None:
        name = f"{type(owner).__name__}.{getattr(handler, '__name__', name)}"
    policy = getattr(getattr(owner, "policy", None), "name", None)
    return f"{name} (policy {policy!r})" if policy else name
