"""The engine's lean calendar entries share SimPy's clock and ordering with ordinary SimPy events."""

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
