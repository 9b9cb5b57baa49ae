"""trace_stats on a job list whose figures are worked out by hand, and `capsim workload stats`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from simulator.workload.cli import workload
from simulator.workload.stats import trace_stats

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "traces" / "samples"


def test_trace_stats_by_hand():
    jobs = pd.DataFrame({
        "job_id": ["a", "b", "c", "d", "e"],
        "submit_time": [0.0, 10.0, 20.0, 30.0, 40.0],
        "gpus": [1, 1, 8, 16, 0],
        "duration": [100.0, 200.0, 300.0, 400.0, 5.0],
        "gpu_fraction": [0.5, None, None, None, None],
        "status": ["completed", "completed", "failed", "cancelled", "completed"],
        "recorded_wait": [0.0, 10.0, 20.0, None, 1.0],
    })
    stats = trace_stats(jobs)
    assert stats["jobs"] == 5 and stats["gpu_jobs"] == 4 and stats["cpu_only_jobs"] == 1
    assert stats["mean_runtime_s"] == 250.0 and stats["median_runtime_s"] == 250.0
    assert stats["p90_runtime_s"] == pytest.approx(370.0)
    assert stats["mean_gpus"] == pytest.approx((0.5 + 1 + 8 + 16) / 4) and stats["median_gpus"] == 4.5
    assert stats["single_gpu_share"] == 0.5
    gpu_time = [50.0, 200.0, 2400.0, 6400.0]
    assert stats["large_job_gpu_time_share"] == pytest.approx((2400 + 6400) / sum(gpu_time))
    assert stats["gpu_hours"] == pytest.approx(sum(gpu_time) / 3600)
    assert stats["status_shares"] == {"completed": 0.5, "failed": 0.25, "cancelled": 0.25, "other": 0.0}
    assert stats["mean_wait_s"] == 10.0 and stats["median_wait_s"] == 10.0  # GPU jobs with a wait
    json.dumps(stats)  # JSON-ready: no NaN or numpy scalars that json cannot write


def test_trace_stats_of_nothing_is_defined():
    empty = pd.DataFrame({"job_id": [], "submit_time": [], "gpus": [], "duration": []})
    stats = trace_stats(empty)
    assert stats["jobs"] == 0 and stats["mean_runtime_s"] is None and stats["large_job_gpu_time_share"] is None


def test_cli_table_and_json():
    runner = CliRunner()
    table = runner.invoke(workload, ["stats", str(SAMPLES / "helios_cluster_log.csv")])
    assert table.exit_code == 0, table.output
    assert "CPU-only jobs dropped" in table.output and "queueing delay mean / median" in table.output
    out = runner.invoke(workload, ["stats", str(SAMPLES / "helios_cluster_log.csv"), "--json"])
    figures = json.loads(out.output)
    assert figures["format"] == "helios" and figures["records"] == 6 and figures["cpu_only_dropped"] == 1
    assert figures["gpu_jobs"] == 5 and figures["median_runtime_s"] == 7200.0
    assert figures["mean_wait_s"] == pytest.approx((5 + 0 + 1800 + 60 + 2) / 5)


def test_cli_errors_and_options(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "cluster_log.csv"
    bad.write_text((SAMPLES / "helios_cluster_log.csv").read_text().replace(",8,48,", ",eight,48,"))
    strict = runner.invoke(workload, ["stats", str(bad)])
    assert strict.exit_code != 0 and "line 2" in strict.output
    lenient = runner.invoke(workload, ["stats", str(bad), "--lenient", "--json"])
    assert json.loads(lenient.output)["skipped_malformed"] == 1
    swf = runner.invoke(workload, ["stats", str(SAMPLES / "sample.swf"), "--gpus-per-proc", "0.5", "--json"])
    assert json.loads(swf.output)["mean_gpus"] == pytest.approx((4 + 1 + 8 + 2) / 4)


def test_lenient_table_counts_each_kind_of_bad_row(tmp_path):
    bad = tmp_path / "cluster_log.csv"
    lines = (SAMPLES / "helios_cluster_log.csv").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",8,48,", ",eight,48,")
    lines[2] = lines[2].replace(",120,0\n", ",120\n")  # cut short
    lines[3] = lines[3].replace(",0,4,", f",{2 ** 63},4,")
    bad.write_text("".join(lines))
    out = CliRunner().invoke(workload, ["stats", str(bad), "--lenient"])
    assert out.exit_code == 0, out.output
    assert "skipped malformed rows" in out.output and "skipped, by what was wrong:" in out.output
    assert "expected 12 fields separated by ','" in out.output and "< 2^63" in out.output


def test_a_lenient_trace_in_a_scenario_warns_once_with_each_kind_counted(tmp_path):
    import simulator

    bad = tmp_path / "cluster_log.csv"
    bad.write_text((SAMPLES / "helios_cluster_log.csv").read_text().replace(",8,48,", ",eight,48,"))
    scenario = {
        "name": "lenient",
        "cluster": {"pools": [{"name": "big", "device": "v100-sxm-32gb", "nodes": 4, "devices_per_node": 8}]},
        "workload": [{"kind": "trace", "format": "helios", "path": str(bad), "strict": False}],
        "scheduler": {"policy": "fifo"},
    }
    with pytest.warns(UserWarning, match=r"skipped 1 malformed row\(s\): column 'gpu_num'") as caught:
        simulator.run(scenario, progress=False)
    assert sum("malformed" in str(w.message) for w in caught) == 1
