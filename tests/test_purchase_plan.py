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
