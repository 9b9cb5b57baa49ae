"""The project's own CSV / Parquet job lists."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

CSV = """\
job_id,submit_time,gpus,duration,user,vc,status,recorded_start_time,priority
a,3600,8,2h,u1,research,completed,3700,2
b,0,1,90,u2,prod,Killed,10,
c,10,0,5,u2,prod,completed,10,
"""


def test_csv_round_trip_keeps_submit_times_and_optional_columns(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(CSV)
    load = load_trace(path, "csv")
    assert load.dropped == {"cpu_only": 1} and "origin" not in load.jobs.attrs
    jobs = load.jobs.set_index("job_id")
    assert jobs.loc["a", ["submit_time", "gpus", "duration", "user", "vc", "status", "priority", "recorded_wait"]
                    ].tolist() == [3600.0, 8, 7200.0, "u1", "research", "completed", 2.0, 100.0]
    assert jobs.loc["b", ["status", "status_raw", "recorded_wait"]].tolist() == ["cancelled", "Killed", 10.0]
    assert list(load.jobs["job_id"]) == ["b", "a"]


def test_missing_column_and_bad_value(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,submit_time,duration\na,0,5\n")
    with pytest.raises(CapsimError, match="gpus") as err:
        load_trace(path, "csv")
    assert err.value.source == str(path)
    path.write_text("job_id,submit_time,gpus,duration\na,0,1,5\nb,1,1.5,5\nc,2,1,-3\n")
    with pytest.raises(CapsimError) as err:
        load_trace(path, "csv")
    assert err.value.where == "line 3" and "gpus" in str(err.value)
    lenient = load_trace(path, "csv", strict=False)
    assert lenient.skipped == 2 and list(lenient.jobs["job_id"]) == ["a"]


def test_parquet_round_trip_and_row_numbers(tmp_path):
    frame = pd.DataFrame({"job_id": ["x", "y"], "submit_time": [5.0, 1.0], "gpus": [2, 4],
                          "duration": [10.0, 20.0], "vc": ["v1", None]})
    path = tmp_path / "jobs.parquet"
    frame.to_parquet(path)
    jobs = load_trace(path).jobs  # format from the extension
    assert jobs[["job_id", "submit_time", "gpus", "duration"]].values.tolist() == [["y", 1.0, 4, 20.0],
                                                                                  ["x", 5.0, 2, 10.0]]
    assert jobs["vc"].isna().tolist() == [True, False]
    frame.loc[1, "duration"] = -1.0
    frame.to_parquet(path)
    with pytest.raises(CapsimError) as err:
        load_trace(path, "parquet")
    assert err.value.where == "line 2"
