"""load_trace dispatch: formats, options, guessing, and the shipped samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.errors import CapsimError
from simulator.workload.traces import FORMATS, guess_format, load_trace

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "traces" / "samples"


def test_unknown_format_lists_the_known_ones(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("job_id,submit_time,gpus,duration\n")
    with pytest.raises(CapsimError) as err:
        load_trace(path, "borg")
    for name in ("csv", "parquet", "helios", "philly", "pai", "alibaba2023", "acme", "sacct", "swf"):
        assert name in str(err.value)


def test_unknown_option_and_missing_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("job_id,submit_time,gpus,duration\n")
    with pytest.raises(CapsimError, match="gpus_per_proc"):
        load_trace(path, "csv", gpus_per_proc=2)
    with pytest.raises(CapsimError, match="no such file"):
        load_trace(tmp_path / "nope.csv", "csv")


@pytest.mark.parametrize(("name", "first_line", "expected"), [
    ("cluster_log.csv", "", "helios"),
    ("venus.csv", "job_id,user,vc,gpu_num,cpu_num,node_num,state", "helios"),
    ("kalos.csv", "job_id,user,node_num,gpu_num,cpu_num", "acme"),
    ("pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli", "alibaba2023"),
    ("out.txt", "JobID|User|Submit", "sacct"),
    ("log.txt", "; Version: 2.2", "swf"),
    ("jobs.json", "[", "philly"),
    ("mine.csv", "job_id,submit_time,gpus,duration", "csv"),
])
def test_guess_format(tmp_path, name, first_line, expected):
    path = tmp_path / name
    path.write_text(first_line + "\n")
    assert guess_format(path) == expected


def test_every_format_has_a_shipped_sample_that_loads():
    samples = sorted(p for p in SAMPLES.iterdir() if p.name != "README.md" and "task_table" not in p.name)
    formats = {load_trace(p).format for p in samples}
    assert formats == set(FORMATS)
    for path in samples:
        load = load_trace(path)
        assert len(load.jobs) > 0 and load.skipped == 0, path.name
