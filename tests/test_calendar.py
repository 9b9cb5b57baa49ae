"""The engine's lean calendar entries share SimPy's clock and ordering with ordinary SimPy events."""

import pytest
import simpy

from simulator.engine.calendar import Calendar


def test_due_entries_and_simpy_timeouts_run_in_time_then_insertion_order():
    env = simpy.Environment()
    calendar = Calendar(env)
    seen = []
    calendar.at(5.0, lambda due: seen.append(("due", env.now, due.value)), "a")
    env.timeout(5.0).callbacks.append(lambda ev: seen.append(("timeout", env.now, None)))
    calendar.at(2.0, lambda due: seen.append(("due", env.now, due.value)), "b")
    calendar.at(5.0, lambda due: seen.append(("due", env.now, due.value)), "c")
    assert calendar.next_time() == 2.0
    env.run()
    assert seen == [("due", 2.0, "b"), ("due", 5.0, "a"), ("timeout", 5.0, None), ("due", 5.0, "c")]
    assert calendar.next_time() == float("inf")


def test_simpy_queue_entries_have_the_format_the_calendar_writes():
    # (time, priority, insertion id, event): if a SimPy release changes this, the engine must follow.
    env = simpy.Environment()
    event = env.timeout(3.0)
    (entry,) = Calendar(env).queue
    assert len(entry) == 4 and entry[0] == 3.0 and entry[3] is event
    assert isinstance(entry[2], int)


class _Job:
    def __init__(self, name):
        self.name, self.version = name, 0


def test_run_interleaves_completions_with_other_entries_and_drops_stale_ones():
    env = simpy.Environment()
    calendar = Calendar(env)
    seen = []
    a, b = _Job("a"), _Job("b")
    calendar.completion_at(4.0, a)
    calendar.completion_at(3.0, b)
    b.version += 1  # b was interrupted: its completion at 3.0 is stale
    calendar.completion_at(6.0, b)
    calendar.at(4.0, lambda due: seen.append(("due", env.now)))
    env.timeout(5.0).callbacks.append(lambda ev: seen.append(("timeout", env.now)))
    calendar.run(_Job, lambda job, now: seen.append((job.name, now)))
    assert seen == [("a", 4.0), ("due", 4.0), ("timeout", 5.0), ("b", 6.0)]
    assert env.now == 6.0 and calendar.next_time() == float("inf")


def test_run_raises_a_failed_event_nobody_handled_as_simpy_does():
    env = simpy.Environment()
    calendar = Calendar(env)
    event = env.event()
    event.fail(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        calendar.run(_Job, lambda job, now: None)
