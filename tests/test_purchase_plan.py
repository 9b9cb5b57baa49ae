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
