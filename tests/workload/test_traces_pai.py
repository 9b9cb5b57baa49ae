"""Alibaba PAI 2020: headerless job and task tables written here, joined, every mapped field checked."""

from __future__ import annotations

import math

import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

JOB_TABLE = """\
4b3f04b66a525d2df903eb16,8cb3bec23d14,58540f191766,Terminated,4550879.0,4551416.0
job_ps_worker,inst2,user2,Failed,4550000.0,4553000.0
job_cpu,inst3,user2,Terminated,4550100.0,4550200.0
job_waiting,inst4,user3,Waiting,4551000.0,
job_running,inst5,user3,Running,4551100.0,
job_no_tasks,inst6,user3,Terminated,4551200.0,4551300.0
"""
TASK_TABLE = """\
4b3f04b66a525d2df903eb16,tensorflow,1.0,Terminated,4550900.0,4551416.0,600.0,29.296875,50.0,MISC
job_ps_worker,ps,1.0,Failed,4550010.0,4553000.0,600.0,10.0,0.0,
job_ps_worker,worker,2.0,Failed,4550020.0,4553000.0,400.0,20.0,100.0,V100
job_ps_worker,evaluator,1.0,Failed,4550030.0,4553000.0,400.0,20.0,50.0,T4
job_cpu,worker,1.0,Terminated,4550100.0,4550200.0,200.0,1.0,,
job_waiting,worker,1.0,Waiting,,,600.0,10.0,100.0,
job_running,worker,1.0,Running,4551150.0,,600.0,10.0,100.0,P100
"""


@pytest.fixture
def tables(tmp_path):
    (tmp_path / "pai_job_table.csv").write_text(JOB_TABLE)
    (tmp_path / "pai_task_table.csv").write_text(TASK_TABLE)
    return tmp_path


def test_pai_round_trip_joins_tasks(tables):
    load = load_trace(tables / "pai_job_table.csv", "pai")
    assert load.rows == 6
    assert load.dropped == {"cpu_only": 1, "no_tasks": 1, "never_started": 1, "unfinished": 1}
    assert load.jobs.attrs["origin"] == 4550000.0
    jobs = load.jobs.set_index("job_id")
    frac = jobs.loc["4b3f04b66a525d2df903eb16"]
    assert [frac[c] for c in ("submit_time", "gpus", "gpu_fraction", "duration", "recorded_start_time",
                              "recorded_wait", "user", "status", "status_raw", "gpu_type", "cpus")] \
        == [879.0, 1, 0.5, 516.0, 900.0, 21.0, "58540f191766", "completed", "Terminated", "MISC", 6.0]
    multi = jobs.loc["job_ps_worker"]
    # 2 x 100% + 1 x 50% = 2.5 GPUs -> 3 devices; the largest task names the type; first task start = start
    assert [multi["gpus"], multi["gpu_type"], multi["recorded_wait"], multi["duration"], multi["status"]] \
        == [3, "V100", 10.0, 2990.0, "failed"]
    assert math.isnan(multi["gpu_fraction"])
    assert multi["cpus"] == 6.0 + 8.0 + 4.0 and multi["memory_mib"] == (10 + 40 + 20) * 1024
    assert (load.jobs["recorded_start_time"] - load.jobs["submit_time"] == load.jobs["recorded_wait"]).all()


def test_task_table_elsewhere_and_missing(tables, tmp_path):
    moved = tmp_path / "tasks.csv"
    (tables / "pai_task_table.csv").rename(moved)
    with pytest.raises(CapsimError, match="task table"):
        load_trace(tables / "pai_job_table.csv", "pai")
    assert len(load_trace(tables / "pai_job_table.csv", "pai", task_table=moved).jobs) == 2


def test_malformed_task_row_names_the_task_file_line(tables):
    lines = TASK_TABLE.splitlines()
    lines[2] = lines[2].replace(",2.0,", ",two,")
    (tables / "pai_task_table.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(CapsimError) as err:
        load_trace(tables / "pai_job_table.csv", "pai")
    assert err.value.source.endswith("pai_task_table.csv") and err.value.where == "line 3"
    lenient = load_trace(tables / "pai_job_table.csv", "pai", strict=False)
    assert lenient.skipped == 1 and "pai_task_table.csv: column 'inst_num'" in next(iter(lenient.skipped_reasons))
