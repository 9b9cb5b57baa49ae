"""`capsim init` writes a scenario, a sweep and a plan that run as they are, and refuses to overwrite."""

import json
import re
from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

from simulator.cli import init_files, main
from simulator.scenario import default_scenario_text

ROOT = Path(__file__).resolve().parents[1]


def doc_sample(page: str, after: str) -> list[str]:
    """The lines of the first plain ``` block after the prose `after` in a docs page (an output sample)."""
    text = (ROOT / page).read_text()
    block = re.search(r"^```\n(.*?)^```", text[text.index(after):], flags=re.S | re.M)
    return lines(block.group(1))


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, f"capsim {' '.join(args)}\n{result.output}"
    return result


def test_init_then_run_sweep_plan_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("init").output
    for name in ("scenario.yaml", "sweep.yaml", "plan.yaml"):
        assert f"wrote {name}" in out
    assert "capsim sweep sweep.yaml" in out and "cd " not in out  # the next commands, from here
    scenario = yaml.safe_load((tmp_path / "scenario.yaml").read_text())
    assert scenario == {**yaml.safe_load(default_scenario_text()), "cost": {"usd_per_kwh": 0.08}}

    out = invoke("run", "scenario.yaml", "--out", "runs/a", "--no-progress").stdout
    assert lines(out) == doc_sample("README.md", "`capsim run scenario.yaml` prints:")  # the README's sample
    summary = json.loads((tmp_path / "runs/a/summary.json").read_text())
    assert summary["jobs_completed"] > 0 and summary["cost_usd"] > 0
    invoke("report", "runs/a")
    assert (tmp_path / "runs/a/report.html").stat().st_size > 0

    out = invoke("sweep", "sweep.yaml", "--out", "sweeps/a", "--no-progress").stdout
    assert lines(out) == doc_sample("docs/sweeps_and_plans.md", "The first command prints:")
    assert "easy-backfill" in out and "cost_usd" in out
    points = pd.read_parquet(tmp_path / "sweeps/a/points.parquet")
    assert len(points) == 3 and (points["seeds"] == 2).all()
    for name in ("runs.parquet", "periods.parquet", "period_points.parquet"):
        assert (tmp_path / "sweeps/a" / name).is_file()

    out = invoke("plan", "plan.yaml", "--out", "plans/a", "--no-progress").stdout
    assert lines(out) == doc_sample("docs/sweeps_and_plans.md", "It prints:")
    assert "cheapest:" in out
    plan = json.loads((tmp_path / "plans/a/plan.json").read_text())
    assert plan["cheapest"] is not None
    for name in ("options.csv", "evaluations.parquet"):
        assert (tmp_path / "plans/a" / name).is_file()


def test_init_into_a_folder_refuses_to_overwrite_unless_forced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("init", "demo").output
    assert "cd demo" in out
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["plan.yaml", "scenario.yaml", "sweep.yaml"]
    (tmp_path / "demo/sweep.yaml").write_text("mine\n")
    (tmp_path / "demo/scenario.yaml").unlink()
    result = CliRunner().invoke(main, ["init", "demo"])
    assert result.exit_code != 0 and "demo/sweep.yaml, demo/plan.yaml already exist" in result.output
    assert (tmp_path / "demo/sweep.yaml").read_text() == "mine\n"
    assert not (tmp_path / "demo/scenario.yaml").exists()  # nothing written, not even the missing one
    invoke("init", "demo", "--force")
    assert (tmp_path / "demo/sweep.yaml").read_text().startswith("# Three policies")
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_the_docs_show_the_files_init_writes():
    """docs/sweeps_and_plans.md shows sweep.yaml and plan.yaml as `capsim init` writes them."""
    text = (ROOT / "docs/sweeps_and_plans.md").read_text()
    for name in ("sweep.yaml", "plan.yaml"):
        shown = re.search(rf"^```yaml\n# {re.escape(name)}\n(.*?)^```", text, flags=re.S | re.M)
        assert shown and shown.group(1) == init_files()[name], f"docs/sweeps_and_plans.md shows another {name}"
