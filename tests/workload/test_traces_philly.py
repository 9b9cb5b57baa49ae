"""Philly cluster_job_log (JSON with attempts): written here in the real layout, loaded, fields checked."""

from __future__ import annotations

import json

import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

JOBS = [
    {"status": "Pass", "vc": "6214e9", "jobid": "application_1506638472019_10238", "user": "a1",
     "submitted_time": "2017-10-03 02:26:11",
     "attempts": [{"start_time": "2017-10-03 02:27:00", "end_time": "2017-10-03 03:00:00",
                   "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}, {"ip": "m2", "gpus": ["gpu3", "gpu4"]}]},
                  {"start_time": "2017-10-03 03:10:00", "end_time": "2017-10-03 04:27:00",
                   "detail": [{"ip": "m5", "gpus": ["gpu0"]}]}]},
    {"status": "Killed", "vc": "b436b2", "jobid": "application_2", "user": "a2",
     "submitted_time": "2017-10-03 02:00:00",
     "attempts": [{"start_time": "2017-10-03 02:00:30", "end_time": "2017-10-03 02:10:30",
                   "detail": [{"ip": "m3", "gpus": ["gpu2"]}]}]},
    {"status": "Failed", "vc": "b436b2", "jobid": "application_3", "user": "a2",
     "submitted_time": "2017-10-03 02:05:00", "attempts": []},
    {"status": "Failed", "vc": "b436b2", "jobid": "application_4", "user": "a3",
     "submitted_time": "2017-10-03 02:06:00",
     "attempts": [{"start_time": "2017-10-03 02:07:00", "end_time": None, "detail": [{"ip": "m4", "gpus": ["g"]}]}]},
]


def write(tmp_path, jobs, indent=2):
    path = tmp_path / "cluster_job_log"
    path.write_text(json.dumps(jobs, indent=indent))
    return path


def test_philly_round_trip_maps_every_field(tmp_path):
    load = load_trace(write(tmp_path, JOBS), "philly")
    jobs = load.jobs.set_index("job_id")
    assert load.rows == 4 and load.dropped == {"never_started": 1, "unfinished": 1}
    assert load.jobs.attrs["origin"] == "2017-10-03T02:00:00"
    first = jobs.loc["application_1506638472019_10238"]
    # GPUs of the first attempt; from the first start to the last end, retries included
    assert [first[c] for c in ("submit_time", "gpus", "duration", "recorded_start_time", "recorded_wait")] \
        == [1571.0, 4, 7200.0, 1620.0, 49.0]
    assert [first[c] for c in ("user", "vc", "status", "status_raw", "attempts")] \
        == ["a1", "6214e9", "completed", "Pass", 2]
    assert jobs.loc["application_2", ["status", "gpus", "duration", "recorded_wait"]].tolist() \
        == ["cancelled", 1, 600.0, 30.0]
    assert (load.jobs["recorded_start_time"] - load.jobs["submit_time"] == load.jobs["recorded_wait"]).all()


def test_malformed_job_names_its_line(tmp_path):
    broken = [JOBS[1], {"jobid": "x", "status": "Pass", "submitted_time": "2017-10-03 02:00:00",
                        "attempts": "none"}]
    path = write(tmp_path, broken)
    text = path.read_text().splitlines()
    expected_line = next(i for i, line in enumerate(text, 1) if '"jobid": "x"' in line) - 1  # its '{' line
    with pytest.raises(CapsimError) as err:
        load_trace(path, "philly")
    assert err.value.where == f"line {expected_line}" and "attempts" in str(err.value)
    lenient = load_trace(path, "philly", strict=False)
    assert lenient.skipped == 1 and list(lenient.jobs["job_id"]) == ["application_2"]


def test_unreadable_time_and_broken_json(tmp_path):
    bad_time = [dict(JOBS[1], submitted_time="03/10/2017")]
    with pytest.raises(CapsimError, match="submitted_time") as err:
        load_trace(write(tmp_path, bad_time, indent=None), "philly")
    assert err.value.where == "line 1"
    path = tmp_path / "broken.json"
    path.write_text('[\n{"jobid": 1,\n "status": }\n]')
    with pytest.raises(CapsimError, match="invalid JSON") as err:
        load_trace(path, "philly")
    assert err.value.where == "line 3"
