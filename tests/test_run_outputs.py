"""The run contract: files, summary keys, determinism, the embedded default scenario."""

import json

from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.metrics.summary import SUMMARY_KEYS
from tests.helpers import jobs, run_jobs
from tests.test_bad_input import GOOD


def test_outputs_and_summary_keys(tmp_path):
    result = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "o"), "--seed", "3", "--periods", "7d"])
    assert result.exit_code == 0, result.output
    assert "GPU util" in result.output and "energy MWh" in result.output  # the weekly table
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert 0 < summary["gpu_utilization"] <= 1
    assert summary["p50_wait_s"] <= summary["p95_wait_s"] <= summary["p99_wait_s"]
    res = simulator.run(simulator.default_scenario(), seed=3, progress=False)
    assert summary["jobs_completed"] == res.summary["jobs_completed"] == len(res.jobs)


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        simulator.run(GOOD, progress=False).write(tmp_path / name)
    for f in ("jobs.parquet", "timeline.parquet", "summary.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    simulator.run(GOOD, seed=5, progress=False).write(tmp_path / "c")
    assert (tmp_path / "c" / "jobs.parquet").read_bytes() != (tmp_path / "a" / "jobs.parquet").read_bytes()


def test_python_api_returns_dataframes():
    res = simulator.run(GOOD, progress=False)
    assert list(res.jobs.columns[:4]) == ["job_id", "user", "vc", "submit_time"]
    assert {"time_s", "busy_gpus", "utilization", "queued_jobs"} <= set(res.timeline.columns)
    assert res.timeline["time_s"].is_monotonic_increasing


def test_timeline_is_the_state_after_each_instant(tmp_path):
    # One 8-GPU node: a (8 GPUs) runs 0-10; b (4 GPUs) arrives at 2, waits, runs 10-15.
    res = run_jobs(jobs(submit_time=[0, 2], gpus=[8, 4], duration=[10, 5]))
    rows = res.timeline[["time_s", "busy_gpus", "queued_jobs", "running_jobs"]].values.tolist()
    assert rows == [[0, 8, 0, 1], [2, 8, 1, 1], [10, 4, 0, 1], [15, 0, 0, 0]]


def test_summary_json_is_valid_json_even_with_a_figure_that_is_not_finite(tmp_path):
    import json

    from simulator.results import Results

    res = run_jobs(jobs(submit_time=[0, 2], gpus=[8, 4], duration=[10, 5]))
    res.summary.update(odd=float("nan"), far=float("inf"), nested={"x": float("-inf")})
    res.write(tmp_path)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert summary["odd"] is None and summary["far"] is None and summary["nested"] == {"x": None}
    assert Results.read(tmp_path).summary["jobs_completed"] == 2
