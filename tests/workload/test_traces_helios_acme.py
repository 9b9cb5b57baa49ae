"""Helios cluster_log.csv and Acme trace_*.csv: written here in the real formats, loaded, every field checked."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

HELIOS_HEADER = "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
HELIOS_ROWS = [
    "6013,u1,vcA,8,48,1,COMPLETED,2020-04-01 00:00:05,2020-04-01 00:00:10,2020-04-01 01:00:10,3600,5",
    "6014,u2,vcB,0,4,1,COMPLETED,2020-04-01 00:01:00,2020-04-01 00:01:00,2020-04-01 00:01:30,30,0",
    "6015,u1,vcA,16,96,2,CANCELLED,2020-04-01 00:02:00,2020-04-01 00:12:00,2020-04-01 00:13:00,60,600",
    "6016,u3,vcB,1,6,1,NODE_FAIL,2020-04-01 00:00:00,2020-04-01 00:00:30,2020-04-01 00:05:30,300,30",
    "6017,u3,vcB,2,6,1,CANCELLED,2020-04-01 00:03:00,,,,",
]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_helios_round_trip_maps_every_field(tmp_path):
    load = load_trace(write(tmp_path, "cluster_log.csv", HELIOS_HEADER + "\n".join(HELIOS_ROWS) + "\n"), "helios")
    jobs = load.jobs.set_index("job_id")
    assert list(load.jobs["job_id"]) == ["6016", "6013", "6015"]  # sorted by submission
    assert load.rows == 5 and load.skipped == 0
    assert load.dropped == {"cpu_only": 1, "never_started": 1}
    assert load.jobs.attrs["origin"] == "2020-04-01T00:00:00"
    assert jobs.loc["6013", ["submit_time", "gpus", "duration", "recorded_start_time", "recorded_wait"]].tolist() \
        == [5.0, 8, 3600.0, 10.0, 5.0]
    assert jobs.loc["6015", ["user", "vc", "status", "status_raw", "cpus", "nodes"]].tolist() \
        == ["u1", "vcA", "cancelled", "CANCELLED", 96.0, 2.0]
    assert jobs.loc["6016", ["status", "status_raw", "recorded_wait"]].tolist() == ["failed", "NODE_FAIL", 30.0]


def test_recorded_start_minus_submit_is_the_recorded_wait_exactly(tmp_path):
    load = load_trace(write(tmp_path, "cluster_log.csv", HELIOS_HEADER + "\n".join(HELIOS_ROWS) + "\n"), "helios")
    jobs = load.jobs
    assert ((jobs["recorded_start_time"] - jobs["submit_time"]) == jobs["recorded_wait"]).all()
    # and it is the trace's own `queue` column
    assert dict(zip(jobs["job_id"], jobs["recorded_wait"], strict=True)) == {"6013": 5.0, "6015": 600.0, "6016": 30.0}


def test_cpu_only_jobs_kept_on_request(tmp_path):
    path = write(tmp_path, "cluster_log.csv", HELIOS_HEADER + "\n".join(HELIOS_ROWS) + "\n")
    load = load_trace(path, "helios", keep_cpu_only=True)
    assert load.jobs.set_index("job_id").loc["6014", "gpus"] == 0
    assert "cpu_only" not in load.dropped


def test_strict_error_names_file_and_line(tmp_path):
    rows = HELIOS_ROWS[:2] + ["6099,u1,vcA,two,4,1,COMPLETED,2020-04-01 00:00:05,2020-04-01 00:00:10,,5,5"]
    path = write(tmp_path, "cluster_log.csv", HELIOS_HEADER + "\n".join(rows) + "\n")
    with pytest.raises(CapsimError) as err:
        load_trace(path, "helios")
    assert err.value.source == str(path) and err.value.where == "line 4"
    assert "gpu_num" in str(err.value) and "whole number" in str(err.value)


def test_bad_time_and_extra_field_lines_are_reported_or_skipped(tmp_path):
    rows = HELIOS_ROWS[:1] + ["", "7000,u1,vcA,1,4,1,COMPLETED,yesterday,2020-04-01 00:00:10,,5,5",
                              "7001,u1,vcA,1,4,1,COMPLETED,2020-04-01 00:00:05,2020-04-01 00:00:10,,5,5,extra"]
    path = write(tmp_path, "cluster_log.csv", HELIOS_HEADER + "\n".join(rows) + "\n")
    with pytest.raises(CapsimError) as err:
        load_trace(path, "helios")
    assert err.value.where == "line 5"  # the extra-field line is found while parsing, before values
    lenient = load_trace(path, "helios", strict=False)
    assert lenient.skipped == 2 and list(lenient.jobs["job_id"]) == ["6013"]
    assert sum(lenient.skipped_reasons.values()) == 2
    with pytest.raises(CapsimError) as err:
        load_trace(write(tmp_path, "c2.csv", HELIOS_HEADER + "\n".join(rows[:3]) + "\n"), "helios")
    assert err.value.where == "line 4" and "submit_time" in str(err.value)


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path, "cluster_log.csv", "job_id,user,vc,cpu_num\n1,u,v,2\n")
    with pytest.raises(CapsimError, match="gpu_num"):
        load_trace(path, "helios")


ACME_HEADER = ("job_id,user,node_num,gpu_num,cpu_num,mem_per_pod_GB,shared_mem_per_pod,type,state,submit_time,"
               "start_time,end_time,fail_time,stop_time,duration,queue,gpu_time\n")
ACME_ROWS = [
    "dlcA,uf1,8,64,960,1000,100.0,Pretrain,FAILED,2023-05-17 11:00:58+00:00,2023-05-17 11:01:08+00:00,"
    "2023-05-17 11:01:16+00:00,2023-05-17 11:01:16+00:00,,8,10.0,512.0",
    "dlcB,uf2,1,1,16,100,10.0,SFT,COMPLETED,2023-05-17 11:00:00+00:00,2023-05-17 11:02:00+00:00,"
    "2023-05-17 12:02:00+00:00,,,3600,120.0,3600.0",
    "dlcC,uf2,1,0,8,10,1.0,Other,COMPLETED,2023-05-17 11:05:00+00:00,2023-05-17 11:05:00+00:00,"
    "2023-05-17 11:05:10+00:00,,,10,0.0,0.0",
]


def test_acme_round_trip_with_zone_offsets(tmp_path):
    load = load_trace(write(tmp_path, "trace_kalos.csv", ACME_HEADER + "\n".join(ACME_ROWS) + "\n"), "acme")
    jobs = load.jobs.set_index("job_id")
    assert load.jobs.attrs["origin"] == "2023-05-17T11:00:00+00:00"
    assert load.dropped == {"cpu_only": 1}
    assert jobs.loc["dlcA", ["submit_time", "gpus", "duration", "recorded_start_time", "recorded_wait"]].tolist() \
        == [58.0, 64, 8.0, 68.0, 10.0]
    assert jobs.loc["dlcB", ["user", "job_type", "status", "status_raw", "nodes", "cpus"]].tolist() \
        == ["uf2", "SFT", "completed", "COMPLETED", 1.0, 16.0]
    assert "vc" not in load.jobs
    assert np.array_equal(load.jobs["recorded_start_time"] - load.jobs["submit_time"], load.jobs["recorded_wait"])


def test_acme_brief_layout_loads_by_column_name(tmp_path):
    header = "job_id,user,node_num,gpu_num,cpu_num,type,state,submit_time,start_time,end_time,duration,queue\n"
    row = "j1,u,1,4,8,Debug,TIMEOUT,2023-06-01 00:00:00+00:00,2023-06-01 00:00:03+00:00,2023-06-01 00:10:03+00:00,600,3\n"
    jobs = load_trace(write(tmp_path, "trace_seren.csv", header + row), "acme").jobs
    assert jobs[["gpus", "duration", "recorded_wait", "status"]].iloc[0].tolist() == [4, 600.0, 3.0, "failed"]
