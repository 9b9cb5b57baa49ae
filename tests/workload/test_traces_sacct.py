"""Slurm `sacct -P` output written here (steps included), loaded, fields checked."""

from __future__ import annotations

import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import load_trace

SACCT = """\
JobID|User|Account|Partition|Submit|Start|End|Elapsed|State|AllocTRES|Timelimit
1001|alice|nlp|gpu|2024-03-01T10:00:00|2024-03-01T10:05:00|2024-03-01T12:05:00|02:00:00|COMPLETED|billing=16,cpu=16,gres/gpu:a100=2,gres/gpu=2,mem=128G,node=1|1-00:00:00
1001.batch||nlp||2024-03-01T10:05:00|2024-03-01T10:05:00|2024-03-01T12:05:00|02:00:00|COMPLETED|cpu=16,gres/gpu=2,mem=128G,node=1|
1001.extern||nlp||2024-03-01T10:05:00|2024-03-01T10:05:00|2024-03-01T12:05:00|02:00:00|COMPLETED|billing=16,cpu=16,gres/gpu=2,mem=128G,node=1|
1002|bob|vision|gpu|2024-03-01T09:00:00|2024-03-01T09:00:10|2024-03-01T09:10:10|00:10:00|CANCELLED by 5021|cpu=64,gres/gpu=16,mem=1T,node=2|UNLIMITED
1003_1|bob|vision|cpu|2024-03-01T09:30:00|2024-03-01T09:30:00|2024-03-02T10:30:00|1-01:00:00|TIMEOUT|cpu=4,mem=8G,node=1|1-01:00:00
1004|carol|nlp|gpu|2024-03-01T11:00:00|Unknown|Unknown|00:00:00|PENDING||04:00:00
1005|carol|nlp|gpu|2024-03-01T11:30:00|2024-03-01T11:31:00|Unknown|00:29:00|RUNNING|cpu=8,gres/gpu=1,mem=64G,node=1|04:00:00
"""


def write(tmp_path, text):
    path = tmp_path / "jobs.sacct"
    path.write_text(text)
    return path


def test_sacct_round_trip_skips_steps(tmp_path):
    load = load_trace(write(tmp_path, SACCT), "sacct")
    assert load.rows == 5  # steps are not records
    assert load.dropped == {"cpu_only": 1, "never_started": 1, "unfinished": 1}
    assert load.jobs.attrs["origin"] == "2024-03-01T09:00:00"
    jobs = load.jobs.set_index("job_id")
    first = jobs.loc["1001"]
    assert [first[c] for c in ("submit_time", "gpus", "duration", "recorded_start_time", "recorded_wait", "user",
                               "vc", "partition", "status", "status_raw", "cpus", "memory_mib", "nodes",
                               "gpu_type", "estimate")] \
        == [3600.0, 2, 7200.0, 3900.0, 300.0, "alice", "nlp", "gpu", "completed", "COMPLETED", 16.0,
            131072.0, 1.0, "a100", 86400.0]
    cancelled = jobs.loc["1002"]
    assert [cancelled["gpus"], cancelled["status"], cancelled["memory_mib"], cancelled["recorded_wait"]] \
        == [16, "cancelled", 1024.0 ** 2, 10.0]
    assert (load.jobs["recorded_start_time"] - load.jobs["submit_time"] == load.jobs["recorded_wait"]).all()


def test_epoch_times_and_trailing_separator(tmp_path):
    text = "JobID|Submit|Start|End|State|AllocTRES|\n7|1700000000|1700000060|1700000660|FAILED|gres/gpu=4|\n"
    load = load_trace(write(tmp_path, text), "sacct")
    assert load.jobs.attrs["origin"] == 1700000000.0
    assert load.jobs[["gpus", "duration", "recorded_wait", "status"]].iloc[0].tolist() == [4, 600.0, 60.0, "failed"]


def test_bad_rows_name_their_lines(tmp_path):
    lines = SACCT.splitlines()
    lines[4] = lines[4].replace("00:10:00", "ten minutes")
    with pytest.raises(CapsimError) as err:
        load_trace(write(tmp_path, "\n".join(lines) + "\n"), "sacct")
    assert err.value.where == "line 5" and "Elapsed" in str(err.value)
    lines = SACCT.splitlines()
    lines[1] = lines[1] + "|extra"
    with pytest.raises(CapsimError) as err:
        load_trace(write(tmp_path, "\n".join(lines) + "\n"), "sacct")
    assert err.value.where == "line 2"
    lenient = load_trace(write(tmp_path, "\n".join(lines) + "\n"), "sacct", strict=False)
    assert lenient.skipped == 1 and list(lenient.jobs["job_id"]) == ["1002"]


def test_missing_alloc_tres_column_is_named(tmp_path):
    with pytest.raises(CapsimError, match="AllocTRES"):
        load_trace(write(tmp_path, "JobID|Submit|Start|End|State\n1|2024-01-01T00:00:00|||PENDING\n"), "sacct")


def test_never_started_job_counts_its_requested_gpus_not_cpu_only(tmp_path):
    text = ("JobID|Submit|Start|End|State|AllocTRES|ReqTRES\n"
            "1|2024-01-01T00:00:00|None|Unknown|CANCELLED by 0||cpu=8,gres/gpu=4,node=1\n"
            "2|2024-01-01T00:00:05|2024-01-01T00:00:10|2024-01-01T00:01:10|COMPLETED|gres/gpu=1|gres/gpu=1\n")
    load = load_trace(write(tmp_path, text), "sacct")
    assert load.dropped == {"never_started": 1} and list(load.jobs["job_id"]) == ["2"]
