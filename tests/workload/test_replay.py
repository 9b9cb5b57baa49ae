"""Replaying a trace with its recorded start times reproduces the recorded queueing delays exactly:
a check of each adapter's time handling and of the engine's clock."""

import numpy as np
import pytest

import simulator
from simulator.profiles import workloads_dir
from simulator.workload.traces import load_trace

SAMPLES = workloads_dir() / "traces" / "samples"
CASES = [("helios", "helios_cluster_log.csv", {}), ("acme", "acme_trace.csv", {}),
         ("philly", "philly_cluster_job_log.json", {}), ("alibaba2023", "alibaba2023_pod_list.csv", {}),
         ("sacct", "slurm_sacct.txt", {}), ("swf", "sample.swf", {}),
         ("pai", "pai_job_table.csv", {"task_table": str(SAMPLES / "pai_task_table.csv")})]


def replay(path, fmt, options, nodes=64):
    scenario = {
        "name": f"replay-{fmt}",
        "cluster": {"pools": [{"name": "big", "device": "v100-sxm-32gb", "nodes": nodes, "devices_per_node": 8}]},
        "workload": [{"kind": "trace", "format": fmt, "path": str(path), "options": options}],
        "scheduler": {"policy": "replay"},
    }
    return simulator.run(scenario, progress=False)


@pytest.mark.parametrize("fmt,name,options", CASES)
def test_replay_reproduces_recorded_waits(fmt, name, options):
    trace = load_trace(SAMPLES / name, fmt, **options).jobs
    res = replay(SAMPLES / name, fmt, options)
    got = res.jobs.set_index("job_id").loc[trace["job_id"], "wait_s"].to_numpy()
    assert len(trace) > 0
    np.testing.assert_array_equal(got, trace["recorded_wait"].to_numpy())


def test_replay_of_the_full_alibaba_2023_trace(shared_dir):
    path = shared_dir / "data" / "traces" / "alibaba-gpu-2023" / "openb_pod_list_default.csv"
    trace = load_trace(path, "alibaba2023").jobs
    res = replay(path, "alibaba2023", {}, nodes=2000)
    got = res.jobs.set_index("job_id").loc[trace["job_id"], "wait_s"].to_numpy()
    np.testing.assert_array_equal(got, trace["recorded_wait"].to_numpy())
    assert res.summary["jobs_completed"] == len(trace) == 6203
