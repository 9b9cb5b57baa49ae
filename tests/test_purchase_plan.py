"""The purchase search against Erlang C: on an M/M/c cluster the fewest devices that keep the mean wait
under a target is a closed form, and the plan must find it; then the cost choice, and bad plans."""

import json

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.errors import CapsimError
from simulator.oracles import erlang_c_mean_wait
from simulator.planning.purchase import cheapest_purchase

RATE_PER_HOUR, MEAN_H = 9.0, 1.0  # 9 erlangs of 1-GPU jobs


def mmc_plan(target_s, options, seeds=2, jobs=20_000, **target):
    return {
        "name": "mmc",
        "seeds": seeds,
        "base": {
            "name": "mmc-base", "seed": 3,
            "cluster": {"pools": [{"name": "owned", "device": "h100-sxm", "nodes": 8, "devices_per_node": 1}]},
            "workload": [{"kind": "synthetic", "jobs": jobs, "arrival": {"process": "poisson",
                          "rate_per_hour": RATE_PER_HOUR}, "gpus": 1,
                          "duration": {"dist": "exponential", "mean": f"{MEAN_H}h"}}],
            "scheduler": {"policy": "fifo"},
            "cost": {"usd_per_kwh": 0.1, "amortization_years": 4},
        },
        "target": {"metric": "mean_wait_s", "at_most": target_s, **target},
        "options": options,
    }


def option(name, max_nodes=8, **pool):
    return {"name": name, "pool": {"device": "h100-sxm", "devices_per_node": 1, **pool}, "max_nodes": max_nodes}


def test_the_plan_finds_the_erlang_c_number_of_devices():
    # Erlang C at 9 erlangs: mean wait 40 min with 10 servers, 12 min with 11: a 20-minute target
    # needs 11 devices, 3 more than the 8 owned.
    lam, mean_s = RATE_PER_HOUR / 3600, MEAN_H * 3600
    assert erlang_c_mean_wait(10, lam, mean_s) > 1.8 * 1200 and erlang_c_mean_wait(11, lam, mean_s) < 0.75 * 1200
    plan = cheapest_purchase(mmc_plan(1200, [option("h100")]), progress=False)
    best = plan.cheapest
    assert best is not None and best["option"] == "h100" and best["nodes"] == 3
    assert best["mean_wait_s_mean"] <= 1200
    # Bisection tried no more sizes than it needed: none, the maximum, then halving 8 down to 1.
    tried = sorted(set(plan.evaluations["nodes"]))
    assert 0 in tried and 8 in tried and len(tried) <= 2 + 3


def test_the_cheaper_of_two_equal_options_wins_and_an_option_too_small_is_infeasible():
    plan = cheapest_purchase(mmc_plan(1200, [option("dear", price_usd=60_000), option("cheap", price_usd=20_000),
                                             option("tiny", max_nodes=2)]), progress=False)
    table = plan.options.set_index("option")
    assert table.loc["dear", "nodes"] == table.loc["cheap", "nodes"] == 3
    assert table.loc["cheap", "cost_usd_mean"] < table.loc["dear", "cost_usd_mean"]
    assert plan.cheapest["option"] == "cheap"
    assert not table.loc["tiny", "feasible"] and not table.loc["tiny", "cheapest"]


def test_a_cluster_that_already_meets_the_target_buys_nothing():
    plan_data = mmc_plan(1200, [option("h100")], jobs=3000)
    plan_data["base"]["cluster"]["pools"][0]["nodes"] = 12  # 5 minutes by Erlang C
    plan = cheapest_purchase(plan_data, progress=False)
    assert plan.cheapest["nodes"] == 0
    assert set(plan.evaluations["nodes"]) == {0, 8}


def test_a_period_target_says_when_the_cluster_first_misses_it():
    # Ten owned devices: the mean wait passes 20 minutes somewhere in the run; the quarter-day
    # periods report the first, and the search still needs a purchase.
    plan_data = mmc_plan(1200, [option("h100")], jobs=4000, period="6h")
    plan_data["base"]["cluster"]["pools"][0]["nodes"] = 10
    plan = cheapest_purchase(plan_data, progress=False)
    assert plan.base_first_miss is not None and plan.base_first_miss % (6 * 3600) == 0
    assert plan.cheapest is not None and plan.cheapest["nodes"] >= 1


def test_capsim_plan_prints_and_writes(tmp_path):
    path = tmp_path / "plan.json"  # JSON is YAML
    path.write_text(json.dumps(mmc_plan(1200, [option("h100")], jobs=3000)))
    result = CliRunner().invoke(main, ["plan", str(path), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "cheapest: " in result.output
    saved = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert saved["cheapest"]["option"] == "h100"
    assert (tmp_path / "out" / "options.csv").exists()


@pytest.mark.parametrize("change, message", [
    (lambda p: p["base"].pop("cost"), "needs `cost:`"),
    (lambda p: p["options"][0]["pool"].update(nodes=4), r"options\[0\]\.pool: leave `nodes` out"),
    (lambda p: p["target"].update(metric="gpu_utilization"), r"target\.metric"),
    (lambda p: p["options"][0]["pool"].update(device="h900"), "unknown device 'h900'"),
])
def test_bad_plans_are_refused_before_any_run(change, message):
    plan = mmc_plan(1200, [option("h100")])
    change(plan)
    with pytest.raises(CapsimError, match=message):
        cheapest_purchase(plan, progress=False)


def test_judging_on_the_upper_bound_never_buys_less():
    mean = cheapest_purchase(mmc_plan(1200, [option("h100")], seeds=3, jobs=8000), progress=False).cheapest
    cautious = cheapest_purchase(mmc_plan(1200, [option("h100")], seeds=3, jobs=8000, judged_on="ci95_upper"),
                                 progress=False).cheapest
    assert cautious["nodes"] >= mean["nodes"]
    assert cautious["mean_wait_s_mean"] + cautious["mean_wait_s_ci95"] <= 1200


# -- plans that cannot be true ---------------------------------------------------------------------------


def test_a_completion_time_target_below_the_no_queue_floor_is_an_error_before_any_run(monkeypatch):
    # Exponential 1-hour jobs: with no wait at all the p95 JCT is the p95 run time, ~3 h (ln 20 h).
    plan = mmc_plan(3600, [option("h100")], seeds=1, jobs=2000, metric="p95_jct_s")
    monkeypatch.setattr("simulator.planning.purchase._Search.evaluate",
                        lambda *a: pytest.fail("ran a simulation for an impossible target"))
    with pytest.raises(CapsimError, match=r"below the no-queue floor.*p95_jct_s (2\.9\d|3\.0\d)h.*no purchase can meet it"):
        cheapest_purchase(plan, progress=False)


def test_an_option_never_in_service_within_the_simulated_period_is_named(tmp_path):
    # 600 jobs at 9 an hour: about three days, and the B200s arrive in a year.
    plan = mmc_plan(1200, [option("h100"), option("b200-next-year", device="b200", available_from="365d")],
                    seeds=1, jobs=600)
    with pytest.warns(UserWarning, match=r"option b200-next-year never enters service: .*available_from 365d"):
        result = cheapest_purchase(plan, progress=False)
    table = result.options.set_index("option")
    assert table.loc["b200-next-year", "verdict"] == "never in service" and not table.loc["b200-next-year", "feasible"]
    assert set(result.evaluations.loc[result.evaluations["option"] == "b200-next-year", "nodes"]) == {8}  # no search
    assert result.cheapest["option"] == "h100"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    out = CliRunner().invoke(main, ["plan", str(path), "--workers", "1", "--out", str(tmp_path / "o")])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("b200-next-year"))
    assert row.split()[2:6] == ["–", "–", "–", "–"] and row.endswith("never in service")  # no size, no cost
    assert "WARNING: option b200-next-year never enters service" in out.stdout
    assert json.loads((tmp_path / "o" / "plan.json").read_text())["warnings"][0].startswith("option b200-next-year")


def test_a_search_that_hit_max_nodes_says_so_and_gives_no_answer(tmp_path):
    plan = mmc_plan(1200, [option("tiny", max_nodes=1)], seeds=1, jobs=600)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    out = CliRunner().invoke(main, ["plan", str(path), "--workers", "1"])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("tiny"))
    assert "> 1" in row and row.endswith("not enough at max_nodes = 1") and "$" not in row
    assert "WARNING: option tiny: not enough at max_nodes = 1" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("NO ANSWER: no option meets the target")
    assert "cheapest" not in out.stdout


def test_the_docs_sample_of_an_impossible_plan_is_what_it_prints(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs/sweeps_and_plans.md").read_text()
    section = page[page.index("### Plans that cannot be true"):]
    plan_yaml = re.search(r"```yaml\n# late.yaml\n(.*?)```", section, flags=re.S).group(1)
    sample = re.search(r"^```\n(plan too-late.*?)^```", section, flags=re.S | re.M).group(1)
    monkeypatch.chdir(tmp_path)
    Path("late.yaml").write_text(plan_yaml)
    out = CliRunner().invoke(main, ["plan", "late.yaml", "--workers", "1"])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip().splitlines() == sample.strip().splitlines()


# -- serving targets: the fewest replicas per device type ---------------------------------------------

SERVE_TARGET = {"service": "chat", "ttft_p99_s": "180ms", "tpot_p99_s": "16ms"}


def serving_plan(target=None, options=None, seeds=2, requests=1500, arrival=None, window="run"):
    """1,500 Llama 3 8B chat requests at 25 a second: one H100 replica drowns, three or four keep up."""
    return {
        "name": "chat-fleet", "seeds": seeds,
        "base": {
            "name": "chat", "seed": 5,
            "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
            "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 1,
                          "router": "least-outstanding", "slo": {"ttft_s": 0.5, "tpot_s": 0.03}}],
            "requests": [{"kind": "synthetic", "service": "chat", "requests": requests,
                          "arrival": arrival or {"process": "poisson", "rate_per_s": 25},
                          "prompt_tokens": {"dist": "lognormal", "median": 1500, "sigma": 0.5, "max": 8000},
                          "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.5, "max": 800}}],
            "cost": {"usd_per_kwh": 0.1},
        },
        "target": {**(target or SERVE_TARGET), "window": window},
        "options": options or [
            {"name": "h100", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_replicas": 8},
            {"name": "h200", "pool": {"device": "h200-sxm", "devices_per_node": 8}, "max_replicas": 8}],
    }


def _judged(plan_data, option_name, replicas):
    """The target's metrics of one size, run here on the plan's seeds, independently of the search."""
    import numpy as np

    import simulator
    from simulator.planning.purchase import PurchasePlanSpec, _with_replicas, window_metrics

    spec = PurchasePlanSpec.model_validate(plan_data)
    option = next(o for o in spec.options if o.name == option_name)
    data, _ = _with_replicas(plan_data["base"], spec.target, option, replicas)
    seeds = range(plan_data["base"]["seed"], plan_data["base"]["seed"] + plan_data["seeds"])
    runs = [window_metrics(simulator.run(data, seed=s, progress=False), "chat", spec.target.window,
                           plan_data["base"]["services"][0]["slo"]) for s in seeds]
    return {m: float(np.mean([r[m] for r in runs])) for m in spec.target.limits}


def test_a_serving_plan_keeps_the_fewest_replicas_that_meet_the_target():
    plan_data = serving_plan()
    plan = cheapest_purchase(plan_data, progress=False)
    table = plan.options.set_index("option")
    assert table["feasible"].all()
    for name, row in table.iterrows():
        n = int(row["replicas"])
        assert 1 < n < 8
        assert row["devices"] == n and row["nodes"] == 1  # tp 1: eight replicas a node
        meets = _judged(plan_data, name, n)
        assert meets["ttft_p99_s"] <= 0.18 and meets["tpot_p99_s"] <= 0.016
        assert meets["ttft_p99_s"] == pytest.approx(row["ttft_p99_s_mean"])  # the same seeds, the same runs
        fewer = _judged(plan_data, name, n - 1)  # one replica fewer misses, on the same seeds
        assert fewer["ttft_p99_s"] > 0.18 or fewer["tpot_p99_s"] > 0.016
    # The answer is the feasible option whose service costs least: replicas x tp x price + energy.
    assert plan.cheapest["option"] == table["cost_usd_mean"].idxmin()
    ev = plan.evaluations
    assert set(ev.columns) >= {"option", "replicas", "seed", "ttft_p99_s", "tpot_p99_s", "cost_usd",
                               "usd_per_million_tokens"}
    # Common random numbers: every size of every option saw the same requests on a seed.
    assert ev.groupby("seed")["window_requests"].nunique().eq(1).all()


def test_the_run_window_gives_the_summarys_figures_and_the_peak_hour_the_busiest_hours():
    import numpy as np

    import simulator
    from simulator.planning.purchase import window_metrics

    data = serving_plan()["base"]
    data["services"][0]["replicas"] = 3
    run = simulator.run(data, progress=False)
    whole = window_metrics(run, "chat", "run", data["services"][0]["slo"])
    summary = run.summary["services"]["chat"]
    for m in ("ttft_p50_s", "ttft_p99_s", "tpot_p95_s", "e2e_p99_s", "slo_attainment"):
        assert whole[m] == pytest.approx(summary[m], rel=1e-12)
    # A day-long sinusoid peaking at 14:00 over a day: the busiest whole hour holds the most arrivals.
    data["requests"][0].update(requests=None, until="1d", arrival={
        "process": "poisson", "rate_per_s": 0.05, "sinusoid": {"peak_to_trough": 4, "peak_hour": 14}})
    del data["requests"][0]["requests"]
    run = simulator.run(data, progress=False)
    peak = window_metrics(run, "chat", "peak_hour", None)
    hours = np.bincount((run.requests["arrival_s"].to_numpy() // 3600).astype(int))
    assert peak["window_requests"] == hours.max()
    assert peak["window_start_s"] == 3600 * int(np.flatnonzero(hours == hours.max())[0])
    assert 11 <= peak["window_start_s"] / 3600 <= 16
    req = run.requests
    inside = req[(req["arrival_s"] >= peak["window_start_s"]) & (req["arrival_s"] < peak["window_start_s"] + 3600)]
    ttft = (inside["first_token_s"] - inside["arrival_s"]).to_numpy()
    assert peak["ttft_p99_s"] == pytest.approx(np.percentile(ttft, 99))


def test_slo_attainment_is_a_floor_and_a_plan_with_it_meets_it():
    plan = cheapest_purchase(serving_plan({"service": "chat", "slo_attainment": 0.99}, seeds=1, options=[
        {"name": "h100", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_replicas": 8}]), progress=False)
    row = plan.cheapest
    assert row["slo_attainment_mean"] >= 0.99
    ev = plan.evaluations
    below = ev[ev["replicas"] == row["replicas"] - 1]
    assert len(below) and (below["slo_attainment"] < 0.99).all()


def test_a_serving_plan_that_hits_max_replicas_is_no_answer(tmp_path):
    plan_data = serving_plan(seeds=1, options=[
        {"name": "one", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_replicas": 1}])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_data))
    out = CliRunner().invoke(main, ["plan", str(path), "--workers", "1", "--out", str(tmp_path / "o")])
    assert out.exit_code == 0, out.output
    assert "WARNING: option one: not enough at max_replicas = 1" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("NO ANSWER")
    assert json.loads((tmp_path / "o" / "plan.json").read_text())["cheapest"] is None


@pytest.mark.parametrize("change, message", [
    (lambda p: p["target"].update(service="search"), r"target\.service: the base scenario has no service named"),
    (lambda p: p["target"].update(ttft_p98_s=1), r"target\.ttft_p98_s"),
    (lambda p: p["target"].update(tpot_p99_s="fast"), r"target\.tpot_p99_s"),
    (lambda p: p["target"].update(slo_attainment=1.5), r"target\.slo_attainment"),
    (lambda p: (p["target"].update(slo_attainment=0.9), p["base"]["services"][0].pop("slo")),
     r"target\.slo_attainment: slo_attainment needs the service's `slo:`"),
    (lambda p: p["options"][1].update(max_nodes=4), r"options\[1\]\.max_nodes"),
    (lambda p: p["options"][0].pop("max_replicas"), r"options\[0\]\.max_replicas"),
    (lambda p: p["options"][0].update(layout={"tp": 16}), r"options\[0\]\.layout\.tp"),
    (lambda p: p["options"][0].update(layout={"tpp": 2}), r"layout\.tpp"),
])
def test_bad_serving_plans_are_refused_with_their_key_path(change, message, monkeypatch):
    plan = serving_plan()
    change(plan)
    monkeypatch.setattr("simulator.planning.purchase.execute",
                        lambda *a, **k: pytest.fail("ran a simulation for a bad plan"))
    with pytest.raises(CapsimError, match=message):
        cheapest_purchase(plan, progress=False)


def test_max_replicas_goes_with_a_service_target_only():
    plan = mmc_plan(1200, [{**option("h100"), "max_replicas": 4}])
    with pytest.raises(CapsimError, match=r"options\[0\]\.max_replicas: max_replicas goes with a service target"):
        cheapest_purchase(plan, progress=False)


def test_a_serving_threshold_is_judged_on_the_worse_end_of_its_interval_when_asked():
    import pandas as pd

    from simulator.planning.purchase import _judge_service

    runs = pd.DataFrame({"ttft_p99_s": [0.8, 0.9, 1.0], "slo_attainment": [0.995, 0.99, 0.985],
                         "cost_usd": [1.0, 1.0, 1.0], "usd_per_million_tokens": [2.0, 2.0, 2.0],
                         "energy_per_token_j": [3.0, 3.0, 3.0]})
    latency = {"ttft_p99_s": (0.95, "at_most")}
    share = {"slo_attainment": (0.989, "at_least")}
    assert _judge_service(runs, latency, "mean")["meets"]  # mean 0.9 s
    assert not _judge_service(runs, latency, "ci95_upper")["meets"]  # 0.9 + 0.25 s
    assert _judge_service(runs, share, "mean")["meets"]  # mean 99.0%
    assert not _judge_service(runs, share, "ci95_upper")["meets"]  # the lower end, 97.8%
    both = _judge_service(runs, {**latency, "slo_attainment": (0.999, "at_least")}, "mean")
    assert both["each"] == {"ttft_p99_s": True, "slo_attainment": False} and not both["meets"]
    assert both["ttft_p99_s"][0] == pytest.approx(0.9) and both["ttft_p99_s"][1] == pytest.approx(0.2484, abs=1e-3)
