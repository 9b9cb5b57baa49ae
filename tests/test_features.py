"""Features plug into the core as sources and meters (engine/features.py, simulator/features/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.features import FEATURES, Setup, scenario_sections
from tests.helpers import jobs, scenario_dict

DAY = 86400.0


def maintenance_run(table, every=DAY, duration=4 * 3600.0, first=DAY / 2, policy="fifo", pools=((2, 8),)):
    scen = scenario_dict(list(pools), [], policy)
    scen["maintenance"] = [{"pool": "p0", "every": every, "duration": duration, "first": first}]
    return simulator.run(scen, jobs=table, progress=False)


def windows(res, every=DAY, duration=4 * 3600.0, first=DAY / 2):
    """The windows of a run: each starts `every` after the one before (as the source adds them), none
    once no work is left."""
    start, end = res.jobs["submit_time"].min() + first, res.jobs["end_time"].max()
    out = []
    while start < end:
        out.append((start, start + duration))
        start = start + every
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3 * DAY), st.sampled_from([1, 4, 8, 16]), st.floats(600, 2 * DAY)),
                min_size=1, max_size=25))
def test_no_job_runs_on_a_pool_in_maintenance_and_none_loses_work(rows):
    submit, gpus, duration = (list(c) for c in zip(*sorted(rows), strict=True))
    res = maintenance_run(jobs(submit_time=submit, gpus=gpus, duration=duration))
    out = res.jobs
    assert (out["status"] == "completed").all()
    assert (out["lost_gpu_s"] == 0).all()  # a window's preemption checkpoints first
    # The timeline has a row at each window's start (the devices go down then): from it to the window's
    # end every device of the pool is down and none is busy, so no run overlaps a window.
    tl = res.timeline
    for start, stop in windows(res):
        during = tl[(tl["time_s"] >= start) & (tl["time_s"] < stop)]
        assert len(during) and during["time_s"].iloc[0] == start
        assert (during["down_gpus"] == 16).all() and (during["busy_gpus"] == 0).all()
    # An uninterrupted job's only run lies outside every window.
    whole = out[out["preemptions"] == 0]
    for start, stop in windows(res):
        assert not ((whole["start_time"] < stop) & (whole["end_time"] > start)).any()


def test_maintenance_hours_are_windows_times_capacity():
    table = jobs(submit_time=[0.0, 10.0], gpus=[8, 8], duration=[3 * DAY, 3 * DAY])
    res = maintenance_run(table)
    t_end = res.jobs["end_time"].max()
    hours = sum(min(stop, t_end) - start for start, stop in windows(res) if start < t_end) * 16 / 3600
    assert res.summary["maintenance_gpu_hours"] == pytest.approx(hours)
    assert (res.jobs["preemptions"] > 0).all()  # every window moved them off the pool


def test_maintenance_names_an_unknown_pool():
    scen = scenario_dict([(1, 8)], [], "fifo")
    scen["maintenance"] = [{"pool": "nope", "every": "7d", "duration": "4h"}]
    with pytest.raises(CapsimError, match=r"maintenance\[0\]\.pool.*no pool named 'nope'"):
        simulator.run(scen, jobs=jobs(submit_time=[0.0], gpus=[1], duration=[60.0]), progress=False)


def test_a_window_as_long_as_its_cycle_is_refused():
    scen = scenario_dict([(1, 8)], [], "fifo")
    scen["maintenance"] = [{"pool": "p0", "every": "1d", "duration": "1d"}]
    with pytest.raises(CapsimError, match="duration must be shorter than every"):
        simulator.run(scen, jobs=jobs(submit_time=[0.0], gpus=[1], duration=[60.0]), progress=False)


class Counting(Source, Meter):
    """Counts the notifications and adds what it saw to the summary."""

    def __init__(self):
        self.queued = self.launched = self.released = 0

    def on_queued(self, job, now):
        self.queued += 1

    def on_launch(self, job, alloc, work):
        self.launched += 1
        return False

    def on_release(self, job, alloc, now):
        self.released += 1

    def finish(self, outcome):
        outcome.summary["launches_seen"] = self.launched


def test_a_user_feature_hears_every_queue_join_launch_and_release():
    scen = scenario_dict([(2, 8)], [{"kind": "synthetic", "jobs": 300, "arrival": {"process": "poisson",
                         "rate_per_hour": 20}, "gpus": {"choice": [1, 8, 16]},
                         "duration": {"dist": "exponential", "mean": "1h"}}], "tiresias")
    scen["failures"] = {"device_mtbf": "500h", "repair": "1h"}
    counting = Counting()
    res = simulator.run(scen, progress=False, features=[counting])
    runs = len(res.jobs) + int(res.jobs["preemptions"].sum())  # every run ends in a completion or an interruption
    assert counting.launched == counting.released == runs == res.summary["launches_seen"]
    assert counting.queued == runs  # a queue join before every run
    plain = simulator.run(scen, progress=False)
    pd.testing.assert_frame_equal(plain.jobs, res.jobs)  # listening changes nothing


def test_a_simpy_process_runs_beside_the_engine():
    ticks = []

    class Clock(Source):
        def start(self, sim, t0):
            def tick(env):
                while len(ticks) < 5:
                    yield env.timeout(3600.0)
                    ticks.append((env.now, len(sim.running)))
            sim.env.process(tick(sim.env))

    res = simulator.run(scenario_dict([(1, 8)], [], "fifo"), progress=False, features=[Clock()],
                        jobs=jobs(submit_time=[0.0, 0.0], gpus=[8, 8], duration=[3 * 3600.0, 3 * 3600.0]))
    assert [t for t, _ in ticks] == [3600.0 * k for k in range(1, 6)]
    # At 3 h the first job ends; the pass that starts the second is deferred behind the tick of that instant.
    assert [n for _, n in ticks] == [1, 1, 0, 1, 1]
    assert res.jobs["end_time"].tolist() == [3 * 3600.0, 6 * 3600.0]


def test_simpys_own_run_and_step_drive_the_engine_to_the_same_results():
    scen = scenario_dict([(2, 8)], [{"kind": "synthetic", "jobs": 200, "arrival": {"process": "poisson",
                         "rate_per_hour": 30}, "gpus": {"choice": [1, 8, 16]},
                         "duration": {"dist": "exponential", "mean": "1h"}}], "easy-backfill")
    sim = simulator.build(scen, progress=False)
    sim.run(until=0)  # starts it
    sim.env.run(until=20 * 3600.0)  # SimPy's own loop, then its single steps
    for _ in range(50):
        sim.env.step()
    sim.run()
    pd.testing.assert_frame_equal(simulator.collect(sim).jobs, simulator.run(scen, progress=False).jobs)


@pytest.mark.parametrize("stream", [0, 1, 3])
def test_a_features_random_stream_is_the_child_spawn_would_give(stream):
    root = np.random.SeedSequence(42)
    setup = Setup(None, None, None, root, first_stream=3)
    expected = np.random.default_rng(np.random.SeedSequence(42).spawn(3 + stream + 1)[3 + stream])
    assert setup.rng(stream).random(5).tolist() == expected.random(5).tolist()


def test_every_feature_module_builds_and_declared_sections_reach_the_scenario():
    from simulator.scenario import Scenario

    assert set(scenario_sections()) <= set(Scenario.model_fields)
    assert len(set(FEATURES)) == len(FEATURES)


def test_something_that_is_not_a_feature_is_refused():
    with pytest.raises(CapsimError, match="must be a Source or a Meter"):
        simulator.build(scenario_dict([(1, 8)], [], "fifo"), jobs=jobs(submit_time=[0.0], gpus=[1], duration=[1.0]),
                        features=[object()])


def test_a_policy_that_suspends_at_every_pass_of_an_instant_is_stopped_with_its_name():
    from simulator.policies.base import Policy

    class Thrash(Policy):
        """Moves every running job off its devices and starts the queue again, at every pass."""

        name = "thrash"

        def place(self, now):
            for job in list(self.view.running.values()):
                self.view.suspend(job)
            return super().place(now)

    table = jobs(submit_time=[0.0, 0.0, 0.0, 10.0], gpus=[4, 4, 4, 4], duration=[100.0] * 4)
    with pytest.raises(CapsimError, match=r"'thrash' suspended jobs at 10000 scheduling passes in a row at t = 10"):
        simulator.run(scenario_dict([(1, 8)], [], "fifo"), jobs=table, policy=Thrash, progress=False)


@pytest.mark.parametrize("failures, preemption, match", [
    ({"device_mtbf": 1e-3}, {}, r"failures\.device_mtbf: 16 devices with a device MTBF of .* fail about"),
    ({"device_mtbf": 60}, {"checkpoint_interval": "1h"},
     r"a 16-device job is hit by a failure every 3\.75s.*never finish"),
])
def test_failures_under_which_a_run_cannot_end_are_refused_up_front(failures, preemption, match):
    scen = scenario_dict([(2, 8)], [], "fifo", preemption=preemption)
    scen["failures"] = failures
    table = jobs(submit_time=[0.0, 60.0], gpus=[16, 1], duration=[86400.0, 60.0])
    with pytest.raises(CapsimError, match=match):
        simulator.run(scen, jobs=table, progress=False)


def test_failures_that_make_jobs_retry_many_times_warn():
    scen = scenario_dict([(2, 8)], [], "fifo", preemption={"checkpoint_interval": "10m"})
    scen["failures"] = {"device_mtbf": "30m", "repair": 0}
    table = jobs(submit_time=[0.0], gpus=[16], duration=[3600.0])
    with pytest.warns(UserWarning, match=r"16-device job is hit by a failure every .*about 353 attempts per checkpoint"):
        res = simulator.run(scen, jobs=table, progress=False)
    assert res.jobs["status"].tolist() == ["completed"]
