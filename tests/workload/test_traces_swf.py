"""Standard Workload Format: an 18-field file with a comment header written here, loaded, fields checked."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

SWF = """\
; Version: 2.2
; Computer: a made-up cluster
; UnixStartTime: 1000000000
; MaxProcs: 64
1 100 20 3600 8 -1 -1 8 7200 -1 1 3 1 -1 2 1 -1 -1
2 50 -1 60 -1 -1 -1 4 -1 -1 0 4 1 -1 -1 -1 -1 -1
3 70 5 -1 4 -1 -1 4 600 -1 5 4 1 -1 1 1 -1 -1
4 80 0 10 -1 -1 -1 -1 60 -1 1 4 1 -1 1 1 -1 -1

5 90 10 300 16 -1 -1 16 900 -1 5 7 2 -1 1 2 -1 -1
"""


def write(tmp_path, text):
    path = tmp_path / "trace.swf"
    path.write_text(text)
    return path


def test_swf_round_trip(tmp_path):
    load = load_trace(write(tmp_path, SWF), "swf")
    assert load.rows == 5 and load.dropped == {"unknown_runtime": 1, "unknown_processors": 1}
    assert load.jobs.attrs["origin"] == 1000000050.0  # UnixStartTime + earliest submit
    jobs = load.jobs.set_index("job_id")
    first = jobs.loc["1"]
    assert [first[c] for c in ("submit_time", "gpus", "duration", "recorded_start_time", "recorded_wait",
                               "estimate", "status", "status_raw", "user", "vc", "partition")] \
        == [50.0, 8, 3600.0, 70.0, 20.0, 7200.0, "completed", "1", "3", "2", "1"]
    requested_only = jobs.loc["2"]  # allocated unknown: the request is used; wait unknown
    assert [requested_only["gpus"], requested_only["status"]] == [4, "failed"]
    assert pd.isna(requested_only["vc"]) and pd.isna(requested_only["recorded_wait"])
    assert jobs.loc["5", "status"] == "cancelled"
    timed = load.jobs.dropna(subset=["recorded_start_time"])
    assert (timed["recorded_start_time"] - timed["submit_time"] == timed["recorded_wait"]).all()


def test_gpus_per_proc_maps_processors_to_devices(tmp_path):
    load = load_trace(write(tmp_path, SWF), "swf", gpus_per_proc=0.125)
    assert dict(zip(load.jobs["job_id"], load.jobs["gpus"], strict=True)) == {"2": 1, "1": 1, "5": 2}
    with pytest.raises(CapsimError, match="gpus_per_proc"):
        load_trace(write(tmp_path, SWF), "swf", gpus_per_proc=0)


def test_malformed_lines(tmp_path):
    bad = SWF.replace("4 80 0 10", "4 80 0 ten")
    with pytest.raises(CapsimError) as err:
        load_trace(write(tmp_path, bad), "swf")
    assert err.value.where == "line 8" and "field 4 (run)" in str(err.value)
    short = SWF.replace("2 50 -1 60 -1 -1 -1 4 -1 -1 0 4 1 -1 -1 -1 -1 -1", "2 50 -1 60")
    with pytest.raises(CapsimError, match="18 whitespace-separated fields") as err:
        load_trace(write(tmp_path, short), "swf")
    assert err.value.where == "line 6"
    lenient = load_trace(write(tmp_path, short), "swf", strict=False)
    assert lenient.skipped == 1 and lenient.rows == 5
