"""Bad input gets one clear error naming the file, key path or line, and a non-zero exit."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet
import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.errors import CapsimError

GOOD = """\
name: t
cluster:
  pools:
    - {name: a, device: h100-sxm, nodes: 2, devices_per_node: 8}
workload:
  - kind: synthetic
    jobs: 50
    arrival: {process: poisson, rate_per_hour: 10}
    gpus: 1
    duration: {dist: exponential, mean: 1h}
"""


def _run_cli(tmp_path: Path, text: str, *args):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return CliRunner().invoke(main, ["run", str(path), *args]), path


def test_good_scenario_runs(tmp_path):
    result, _ = _run_cli(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert "jobs submitted / completed" in result.output


def test_malformed_yaml_names_the_line(tmp_path):
    result, path = _run_cli(tmp_path, GOOD.replace("nodes: 2,", "nodes: [2,"))
    assert result.exit_code != 0
    assert str(path) in result.output and "malformed YAML" in result.output and "line 4" in result.output


def test_unknown_device_names_the_key_path(tmp_path):
    result, path = _run_cli(tmp_path, GOOD.replace("h100-sxm", "h900"))
    assert result.exit_code != 0
    assert "cluster.pools[0].device (line 4)" in result.output
    assert "unknown device 'h900'" in result.output and "h200-sxm" in result.output


def test_unknown_key_is_an_error(tmp_path):
    result, _ = _run_cli(tmp_path, GOOD.replace("jobs: 50", "jobs: 50\n    jbos: 3"))
    assert result.exit_code != 0
    assert "workload[0].jbos" in result.output and "unknown key" in result.output


def test_negative_count_and_bad_duration(tmp_path):
    result, _ = _run_cli(tmp_path, GOOD.replace("nodes: 2", "nodes: -2"))
    assert result.exit_code != 0 and "cluster.pools[0].nodes" in result.output
    result, _ = _run_cli(tmp_path, GOOD.replace("mean: 1h", "mean: 1 fortnight"))
    assert result.exit_code != 0 and "workload[0].duration.mean" in result.output
    assert "expected a duration" in result.output


def _trace_scenario(tmp_path, csv_text):
    (tmp_path / "jobs.csv").write_text(csv_text)
    return GOOD.split("workload:")[0] + "workload:\n  - {kind: trace, format: csv, path: jobs.csv}\n"


def test_negative_duration_in_trace_names_the_line(tmp_path):
    text = _trace_scenario(tmp_path, "job_id,submit_time,gpus,duration\na,0,1,10\nb,5,1,-3\n")
    result, _ = _run_cli(tmp_path, text)
    assert result.exit_code != 0
    assert "jobs.csv" in result.output and "line 3" in result.output


def test_trace_missing_column(tmp_path):
    text = _trace_scenario(tmp_path, "job_id,submit_time,duration\na,0,10\n")
    result, _ = _run_cli(tmp_path, text)
    assert result.exit_code != 0
    assert "jobs.csv" in result.output and "gpus" in result.output


def test_unknown_policy_and_option(tmp_path):
    result, _ = _run_cli(tmp_path, GOOD + "scheduler: {policy: lifo}\n")
    assert result.exit_code != 0 and "scheduler.policy" in result.output and "fifo" in result.output
    result, _ = _run_cli(tmp_path, GOOD + "scheduler: {policy: fifo, quantum: 3}\n")
    assert result.exit_code != 0 and "scheduler.quantum" in result.output


def test_job_larger_than_cluster_is_rejected_not_queued(tmp_path):
    jobs = pd.DataFrame({"job_id": ["small", "huge"], "submit_time": [0, 1], "gpus": [4, 64],
                         "duration": [10, 10]})
    jobs.to_csv(tmp_path / "jobs.csv", index=False)
    text = GOOD.split("workload:")[0] + "workload:\n  - {kind: trace, format: csv, path: jobs.csv}\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.warns(UserWarning, match="huge"):
        res = simulator.run(tmp_path / "s.yaml", progress=False)
    status = res.jobs.set_index("job_id")["status"]
    assert status["huge"] == "rejected" and status["small"] == "completed"
    assert res.summary["jobs_rejected"] == 1


def test_interrupted_write_leaves_old_files_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = simulator.run(GOOD, progress=False)
    first.write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(table, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pyarrow.parquet, "write_table", fail)
    with pytest.raises(KeyboardInterrupt):
        simulator.run(GOOD, seed=99, progress=False).write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files, nothing changed


def test_api_raises_capsim_error(tmp_path):
    with pytest.raises(CapsimError, match="cluster.pools"):
        simulator.run(GOOD.replace("nodes: 2", "nodes: zero"))


def test_duplicate_key_names_the_key_and_its_line(tmp_path):
    """`nodes: 2, nodes: 400` ran with the second value; now it is refused where it stands."""
    result, path = _run_cli(tmp_path, GOOD.replace("nodes: 2,", "nodes: 2, nodes: 400,"))
    assert result.exit_code != 0
    assert f"{path}: line 4, column 45: key 'nodes' appears twice in one mapping (first on line 4)" in result.output
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: s\nscenario: scenario.yaml\nseeds: 1\nseeds: 2\n")
    with pytest.raises(CapsimError, match=r"sweep.yaml: line 4, column 1: key 'seeds' appears twice"):
        simulator.sweep(sweep)


def test_anchors_aliases_and_merges_still_work():
    ok = GOOD.replace("    - {name: a, device: h100-sxm, nodes: 2, devices_per_node: 8}",
                      "    - &a {name: a, device: h100-sxm, nodes: 2, devices_per_node: 8}\n"
                      "    - {<<: *a, name: b, nodes: 1}")
    res = simulator.run(ok, progress=False)
    assert res.summary["gpus_total"] == 24


def test_preset_names_stay_in_the_presets_folder(tmp_path):
    entry = "workload:\n  - {kind: preset, name: ../models/llama3-8b, jobs: 5}\n"
    result, _ = _run_cli(tmp_path, GOOD.split("workload:")[0] + entry)
    assert result.exit_code != 0
    assert "workload[0].name (line 6): expected the name of a shipped preset, not a path" in result.output
    from simulator.workload.presets import preset_path

    with pytest.raises(CapsimError, match="unknown preset"):
        preset_path("../models/llama3-8b")


def test_paths_in_a_scenario_resolve_from_its_folder(tmp_path, monkeypatch):
    """Traces, preset files and model files named in a scenario are found beside it, whatever the
    working directory."""
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "jobs.csv").write_text("job_id,submit_time,gpus,duration\na,0,1,10\nb,5,2,20\n")
    from simulator.workload.presets import preset_path

    (folder / "mine.yaml").write_text(preset_path("philly").read_text())
    from simulator.perf.zoo import models_dir

    (folder / "net.yaml").write_text((models_dir() / "resnet50.yaml").read_text())
    (folder / "s.yaml").write_text(GOOD.split("workload:")[0] + (
        "workload:\n"
        "  - {kind: trace, format: csv, path: jobs.csv}\n"
        "  - {kind: preset, path: mine.yaml, jobs: 5, label: mine}\n"
        "  - {kind: synthetic, name: net, jobs: 2, arrival: {process: poisson, rate_per_hour: 1}, gpus: 8,\n"
        "     model: net.yaml, samples: 1e6}\n"))
    monkeypatch.chdir(tmp_path)
    res = simulator.run(folder / "s.yaml", progress=False)
    assert res.summary["jobs_submitted"] == 9 and res.summary["jobs_completed"] == 9


def test_data_files_are_held_to_the_same_rules(tmp_path):
    from simulator.perf.profile import load_profile_yaml, profile_from_dict
    from simulator.perf.zoo import load_model, models_dir

    data = load_profile_yaml("h100-sxm")
    bad = {**data, "spec": {**data["spec"], "power": {**data["spec"]["power"], "tdp_w": float("nan")}}}
    with pytest.raises(CapsimError, match=r"spec.power.tdp_w: expected a finite number >= 0, got nan"):
        profile_from_dict(bad, source="p.yaml")
    bad = {**data, "spec": {**data["spec"], "memory_gib": "lots"}}
    with pytest.raises(CapsimError, match="p.yaml: spec"):
        profile_from_dict(bad, source="p.yaml")
    model = tmp_path / "m.yaml"
    model.write_text((models_dir() / "resnet50.yaml").read_text() + "params: 1\n")
    with pytest.raises(CapsimError, match=r"m.yaml: line \d+, column 1: key 'params' appears twice"):
        load_model(str(model))


def test_seed_out_of_range_is_one_clear_error(tmp_path):
    result, _ = _run_cli(tmp_path, GOOD, "--seed", "-1")
    assert result.exit_code == 2 and "--seed" in result.output
    for seed in (-1, 2**63, 1.5, "x"):
        with pytest.raises(CapsimError, match="seed: expected a whole number >= 0 and < 2\\^63"):
            simulator.run(GOOD, seed=seed, progress=False)
    with pytest.raises(CapsimError, match="seed"):
        simulator.run(GOOD + "seed: 9223372036854775808\n", progress=False)
