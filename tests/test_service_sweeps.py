"""A service's figures as metrics (services.<service>.<key>): sweeps give each run's own figure, in worker
processes and from kept runs as in one process; bad names fail before any run in one line naming what
exists; the CLI prints them; run_seeds' table holds them; the catalogue checked up front is what runs give."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.errors import CapsimError
from simulator.experiment import executors, load_sweep, sweep
from simulator.experiment.metric_names import service_catalogue
from simulator.experiment.stats import aggregate
from simulator.report.summary import estimate_text
from simulator.scenario import scenario_from_data
from tests.test_init import ROOT, doc_sample, lines

CHAT = {
    "name": "chat-sweep", "seed": 3,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 2,
                  "slo": {"ttft_s": 0.5, "tpot_s": 0.02}}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 300,
                  "arrival": {"process": "gamma", "rate_per_s": 8.0, "cv": 3.0},
                  "prompt_tokens": {"dist": "lognormal", "median": 1000, "sigma": 0.8, "max": 4000},
                  "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.8, "max": 800}}],
}
ROUTERS = ["round-robin", "least-outstanding"]
TTFT = "services.chat.ttft_p99_s"


def chat_sweep(**more):
    return {"base": copy.deepcopy(CHAT), "seeds": 2, "axes": {"services[0].router": ROUTERS},
            "metrics": [TTFT, "services.chat.slo_attainment", "gpu_utilization"], **more}


def by_hand(router: str, seed: int) -> dict:
    scen = copy.deepcopy(CHAT)
    scen["services"][0]["router"] = router
    return simulator.run(scen, seed=seed, progress=False).summary["services"]["chat"]


def test_a_service_figure_is_each_runs_own_in_process_in_workers_and_from_kept_runs(tmp_path, monkeypatch):
    serial = sweep(chat_sweep(), out_dir=tmp_path)
    assert sorted(serial.runs["seed"].unique()) == [3, 4]
    hand = {(r, s): by_hand(r, s) for r in ROUTERS for s in (3, 4)}
    for row in serial.runs.to_dict("records"):
        mine = hand[row["services[0].router"], row["seed"]]
        assert row[TTFT] == mine["ttft_p99_s"] and row["services.chat.slo_attainment"] == mine["slo_attainment"]
    # the two routers differ on these bursty arrivals, so the column is not one run's figure repeated
    assert hand["round-robin", 3]["ttft_p99_s"] != hand["least-outstanding", 3]["ttft_p99_s"]
    point = serial.points.set_index("services[0].router").loc["least-outstanding"]
    assert point[f"{TTFT}_mean"] == pytest.approx(
        (hand["least-outstanding", 3]["ttft_p99_s"] + hand["least-outstanding", 4]["ttft_p99_s"]) / 2, rel=1e-12)
    paired = serial.compare({"services[0].router": "round-robin"}, TTFT).set_index("services[0].router")
    assert paired.loc["least-outstanding", f"{TTFT}_diff_mean"] == pytest.approx(
        sum(hand["least-outstanding", s]["ttft_p99_s"] - hand["round-robin", s]["ttft_p99_s"] for s in (3, 4)) / 2)

    parallel = sweep(chat_sweep(), workers=2)  # summaries come back from worker processes
    pd.testing.assert_frame_equal(serial.runs, parallel.runs)

    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    # resuming with another service figure: the kept summaries give it, no run reruns
    other = sweep(chat_sweep(metrics=["services.chat.tpot_p99_s"]), out_dir=tmp_path, resume=True)
    assert ran == [] and other.reused == 4
    assert other.runs["services.chat.tpot_p99_s"].tolist() == [
        hand[r, s]["tpot_p99_s"] for r in ROUTERS for s in (3, 4)]


def test_a_bad_metric_name_fails_before_any_run_in_one_line_naming_what_exists(monkeypatch):
    monkeypatch.setattr(executors, "run_task", lambda task: pytest.fail("ran before the names were checked"))
    for bad in ("services.chat.ttft_p99", "services.code.ttft_p99_s", "services.chat", "p95_wait"):
        with pytest.raises(CapsimError) as err:
            sweep(chat_sweep(metrics=[bad]))
        text = str(err.value)
        assert "\n" not in text and "metrics: unknown metric(s)" in text and repr(bad) in text
        assert "at point services[0].router=round-robin" in text  # the first point that lacks it
        # what exists: the summary keys, and the service with its figures (slo_attainment: it has an SLO)
        assert "p95_wait_s" in text and "service 'chat': requests, " in text
        assert "ttft_p99_s" in text and "slo_attainment" in text and "cost_usd, usd_per" not in text
    # a loaded sweep given other metrics is checked the same way
    with pytest.raises(CapsimError, match=r"unknown metric\(s\) \['services.chat.ttft'\] at point"):
        sweep(load_sweep(chat_sweep()), metrics=["services.chat.ttft"])
    # a figure only some points have: slo_attainment needs the service's slo
    spec = chat_sweep(metrics=["services.chat.slo_attainment"])
    spec["cases"] = [{"name": "slo"}, {"name": "no-slo", "set": {"services[0].slo": None}}]
    with pytest.raises(CapsimError, match=r"at point case=no-slo, services\[0\].router=round-robin"):
        load_sweep(spec)
    training_only = {"base": {"cluster": CHAT["cluster"], "workload": [
        {"kind": "synthetic", "jobs": 5, "gpus": 1, "arrival": {"process": "poisson", "rate_per_hour": 1},
         "duration": {"dist": "exponential", "mean": "1h"}}]}, "metrics": [TTFT]}
    with pytest.raises(CapsimError, match="this scenario has no services"):
        load_sweep(training_only)


def test_the_cli_prints_a_service_figure_and_names_a_bad_one(tmp_path):
    spec = chat_sweep()
    spec["metrics"] = ["p95_wait_s"]  # --metric replaces the file's
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    out = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--workers", "2", "--out", str(tmp_path / "o"),
                                    "--metric", TTFT, "--baseline", "services[0].router=round-robin"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert TTFT in lines[0] and "p95_wait_s" not in out.stdout
    row = next(line for line in lines if line.lstrip().startswith("least-outstanding"))
    points = pd.read_parquet(tmp_path / "o" / "points.parquet").set_index("services[0].router")
    mean = (by_hand("least-outstanding", 3)["ttft_p99_s"] + by_hand("least-outstanding", 4)["ttft_p99_s"]) / 2
    assert points.loc["least-outstanding", f"{TTFT}_mean"] == pytest.approx(mean, rel=1e-12)
    # in milliseconds with its interval, as serving latencies print
    cell = estimate_text(TTFT, mean, points.loc["least-outstanding", f"{TTFT}_ci95"])
    assert cell.endswith(" ms") and " ms ± " in cell and cell in row
    assert f"{TTFT}_diff" in out.stdout
    about = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert about["metrics"] == [TTFT] and TTFT in pd.read_parquet(tmp_path / "o" / "runs.parquet").columns
    report = CliRunner().invoke(main, ["report", str(tmp_path / "o")])
    assert report.exit_code == 0, report.output
    assert TTFT in (tmp_path / "o" / "report.html").read_text()

    bad = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--metric", "services.chat.ttft"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "--metric" in bad.output and "services.chat.ttft" in bad.output and "ttft_p99_s" in bad.output


def test_the_docs_router_sweep_prints_its_sample(tmp_path, monkeypatch):
    page = "docs/sweeps_and_plans.md"
    text = (ROOT / page).read_text()
    spec = re.search(r"```yaml\n(# routers.yaml\n.*?)```", text, re.S).group(1)
    (tmp_path / "routers.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["sweep", "routers.yaml", "--workers", "2", "--no-progress",
                                    "--baseline", "services[0].router=round-robin"])
    assert out.exit_code == 0, out.output
    assert lines(out.stdout) == doc_sample(page, "The first prints (the sample")


def test_run_seeds_table_holds_each_services_figures_by_the_same_names():
    over = simulator.run_seeds(CHAT, 3, progress=False)
    assert over.runs[TTFT].tolist() == [row["services"]["chat"]["ttft_p99_s"] for row in over.summary["per_seed"]]
    table = aggregate(over.runs, [], [TTFT])
    assert table[f"{TTFT}_mean"].iloc[0] == pytest.approx(over.summary["services"]["chat"]["ttft_p99_s"], rel=1e-12)
    assert all(not k.startswith("services.") for k in over.summary["per_seed"][0])  # summary.json is as it was
    with pytest.raises(ValueError, match=r"no metric 'services.chat.ttft_p99' in these runs; they hold: .*"
                                         r"services.chat.ttft_p99_s"):
        aggregate(over.runs, [], ["services.chat.ttft_p99"])


@pytest.mark.parametrize("change", ["plain", "slo-cost-prefix", "autoscaled", "disaggregated"])
def test_the_catalogue_checked_before_runs_is_what_runs_give(change):
    scen = copy.deepcopy(CHAT)
    svc, req = scen["services"][0], scen["requests"][0]
    req["requests"] = 120
    if change == "plain":
        del svc["slo"]
    elif change == "slo-cost-prefix":
        scen["cost"] = {"usd_per_kwh": 0.1}
        svc.update(router="session-affinity", scheduler={"prefix_caching": True})
        req["sessions"] = {"turns": {"dist": "uniform", "low": 1, "high": 3},
                           "think_time": {"dist": "exponential", "mean": "5s"}}
    elif change == "autoscaled":
        svc.update(replicas={"min": 1, "max": 3}, autoscale={"metric": "queue", "target": 4, "interval": "5s"})
    else:
        svc.update(replicas={"min": 2, "max": 4}, autoscale={"metric": "queue", "target": 4, "interval": "5s"},
                   disaggregated={"prefill_replicas": {"min": 1, "max": 2}, "decode_replicas": {"min": 1, "max": 2}})
    figures = simulator.run(scen, progress=False).summary["services"]["chat"]
    assert service_catalogue(scenario_from_data(scen)) == {"chat": list(figures)}
