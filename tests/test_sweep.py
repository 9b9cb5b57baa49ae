"""Sweeps: points and seeds expand as written, each run is the run it names, and the statistics are right."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

import simulator
from simulator.cli import main
from simulator.errors import CapsimError
from simulator.experiment import executors, load_sweep, sweep
from simulator.experiment.stats import aggregate, compare
from simulator.experiment.sweep import parse_key_path, set_key_path
from simulator.metrics.summary import SUMMARY_METRICS
from simulator.oracles import erlang_c_mean_wait
from tests.helpers import scenario_dict


def base(jobs=400, servers=4, rate=3.0):
    return scenario_dict([(servers, 1)], [{
        "kind": "synthetic", "jobs": jobs, "arrival": {"process": "poisson", "rate_per_hour": rate},
        "gpus": {"choice": [1, 2], "weights": [0.8, 0.2]}, "duration": {"dist": "exponential", "mean": "1h"},
    }])


def test_key_paths():
    assert parse_key_path("cluster.pools[0].nodes") == ["cluster", "pools", 0, "nodes"]
    assert parse_key_path("workload[1].arrival.rate_per_hour") == ["workload", 1, "arrival", "rate_per_hour"]
    for bad in ("", "[0].x", "cluster..pools", "cluster.pools[x]", ".seed"):
        with pytest.raises(ValueError):
            parse_key_path(bad)
    data = {"cluster": {"pools": [{"nodes": 1}]}}
    set_key_path(data, "cluster.pools[0].nodes", 5)
    set_key_path(data, "cluster.pools[1]", {"nodes": 2})  # one past the end appends (a purchase)
    set_key_path(data, "failures.repair", "2h")  # a missing mapping is created
    assert data == {"cluster": {"pools": [{"nodes": 5}, {"nodes": 2}]}, "failures": {"repair": "2h"}}
    with pytest.raises(ValueError, match=r"index 3 is out of range: cluster.pools has 2 item"):
        set_key_path(data, "cluster.pools[3].nodes", 1)
    with pytest.raises(ValueError, match="is not a list"):
        set_key_path(data, "cluster[0]", 1)


def test_points_are_the_product_of_cases_and_axes_and_share_seeds():
    spec = load_sweep({"base": base(), "seeds": 3, "axes": {"scheduler.policy": ["fifo", "sjf"],
                                                             "cluster.pools[0].nodes": [4, 5, 6]},
                       "cases": [{"name": "a"}, {"name": "b", "set": {"seed": 11}}]})
    assert len(spec.points) == 2 * 2 * 3 and spec.runs == 36
    assert spec.seeds == [1, 2, 3]  # the base scenario's seed and the next ones
    assert spec.label_columns == ["case", "scheduler.policy", "cluster.pools[0].nodes"]
    last = spec.points[-1]
    assert last.labels == {"case": "b", "scheduler.policy": "sjf", "cluster.pools[0].nodes": 6}
    assert last.scenario.cluster.pools[0].nodes == 6 and last.scenario.scheduler.policy == "sjf"


def test_each_run_is_the_scenario_it_names():
    res = sweep({"base": base(), "seeds": [3, 4], "axes": {"scheduler.policy": ["fifo", "easy-backfill"],
                                                           "cluster.pools[0].nodes": [4, 6]}})
    assert len(res.runs) == 8
    for row in res.runs.itertuples(index=False):
        scen = base()
        scen["scheduler"] = {"policy": row[1]}
        scen["cluster"]["pools"][0]["nodes"] = row[2]
        direct = simulator.run(scen, seed=row.seed, progress=False).summary
        assert row.p95_wait_s == direct["p95_wait_s"] and row.gpu_utilization == direct["gpu_utilization"]


def test_worker_processes_give_the_serial_result_and_files(tmp_path):
    spec = {"base": base(), "seeds": 2, "axes": {"scheduler.policy": ["fifo", "sjf", "tiresias"]}}
    serial = sweep(spec, workers=1, out_dir=tmp_path / "a")
    parallel = sweep(spec, workers=2, out_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(serial.runs, parallel.runs)
    for name in ("runs.parquet", "points.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resume_reuses_kept_runs_and_reruns_a_changed_point(tmp_path, monkeypatch):
    spec = {"base": base(), "seeds": 2, "axes": {"scheduler.policy": ["fifo", "sjf"]}}
    first = sweep(spec, out_dir=tmp_path)
    kept = sorted((tmp_path / "runs").glob("*.json"))
    assert len(kept) == 4 and all("summary" in json.loads(p.read_text()) for p in kept)
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    again = sweep(spec, out_dir=tmp_path, resume=True)
    assert ran == [] and again.runs.equals(first.runs)
    spec["axes"]["scheduler.policy"] = ["fifo", "srtf"]  # one point changed: only its runs run
    sweep(spec, out_dir=tmp_path, resume=True)
    assert [t.scenario.scheduler.policy for t in ran] == ["srtf", "srtf"]


def test_resume_keys_runs_by_the_contents_of_their_files(tmp_path, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    trace = folder / "jobs.csv"
    trace.write_text("job_id,submit_time,gpus,duration\na,0,1,3600\nb,60,1,3600\n")
    scen = scenario_dict([(1, 1)], [{"kind": "trace", "format": "csv", "path": "jobs.csv"}])
    _write(folder / "base.yaml", scen)
    (folder / "s.yaml").write_text("scenario: base.yaml\nseeds: 1\n")
    first = sweep(str(folder / "s.yaml"), out_dir=folder / "o")
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    trace.write_text("job_id,submit_time,gpus,duration\na,0,1,36000\nb,60,1,3600\n")  # same path, new contents
    changed = sweep(str(folder / "s.yaml"), out_dir=folder / "o", resume=True)
    assert len(ran) == 1 and changed.runs["mean_wait_s"][0] > first.runs["mean_wait_s"][0]
    moved = tmp_path / "moved"
    folder.rename(moved)  # the same files elsewhere: the kept runs still count
    again = sweep(str(moved / "s.yaml"), out_dir=moved / "o", resume=True)
    assert len(ran) == 1 and again.runs.equals(changed.runs)


@pytest.mark.parametrize("kept", ["", "{\"key\": ", "[]", "{\"key\": \"other\", \"summary\": {}}", b"\xff\xfe"])
def test_a_kept_run_that_cannot_be_read_back_is_run_again(tmp_path, monkeypatch, kept):
    spec = {"base": base(), "seeds": 1}
    first = sweep(spec, out_dir=tmp_path)
    [path] = (tmp_path / "runs").glob("*.json")
    path.write_bytes(kept.encode() if isinstance(kept, str) else kept)  # empty, cut short, another's, not text
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    result = CliRunner().invoke(main, ["sweep", str(_write(tmp_path / "s.yaml", spec)), "--out", str(tmp_path),
                                       "--resume", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(ran) == 1 and json.loads(path.read_text())["key"] == path.stem  # run again, and kept again
    assert pd.read_parquet(tmp_path / "runs.parquet").equals(first.runs)


def test_the_inputs_of_a_run_are_the_files_its_scenario_names(tmp_path):
    from simulator.experiment.inputs import input_digests, scenario_inputs
    from simulator.scenario import scenario_from_data
    from simulator.workload.presets import presets_dir

    (tmp_path / "jobs.csv").write_text("job_id,submit_time,gpus,duration\na,0,1,60\n")
    shutil.copy(presets_dir() / "philly.yaml", tmp_path / "mine.yaml")
    data = scenario_dict([(1, 8)], [{"kind": "trace", "path": "jobs.csv"},
                                    {"kind": "preset", "path": "mine.yaml", "jobs": 10},
                                    {"kind": "preset", "name": "philly", "jobs": 10}])
    scenario = scenario_from_data(data, base_dir=tmp_path)
    assert scenario_inputs(scenario) == [tmp_path / "jobs.csv", tmp_path / "mine.yaml", presets_dir() / "philly.yaml"]
    before = input_digests(scenario)
    (tmp_path / "mine.yaml").write_text((tmp_path / "mine.yaml").read_text() + "\n# edited\n")
    after = input_digests(scenario)
    assert after["files"][0] == before["files"][0] and after["files"][1] != before["files"][1]
    (tmp_path / "jobs.csv").unlink()
    assert input_digests(scenario)["files"][0] == "missing"


def test_ci_is_the_student_t_interval():
    values = np.array([3.0, 5.0, 4.0, 9.0, 7.0])
    runs = pd.DataFrame({"p": ["x"] * 5 + ["y"], "m": [*values, 1.0]})
    table = aggregate(runs, ["p"], ["m"]).set_index("p")
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert table.loc["x", "m_mean"] == pytest.approx(values.mean())
    assert table.loc["x", "m_ci95"] == pytest.approx((high - low) / 2)
    assert math.isnan(table.loc["y", "m_ci95"]) and table.loc["y", "seeds"] == 1


def test_paired_difference_pairs_the_same_seed_and_other_labels():
    runs = pd.DataFrame({"policy": ["fifo", "fifo", "sjf", "sjf"] * 2, "nodes": [4] * 4 + [8] * 4,
                         "seed": [0, 1] * 4, "w": [10.0, 20.0, 7.0, 15.0, 5.0, 6.0, 5.0, 4.0]})
    table = compare(runs, "w", {"policy": "fifo"}, ["policy", "nodes"]).set_index(["policy", "nodes"])
    assert table.loc[("sjf", 4), "w_diff_mean"] == pytest.approx(((7 - 10) + (15 - 20)) / 2)
    assert table.loc[("sjf", 8), "w_diff_mean"] == pytest.approx(((5 - 5) + (4 - 6)) / 2)
    assert table.loc[("fifo", 4), "w_diff_mean"] == 0.0
    with pytest.raises(ValueError, match="not labels"):
        compare(runs, "w", {"scheduler": "fifo"}, ["policy", "nodes"])


def test_erlang_c_inside_the_interval_over_seeds():
    # M/M/8 at load 0.7: the mean wait over independent replications brackets the closed form.
    servers, mean_service, load = 8, 3600.0, 0.7
    rate = load * servers * 3600.0 / mean_service
    scen = scenario_dict([(servers, 1)], [{"kind": "synthetic", "jobs": 20_000, "duration": {
        "dist": "exponential", "mean": mean_service}, "arrival": {"process": "poisson", "rate_per_hour": rate},
        "gpus": 1}])
    res = sweep({"base": scen, "seeds": 8, "metrics": ["mean_wait_s"]}, workers=2)
    row = res.points.iloc[0]
    expected = erlang_c_mean_wait(servers, rate / 3600.0, mean_service)
    assert abs(row["mean_wait_s_mean"] - expected) <= row["mean_wait_s_ci95"], (row, expected)
    assert row["mean_wait_s_ci95"] < 0.2 * expected  # and the interval is informative


@pytest.mark.parametrize("spec,where,message", [
    ({"seeds": 2, "axis": {}}, "axis", "unknown key"),
    ({"metrics": ["p95_wait"]}, "metrics", "unknown metric"),
    ({"seeds": 0}, "seeds", "count >= 1"),
    ({"axes": {"cluster.pools[3].nodes": [1]}}, "axes.cluster.pools[3].nodes", "out of range"),
    ({"axes": {"scheduler.policy": ["fifo", "nope"]}}, "point scheduler.policy=nope", "unknown policy"),
    ({"axes": {"cluster.pools[0].node": [1]}}, "cluster.pools[0].node", "unknown key"),
    ({"metrics": ["cost_usd"]}, "metrics", "cost_usd needs `cost:`"),
])
def test_bad_sweeps_name_where(tmp_path, spec, where, message):
    with pytest.raises(CapsimError) as err:
        load_sweep({"base": base(), **spec})
    assert where in str(err.value) and message in str(err.value)


def test_cli_runs_a_sweep_file_and_reports_errors(tmp_path):
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base()))
    (tmp_path / "s.yaml").write_text("scenario: base.yaml\nseeds: 2\naxes:\n  scheduler.policy: [fifo, sjf]\n")
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"),
                                       "--workers", "1", "--baseline", "scheduler.policy=fifo"])
    assert result.exit_code == 0, result.output
    assert "p95_wait_s" in result.output and "paired differences" in result.output
    assert (tmp_path / "o" / "points.parquet").exists()
    typo = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--baseline", "policy=fifo"])
    assert typo.exit_code == 2 and "not labels" in typo.output and "seeds" not in typo.output
    bad = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--resume"])
    assert bad.exit_code == 2 and "--out" in bad.output
    (tmp_path / "t.yaml").write_text("scenario: missing.yaml\n")
    missing = CliRunner().invoke(main, ["sweep", str(tmp_path / "t.yaml")])
    assert missing.exit_code == 1 and "t.yaml" in missing.output and "missing.yaml" in missing.output


def test_every_number_a_summary_holds_is_a_known_metric():
    scen = base(jobs=300)
    scen.update(cost={"usd_per_kwh": 0.1}, failures={"device_mtbf": "200h"})
    scen["scheduler"] = {"policy": "tiresias"}
    summary = simulator.run(scen, progress=False).summary
    numbers = {k for k, v in summary.items() if isinstance(v, int | float) and k != "seed"}
    assert {"cost_usd", "failures", "energy_kwh"} <= numbers
    assert numbers <= set(SUMMARY_METRICS)


def test_periods_are_each_runs_table_and_their_means_over_seeds(tmp_path):
    spec = {"base": base(jobs=600), "seeds": [1, 2, 3], "periods": "2d", "metrics": ["p95_wait_s", "gpu_utilization"],
            "axes": {"scheduler.policy": ["fifo", "sjf"]}}
    res = sweep(spec, out_dir=tmp_path)
    direct = simulator.run({**base(jobs=600), "scheduler": {"policy": "sjf"}}, seed=2, progress=False).by_period("2d")
    mine = res.periods[(res.periods["scheduler.policy"] == "sjf") & (res.periods["seed"] == 2)]
    pd.testing.assert_frame_equal(mine[direct.columns].reset_index(drop=True), direct, check_dtype=False)
    fifo = res.periods[res.periods["scheduler.policy"] == "fifo"]
    expected = fifo.groupby("period")["gpu_utilization"].mean()
    got = res.period_points[res.period_points["scheduler.policy"] == "fifo"].set_index("period")
    pd.testing.assert_series_equal(got["gpu_utilization_mean"], expected, check_names=False)
    assert (tmp_path / "periods.parquet").exists() and (tmp_path / "period_points.parquet").exists()
    result = CliRunner().invoke(main, ["sweep", "--workers", "1", str(_write(tmp_path / "s.yaml", spec))])
    assert result.exit_code == 0 and "p95_wait_s by period of 2d" in result.output, result.output


def test_asking_for_periods_reruns_kept_runs_that_lack_them(tmp_path, monkeypatch):
    spec = {"base": base(), "seeds": 1}
    sweep(spec, out_dir=tmp_path)
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    again = sweep({**spec, "periods": "1d"}, out_dir=tmp_path, resume=True)
    assert len(ran) == 1 and again.periods is not None and len(again.periods)


def _write(path, spec):
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return path


def test_resume_keys_a_module_class_policy_by_its_source_file(tmp_path, monkeypatch):
    """A policy given as module:Class is keyed by its module's file: an edited policy reruns, an
    untouched one is reused, and a built-in policy's key does not change."""
    folder = tmp_path / "pol"
    folder.mkdir()
    module = folder / "capsim_test_policy_mod.py"
    module.write_text("from simulator.policies.fifo import Fifo\n\n\nclass Mine(Fifo):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    spec = {"base": base(jobs=40), "seeds": 1,
            "axes": {"scheduler.policy": ["fifo", "capsim_test_policy_mod:Mine"]}}
    sweep(spec, out_dir=tmp_path / "o", workers=1)
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    sweep(spec, out_dir=tmp_path / "o", workers=1, resume=True)
    assert ran == []  # nothing changed: both kept
    module.write_text("from simulator.policies.fifo import Fifo\n\n\nclass Mine(Fifo):\n    '''edited'''\n")
    sweep(spec, out_dir=tmp_path / "o", workers=1, resume=True)
    assert [t.scenario.scheduler.policy for t in ran] == ["capsim_test_policy_mod:Mine"]
    from simulator.experiment.inputs import input_digests

    fifo = next(p.scenario for p in load_sweep(spec).points if p.scenario.scheduler.policy == "fifo")
    assert "policy" not in input_digests(fifo)
