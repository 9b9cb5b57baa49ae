"""Alibaba GPU 2023 pod lists: a small list written here, and the real trace in ../shared when present."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
PODS = """\
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,1,460,,LS,Succeeded,427061,12902960,427070
openb-pod-0002,88000,327680,8,1000,V100M32,BE,Failed,500000,600000,500100
openb-pod-0003,4000,8192,0,0,,Burstable,Running,10,20,10
openb-pod-0004,11908,16384,1,1000,,BE,Pending,10001000,10001403,
"""
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REAL = SHARED / "data" / "traces" / "alibaba-gpu-2023" / "openb_pod_list_default.csv"


def write(tmp_path, text, name="openb_pod_list_test.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pod_list_round_trip(tmp_path):
    load = load_trace(write(tmp_path, HEADER + PODS), "alibaba2023")
    assert load.rows == 5 and load.dropped == {"cpu_only": 1, "never_started": 1}
    jobs = load.jobs.set_index("job_id")
    shared = jobs.loc["openb-pod-0001"]
    assert [shared[c] for c in ("submit_time", "gpus", "gpu_fraction", "duration", "recorded_start_time",
                                "recorded_wait", "cpus", "memory_mib", "qos", "status", "status_raw")] \
        == [427061.0, 1, 0.46, 12902960.0 - 427070, 427070.0, 9.0, 6.0, 12288.0, "LS", "completed", "Succeeded"]
    big = jobs.loc["openb-pod-0002"]
    assert [big["gpus"], big["gpu_type"], big["status"], big["duration"]] == [8, "V100M32", "failed", 99900.0]
    assert math.isnan(big["gpu_fraction"])
    assert jobs.loc["openb-pod-0000", "status"] == "other"
    assert (load.jobs["recorded_start_time"] - load.jobs["submit_time"] == load.jobs["recorded_wait"]).all()


def test_lists_without_times_and_node_lists_are_refused(tmp_path):
    with pytest.raises(CapsimError, match="no creation_time"):
        load_trace(write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1000,10,1,1000\n"), "alibaba2023")
    with pytest.raises(CapsimError, match="node list"):
        load_trace(write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn,32000,262144,8,V100\n"), "alibaba2023")


def test_bad_gpu_milli_names_its_line(tmp_path):
    with pytest.raises(CapsimError) as err:
        load_trace(write(tmp_path, HEADER + PODS.replace(",1,460,", ",1,1460,")), "alibaba2023")
    assert err.value.where == "line 3" and "gpu_milli" in str(err.value)


@pytest.mark.skipif(not REAL.is_file(), reason=f"the shared trace data is not at {SHARED} (fresh clone)")
def test_real_pod_list_counts_match_the_file():
    with REAL.open(newline="") as handle:
        pods = list(csv.DictReader(handle))
    gpu_pods = [p for p in pods if int(p["num_gpu"]) > 0]
    unscheduled_gpu_pods = [p for p in gpu_pods if p["scheduled_time"] == ""]

    load = load_trace(REAL)  # format guessed from the name
    assert load.format == "alibaba2023" and load.skipped == 0
    assert load.rows == len(pods) == 8152
    assert load.rows - load.cpu_only == len(gpu_pods) == 7064
    assert load.dropped["never_started"] == len(unscheduled_gpu_pods)
    assert len(load.jobs) == len(gpu_pods) - len(unscheduled_gpu_pods)
    fractional = sum(1 for p in gpu_pods if p["scheduled_time"] and int(p["gpu_milli"]) < 1000)
    assert int(load.jobs["gpu_fraction"].notna().sum()) == fractional
