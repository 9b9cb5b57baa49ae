"""The notebook-first API: build / step / collect, a job table as a DataFrame, policies as classes or
"module:Class" references."""

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import simulator
from simulator.errors import CapsimError
from simulator.policies.fifo import Fifo
from tests.helpers import jobs as job_table
from tests.helpers import run_jobs, scenario_dict

SCENARIO = scenario_dict([(2, 8)], [{"kind": "synthetic", "jobs": 300, "arrival": {"process": "poisson",
                                     "rate_per_hour": 30}, "gpus": {"choice": [1, 4, 8, 16], "weights": [4, 2, 2, 1]},
                                     "duration": {"dist": "exponential", "mean": "40m"}}], policy="easy-backfill")


def _equal(a, b):
    assert_frame_equal(a.jobs, b.jobs)
    assert_frame_equal(a.timeline, b.timeline)
    assert a.summary == b.summary


def test_a_job_table_passed_in_runs_as_the_same_trace_from_a_file(tmp_path):
    rng = np.random.default_rng(5)
    table = job_table(submit_time=np.sort(rng.uniform(0, 3600, 60)).round(1), gpus=rng.choice([1, 2, 8], 60),
                      duration=rng.uniform(60, 1800, 60).round(1))
    from_file = run_jobs(table, pools=((2, 8),), policy="easy-backfill")
    no_workload = {k: v for k, v in SCENARIO.items() if k != "workload"}
    passed = simulator.run(no_workload, jobs=table.sample(frac=1.0, random_state=1), progress=False)  # any order
    assert_frame_equal(passed.jobs, from_file.jobs)
    with pytest.raises(CapsimError, match="workload: required key is missing"):
        simulator.run(no_workload, progress=False)
    with pytest.raises(CapsimError, match="missing column"):
        simulator.run(SCENARIO, jobs=table.drop(columns="gpus"), progress=False)
    with pytest.raises(CapsimError, match="DataFrame"):
        simulator.run(SCENARIO, jobs=[1, 2], progress=False)


def test_build_run_until_collect_equals_run_and_stops_half_way():
    whole = simulator.run(SCENARIO, progress=False)
    sim = simulator.build(SCENARIO, progress=False)
    assert sim.run(until=2 * 3600.0) is None and not sim.finished
    assert sim.now == 2 * 3600.0
    queued = {job.id for job in sim.policy.queue.values()}
    running = {job.id for job in sim.running.values()}
    jobs = whole.jobs.set_index("job_id")
    # half-way, the queue holds exactly the jobs submitted by then that had not started
    assert queued == set(jobs.index[(jobs["submit_time"] <= 7200) & (jobs["start_time"] > 7200)])
    assert running == set(jobs.index[(jobs["start_time"] <= 7200) & (jobs["end_time"] > 7200)])
    with pytest.raises(CapsimError, match="has not finished"):
        simulator.collect(sim)
    sim.run(until=5 * 3600.0)
    assert sim.run() is not None and sim.finished
    _equal(simulator.collect(sim), whole)


def test_policies_as_classes_references_and_names_run_alike():
    by_name = simulator.run(SCENARIO, policy="fifo", progress=False)
    by_class = simulator.run(SCENARIO, policy=Fifo, progress=False)
    by_ref = simulator.run({**SCENARIO, "scheduler": {"policy": "simulator.policies.fifo:Fifo"}}, progress=False)
    assert_frame_equal(by_class.jobs, by_name.jobs)
    assert_frame_equal(by_ref.jobs, by_name.jobs)
    assert by_class.summary["policy"] == "simulator.policies.fifo:Fifo"


@pytest.mark.parametrize(("ref", "match"), [("no_such_module_xyz:P", "cannot import module"),
                                             ("simulator.policies.fifo:Nope", "has no 'Nope'"),
                                             ("__main__:NotThere", "defined in a notebook"),
                                             ("simulator.units:parse_duration", "not a Policy subclass")])
def test_bad_policy_references_are_one_clear_error(ref, match):
    with pytest.raises(CapsimError, match=match):
        simulator.run({**SCENARIO, "scheduler": {"policy": ref}}, progress=False)


def test_a_reference_reaches_worker_processes(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    import yaml

    sweep_file.write_text(yaml.safe_dump({"name": "refs", "seeds": 2, "base": SCENARIO,
                                          "axes": {"scheduler.policy": ["fifo", "simulator.policies.fifo:Fifo"]},
                                          "metrics": ["mean_wait_s"]}))
    res = simulator.sweep(sweep_file, workers=2, progress=False)
    means = res.points["mean_wait_s_mean"].to_numpy()
    assert means[0] == means[1]
    assert isinstance(res.points, pd.DataFrame)
