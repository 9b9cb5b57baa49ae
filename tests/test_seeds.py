"""`capsim run --seeds N` (and the scenario's `seeds:`): every summary figure's mean over the seeds with
its 95% interval; a single-seed run says it is one sample."""

import json
import math

import pytest
from click.testing import CliRunner
from scipy import stats

import simulator
from simulator.cli import main
from simulator.experiment.seeds import aggregate_summaries
from simulator.report.summary import one_sample_note, summary_rows
from simulator.results import Results

SMALL = """\
name: small
seed: 3
cluster:
  pools:
    - {name: p, device: h100-sxm, nodes: 2, devices_per_node: 8}
workload:
  - kind: synthetic
    jobs: 300
    gpus: {choice: [1, 8], weights: [0.8, 0.2]}
    arrival: {process: poisson, rate_per_hour: 6}
    duration: {dist: exponential, mean: 1h}
"""


def test_seeds_5_on_the_default_scenario(tmp_path):
    result = CliRunner().invoke(main, ["run", "--seeds", "5", "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["seeds"] == [7, 8, 9, 10, 11] and summary["seed"] == 7
    per_seed = [row["p95_wait_s"] for row in summary["per_seed"]]
    # each seed's value is what a single-seed run of that seed gives
    assert per_seed == [simulator.run(simulator.default_scenario(), seed=s).summary["p95_wait_s"]
                        for s in range(7, 12)]
    mean, half = summary["p95_wait_s"], summary["p95_wait_s_ci95"]
    assert mean == pytest.approx(sum(per_seed) / 5)
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / 4)
    assert half == pytest.approx(stats.t.ppf(0.975, 4) * sd / math.sqrt(5))  # the t-interval of the mean
    assert mean - half <= mean <= mean + half and half > 0
    assert min(per_seed) < mean < max(per_seed)  # this workload's p95 wait varies from seed to seed
    # every number has its interval; the cluster's size is the same in every seed, exactly
    assert summary["gpus_total"] == 512 and summary["gpus_total_ci95"] == 0.0
    assert "peak_pflops_bf16_ci95" in summary and "gpu_utilization_ci95" in summary
    shown = dict(line.split("  ", 1) for line in result.stdout.splitlines() if "  " in line)
    assert "seeds 7–11, mean ± 95% interval" in shown["scenario"]
    assert " ± " in shown["queueing delay p95 / p99"]
    assert result.stdout.splitlines()[-1].startswith("p95 wait by seed: 7: 12.4h, 8: 3.89h")
    assert "jobs and timeline of seed 7" in result.stderr
    # the folder is one run's set: the first seed's jobs and timeline, the summary over the seeds
    again = Results.read(tmp_path / "o")
    assert again.seed == 7 and again.summary["seeds"] == [7, 8, 9, 10, 11]
    assert len(again.jobs) == summary["per_seed"][0]["jobs_submitted"]
    report = CliRunner().invoke(main, ["report", str(tmp_path / "o")])
    assert report.exit_code == 0, report.output
    assert "seeds 7–11, mean ± 95% interval" in (tmp_path / "o" / "report.html").read_text()


def test_a_single_seed_run_says_it_is_one_sample(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    result = CliRunner().invoke(main, ["run", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("one sample (seed 3)")
    assert "--seeds 5" in result.stdout.splitlines()[-1]
    as_json = CliRunner().invoke(main, ["run", str(path), "--no-progress", "--json"])
    assert json.loads(as_json.stdout)["seed"] == 3  # stdout stays JSON; the note goes to stderr
    assert "one sample (seed 3)" in as_json.stderr


def test_the_note_says_how_far_p95_wait_moved_when_it_moved_a_lot():
    first = {"seed": 7, "p95_wait_s": 12.4 * 3600}
    moved = one_sample_note(first, {"seed": 8, "p95_wait_s": 3.89 * 3600})
    assert "moved a lot" in moved and "12.4h here, 3.89h with seed 8" in moved
    steady = one_sample_note(first, {"seed": 8, "p95_wait_s": 12.0 * 3600})
    assert "moved" not in steady and steady.startswith("one sample (seed 7)")
    assert "moved" not in one_sample_note({"seed": 1, "p95_wait_s": 0.0}, {"seed": 2, "p95_wait_s": 120.0})
    assert "moved" not in one_sample_note(first, None)


def test_the_scenario_key_and_the_option(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL + "seeds: 3\n")
    three = CliRunner().invoke(main, ["run", str(path), "--json", "--no-progress"])
    assert three.exit_code == 0, three.output
    assert json.loads(three.stdout)["seeds"] == [3, 4, 5]
    assert "p95 wait by seed: 3:" in three.stderr
    shifted = json.loads(CliRunner().invoke(main, ["run", str(path), "--json", "--seed", "10"]).stdout)
    assert shifted["seeds"] == [10, 11, 12]
    one = CliRunner().invoke(main, ["run", str(path), "--json", "--seeds", "1"])
    assert "seeds" not in json.loads(one.stdout) and "one sample (seed 3)" in one.stderr
    bad = CliRunner().invoke(main, ["run", str(path), "--seeds", "0"])
    assert bad.exit_code != 0


def test_aggregating_summaries():
    runs = [{"seed": 1, "scenario": "s", "n": 10, "w": 1.0, "services": {"chat": {"ttft_p50_s": 0.1}}},
            {"seed": 2, "scenario": "s", "n": 10, "w": 3.0, "services": {"chat": {"ttft_p50_s": 0.3}}}]
    out = aggregate_summaries(runs)
    assert out["seed"] == 1 and out["scenario"] == "s"
    assert out["n"] == 10 and out["n_ci95"] == 0.0
    assert out["w"] == 2.0 and out["w_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2))
    assert out["services"]["chat"]["ttft_p50_s"] == pytest.approx(0.2)
    assert "ttft_p50_s_ci95" in out["services"]["chat"]
    rows = dict(summary_rows({**{k: 0.0 for k in ("mean_wait_s", "p50_wait_s", "p95_wait_s", "p99_wait_s",
                                                  "mean_jct_s", "gpu_utilization", "makespan_s")},
                              "jobs_submitted": 10.5, "jobs_completed": 10.5, "jobs_submitted_ci95": 1.25,
                              "jobs_completed_ci95": 1.25, "seeds": [1, 2]}))
    assert rows["jobs submitted / completed"] == "10.5 ± 1.2 / 10.5 ± 1.2"
