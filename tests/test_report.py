"""The HTML report: self-contained, carries the run's own numbers, the same bytes for the same run."""

import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.report.figures import binned_means
from simulator.results import Results
from tests.helpers import scenario_dict


def small_run():
    return simulator.run(scenario_dict([(4, 8)], [{
        "kind": "synthetic", "until": "20d", "arrival": {"process": "poisson", "rate_per_hour": 6},
        "gpus": {"choice": [1, 8, 16], "weights": [0.6, 0.3, 0.1]}, "duration": {"dist": "exponential", "mean": "3h"},
    }]), progress=False)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data.strip())


def test_report_holds_the_runs_numbers_and_inlines_its_figures(tmp_path):
    res = small_run()
    path = res.report(tmp_path / "r.html")
    page = _Collect()
    page.feed(path.read_text())
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not [a for t, a in page.tags if t in ("link", "script")]  # nothing to fetch: forwardable
    text = " ".join(page.text)
    assert f"{res.summary['jobs_submitted']:,}" in text
    assert f"{res.summary['gpu_utilization']:.1%}" in text
    weeks = res.by_period("7d")  # a 20-day run is reported by week
    rows = [t for t, _ in page.tags if t == "tr"]
    assert len(rows) >= len(weeks) + 1
    assert path.stat().st_mode & 0o044  # readable by others, like any file a planner forwards


def test_report_is_deterministic_and_rebuilt_from_the_written_files(tmp_path):
    res = small_run()
    res.write(tmp_path / "run")
    res.report(tmp_path / "a.html")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "run" / "report.html").read_bytes()
    again = Results.read(tmp_path / "run")
    pd.testing.assert_frame_equal(again.jobs, res.jobs)
    assert again.summary == res.summary


def test_report_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "summary.json" in result.output and str(tmp_path) in result.output


def test_binned_means_are_time_weighted():
    # 0 busy for 10 s, then 4 busy for 30 s: one 40 s bin averages 3; two 20 s bins average 2 and 4.
    timeline = pd.DataFrame({"time_s": [0.0, 10.0, 40.0], "busy_gpus": [0, 4, 0]})
    _, one = binned_means(timeline, "busy_gpus", bins=1)
    _, two = binned_means(timeline, "busy_gpus", bins=2)
    assert one == pytest.approx([3.0])
    assert two == pytest.approx([2.0, 4.0])


def test_run_cli_writes_the_report_beside_the_outputs(tmp_path):
    scen = tmp_path / "s.yaml"
    import yaml

    scen.write_text(yaml.safe_dump(scenario_dict([(2, 8)], [{
        "kind": "synthetic", "jobs": 200, "arrival": {"process": "poisson", "rate_per_hour": 4},
        "gpus": 1, "duration": {"dist": "exponential", "mean": "1h"}}])))
    result = CliRunner().invoke(main, ["run", str(scen), "--report", str(tmp_path / "out" / "r.html")])
    assert result.exit_code == 0, result.output
    assert re.search(r"<h1>test</h1>", (tmp_path / "out" / "r.html").read_text())


def test_a_costed_run_reports_cost_per_period(tmp_path):
    scen = scenario_dict([(2, 8)], [{
        "kind": "synthetic", "until": "20d", "arrival": {"process": "poisson", "rate_per_hour": 3},
        "gpus": {"choice": [1, 8], "weights": [0.7, 0.3]}, "duration": {"dist": "exponential", "mean": "3h"}}])
    scen["cost"] = {"usd_per_kwh": 0.1}
    res = simulator.run(scen, progress=False)
    page = res.report(tmp_path / "r.html").read_text()
    assert "<th>cost</th>" in page
    weekly = res.by_period("7d")["cost_usd"]
    assert f"${weekly.iloc[0]:,.0f}" in page and weekly.sum() == pytest.approx(res.summary["cost_usd"])


def test_importing_the_report_leaves_the_sessions_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import simulator.report.figures, simulator.report.html; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


# Sweeps and plans, what was simulated, partial periods, diagnostics, console ------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from simulator.experiment.stats import ci95_half_width  # noqa: E402
from simulator.report.diagnose import diagnose  # noqa: E402
from simulator.report.summary import estimate_text, fit_width  # noqa: E402
from simulator.units import format_duration  # noqa: E402
from tests.helpers import jobs as job_table  # noqa: E402
from tests.helpers import run_jobs  # noqa: E402

_BASE = {"name": "tiny", "seed": 1,
         "cluster": {"pools": [{"name": "h100", "device": "h100-sxm", "nodes": 2, "devices_per_node": 8}]},
         "workload": [{"kind": "synthetic", "until": "4d", "arrival": {"process": "poisson", "rate_per_hour": 2},
                       "gpus": {"choice": [1, 8], "weights": [0.7, 0.3]},
                       "duration": {"dist": "exponential", "mean": "3h"}}],
         "cost": {"usd_per_kwh": 0.08}}


def _page(path) -> _Collect:
    page = _Collect()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "sw.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "base": _BASE, "seeds": 2, "axes": {"scheduler.policy": ["fifo", "easy-backfill"]},
        "metrics": ["p95_wait_s", "gpu_utilization", "cost_usd"], "periods": "1d"}))
    result = CliRunner().invoke(main, ["sweep", str(root / "sw.yaml"), "--out", str(root / "out"), "--workers", "1",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    return root


def test_resume_says_how_many_runs_it_reused(sweep_dir):
    result = CliRunner().invoke(main, ["sweep", str(sweep_dir / "sw.yaml"), "--out", str(sweep_dir / "out"),
                                       "--workers", "1", "--no-progress", "--resume"])
    assert result.exit_code == 0, result.output
    assert "reused 4 of 4 runs" in result.output


def test_sweep_report_holds_each_points_interval_and_is_deterministic(sweep_dir):
    out = sweep_dir / "out"
    first = CliRunner().invoke(main, ["report", str(out), "--target", "2h"])
    assert first.exit_code == 0, first.output
    once = (out / "report.html").read_bytes()
    assert CliRunner().invoke(main, ["report", str(out), "--target", "2h"]).exit_code == 0
    assert (out / "report.html").read_bytes() == once  # byte-identical across renders
    page = _page(out / "report.html")
    text = " ".join(page.text)
    runs = pd.read_parquet(out / "runs.parquet")
    for policy, group in runs.groupby("scheduler.policy"):
        values = group["p95_wait_s"]
        ci = ci95_half_width(pd.Series([values.std(ddof=1)]), pd.Series([len(values)])).iloc[0]
        assert estimate_text("p95_wait_s", values.mean(), ci) in text, policy
        # and the paired difference from the first point (fifo), seed by seed
        base = runs[runs["scheduler.policy"] == "fifo"].set_index("seed")["p95_wait_s"]
        diff = group.set_index("seed")["p95_wait_s"] - base
        dci = ci95_half_width(pd.Series([diff.std(ddof=1)]), pd.Series([len(diff)])).iloc[0]
        assert estimate_text("p95_wait_s_diff", diff.mean(), 0.0 if policy == "fifo" else dci) in text
    headings = [t for t in page.text if t]
    for heading in ("What was simulated", "Assumptions", "Metrics per point", "Paired differences from "
                    "scheduler.policy=fifo", "p95_wait_s by period", "Cost against service"):
        assert heading in headings, heading
    assert "When each point passes p95_wait_s = 2h" in text
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not [a for t, a in page.tags if t in ("link", "script")]
    # each figure is followed by a caption saying what it shows
    html = (out / "report.html").read_text()
    assert html.count('<p class="caption">') == len(images)
    assert "2 × h100-sxm" not in text and "16 × h100-sxm (2 nodes)" in text  # the pool, from sweep.json


def test_sweep_report_labels_the_drain_only_and_cut_periods(sweep_dir):
    out = sweep_dir / "out"
    periods = pd.read_parquet(out / "periods.parquet")
    assert {"partial", "drain_only"} <= set(periods.columns)
    CliRunner().invoke(main, ["report", str(out)])
    html = (out / "report.html").read_text()
    rows = re.findall(r"<tr><td>(fifo|easy-backfill)</td><td>([^<]*)</td><td>[^<]*</td><td[^>]*>([^<]*)</td></tr>",
                      html)
    for (policy, period), group in periods.groupby(["scheduler.policy", "period"]):
        expected = ", ".join(t for f, t in ((group["drain_only"].all(), "drain only"),
                                            (group["partial"].any(), "cut by the horizon")) if f)
        assert (policy, format_duration(period * 86400), expected) in rows


def test_a_period_cut_by_the_horizon_or_after_the_last_arrival_is_labelled_exactly(tmp_path):
    # Submissions at 0 and 1.5 d, each running 2.5 d: the run ends at 4 d. By day: periods 0 and 1 hold
    # arrivals, 2 and 3 only the drain; by periods of 3 d, the second (3-6 d) is cut at 4 d.
    res = run_jobs(job_table(submit_time=[0.0, 1.5 * 86400], gpus=[1, 1], duration=[2.5 * 86400] * 2))
    daily = res.by_period("1d")
    assert daily["drain_only"].tolist() == [False, False, True, True]
    assert daily["partial"].tolist() == [False, False, False, False]
    thirds = res.by_period("3d")
    assert thirds["partial"].tolist() == [False, True] and thirds["drain_only"].tolist() == [False, True]
    res.report(tmp_path / "r.html", "3d")
    html = (tmp_path / "r.html").read_text()
    assert html.count("drain only, cut by the horizon</td>") == 1
    from simulator.cli import period_text

    lines = period_text(res, "1d").splitlines()
    assert [line.rstrip().endswith("drain only") for line in lines[1:5]] == [False, False, True, True]


def test_run_report_says_what_was_simulated(tmp_path):
    res = small_run()
    res.write(tmp_path / "run")
    assert CliRunner().invoke(main, ["report", str(tmp_path / "run")]).exit_code == 0
    text = " ".join(_page(tmp_path / "run" / "report.html").text)
    assert "32 × h100-sxm (4 nodes), from the start" in text
    s = res.summary
    load = s["offered_gpu_hours"] / (s["arrival_span_s"] / 3600)
    assert f"{load:,.1f} GPU-hours per hour of submissions against 32 GPUs" in text
    assert s["offered_gpu_hours"] == pytest.approx((res.jobs["gpus"] * res.jobs["duration"]).sum() / 3600)
    assert "<td>policy</td><td>fifo</td>" in (tmp_path / "run" / "report.html").read_text()
    assert "No prices are set" in text  # an uncosted run says so, and gives no dollars


def _hol_run():
    # 64 GPUs. A 40-GPU job runs 10 h; a 64-GPU job waits behind it at the head of the FIFO queue, and
    # forty 1-GPU jobs wait behind that one while 24 GPUs stand idle: head-of-line blocking.
    n = 40
    return run_jobs(job_table(submit_time=[0, 10] + [20 + 60 * i for i in range(n)], gpus=[40, 64] + [1] * n,
                              duration=[36000, 3600] + [1800] * n), pools=((8, 8),))


def _capacity_run():
    rng = np.random.default_rng(0)
    m = 300
    return run_jobs(job_table(submit_time=np.sort(rng.uniform(0, 86400, m)), gpus=[8] * m,
                              duration=rng.exponential(3 * 3600, m)), pools=((8, 8),))


def test_diagnosis_tells_head_of_line_blocking_from_too_little_capacity(tmp_path):
    hol = _hol_run()
    finding = diagnose(hol.jobs, hol.timeline, hol.summary)
    assert finding.cause == "head-of-line"
    assert "job b (64 GPUs)" in finding.headline
    assert any("24 GPUs stood idle" in e for e in finding.evidence)
    cap = _capacity_run()
    finding = diagnose(cap.jobs, cap.timeline, cap.summary)
    assert finding.cause == "capacity" and cap.summary["gpu_utilization"] > 0.9
    # EASY backfilling removes the blocking: the same jobs no longer read as head-of-line blocked
    easy = run_jobs(hol.jobs[["job_id", "submit_time", "gpus", "duration"]], pools=((8, 8),), policy="easy-backfill")
    assert diagnose(easy.jobs, easy.timeline, easy.summary).cause != "head-of-line"
    hol.report(tmp_path / "r.html")
    text = " ".join(_page(tmp_path / "r.html").text)
    assert "Head-of-line blocking, not capacity" in text and "Job b (64 GPUs) was at the head" in text


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    (root / "plan.yaml").write_text(yaml.safe_dump({
        "name": "tiny-plan", "base": _BASE, "seeds": 2,
        "target": {"metric": "p95_wait_s", "at_most": "3h", "period": "1d"},
        "options": [{"name": "h100", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_nodes": 4}]}))
    result = CliRunner().invoke(main, ["plan", str(root / "plan.yaml"), "--out", str(root / "out"), "--workers", "1",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "out"


def test_plan_report_shows_the_search_the_purchase_and_when_the_cluster_fails(plan_dir):
    import json

    assert CliRunner().invoke(main, ["report", str(plan_dir)]).exit_code == 0
    once = (plan_dir / "report.html").read_bytes()
    assert CliRunner().invoke(main, ["report", str(plan_dir)]).exit_code == 0
    assert (plan_dir / "report.html").read_bytes() == once
    page = _page(plan_dir / "report.html")
    text = " ".join(page.text)
    saved = json.loads((plan_dir / "plan.json").read_text())
    best = saved["cheapest"]
    assert best is not None and f"Buy {best['nodes']} nodes of h100-sxm (h100)" in text
    assert f"first misses it in the period starting at {format_duration(saved['base_first_miss_s'])}" in text
    headings = [t for t in page.text if t]
    for heading in ("What was simulated", "The answer", "Each option's search", "p95_wait_s by period",
                    "Cost per period of 1d"):
        assert heading in headings, heading
    periods = pd.read_parquet(plan_dir / "periods.parquet")
    chosen = periods[(periods["option"] == "h100") & (periods["nodes"] == best["nodes"])]
    first_cost = chosen[chosen["period"] == 0]["cost_usd"].mean()
    from simulator.report.simulated import money

    assert money(first_cost) in text


def test_numbers_are_rounded_to_their_interval_and_noise_is_zero():
    assert estimate_text("cost_usd", 422418.3, 3184.2) == "422,400 ± 3,200"
    assert estimate_text("cost_usd_diff", 1.164e-11, 3.232e-11) == "0 ± 0"
    assert estimate_text("gpu_utilization", 0.517, 0.316) == "52% ± 32%"
    assert estimate_text("p95_wait_s", 3 * 86400, math.nan) == "3d"
    assert format_duration(400 * 86400) == "400d" and format_duration(1000 * 86400) == "2.74y"
    assert format_duration(3e7 * 86400) == "8.2e+04y"  # no 82191.78...y
    runs = pd.DataFrame({"a": ["x", "y"], "seed": [1, 1], "m": [1.0, 1.0 + 1e-13]})
    from simulator.experiment.stats import compare

    assert compare(runs, "m", {"a": "x"}, ["a"])["m_diff_mean"].tolist() == [0.0, 0.0]


def test_wide_tables_fit_a_hundred_columns():
    wide = pd.DataFrame({f"point number {i}": [f"{i}.5h ± 1.2h"] * 3 for i in range(12)},
                        index=pd.Index(["0s", "7d", "14d"], name="from"))
    text = fit_width(wide)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert all(f"point number {i}" in text for i in range(12))
    assert text.count("14d") == len(text.split("\n\n"))  # every block repeats the row labels


# -- serving: the run report's section per service, and a plan with a service target -----------------

def _serving_scenario(slo=True, cost=True):
    data = {
        "name": "chat-day", "seed": 4,
        "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
        "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 2,
                      "router": "least-outstanding"}],
        "requests": [{"kind": "synthetic", "service": "chat", "until": "8h",
                      "arrival": {"process": "poisson", "rate_per_s": 0.1,
                                  "sinusoid": {"peak_to_trough": 4, "peak_hour": 5, "period": "8h"}},
                      "prompt_tokens": 512, "output_tokens": {"dist": "lognormal", "median": 128, "sigma": 0.5}}],
    }
    if slo:
        data["services"][0]["slo"] = {"ttft_s": 0.2, "tpot_s": 0.02}
    if cost:
        data["cost"] = {"usd_per_kwh": 0.1}
    return data


def _images(path):
    import base64

    page = _page(path)
    return {a.get("alt"): base64.b64decode(a["src"].split(",", 1)[1]) for t, a in page.tags if t == "img"}


def test_run_report_has_a_serving_section_matching_requests_parquet(tmp_path):
    import numpy as np

    from simulator.report.figures import serving_bins

    path = tmp_path / "chat.yaml"
    path.write_text(yaml.safe_dump(_serving_scenario()))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--report", str(out / "report.html")])
    assert result.exit_code == 0, result.output
    once = (out / "report.html").read_bytes()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0  # rebuilt from the files: same bytes
    assert (out / "report.html").read_bytes() == once
    page = _page(out / "report.html")
    text = " ".join(page.text)
    chat = Results.read(out).summary["services"]["chat"]
    assert "Service chat" in page.text
    # What was simulated names the service and its requests, and no job rows for a run without jobs.
    assert "llama3-8b, 2 replicas of 1 device on pool main; SLO TTFT ≤ 200 ms, TPOT ≤ 20 ms" in text
    assert "synthetic to chat: until 8h at 0.1/s mean (poisson, daily profile)" in text
    assert "workload none (serving only)" in text and "0 submitted" not in text
    assert (f"{chat['ttft_p50_s'] * 1e3:,.1f} / {chat['ttft_p95_s'] * 1e3:,.1f} / {chat['ttft_p99_s'] * 1e3:,.1f} ms"
            in text)
    assert f"{chat['slo_attainment']:.2%}" in text
    assert f"{chat['goodput_tokens_per_s']:,.1f} tokens/s" in text
    assert f"${chat['usd_per_million_tokens']:,.2f}" in text
    assert f"{chat['energy_per_token_j']:,.2f} J" in text
    assert f"({chat['replica_hours']:,.1f}," in text
    # The figure's bins are requests.parquet's, hour by hour (an 8-hour run): counts and p99 TTFT.
    requests = pd.read_parquet(out / "requests.parquet")
    bins = serving_bins(requests)
    hours = (requests["arrival_s"] // 3600).astype(int)
    assert bins["requests"].tolist() == np.bincount(hours).tolist() and bins["requests"].sum() == len(requests)
    assert (bins["bin_start_s"].diff().dropna() == 3600).all()
    for k, row in bins.iterrows():
        inside = requests[hours == k]
        assert row["ttft_p99_s"] == pytest.approx(np.percentile(inside["first_token_s"] - inside["arrival_s"], 99))
    busiest = bins.loc[bins["requests"].idxmax()]
    assert f"had {int(busiest['requests']):,} requests" in text
    assert 3 * 3600 <= busiest["bin_start_s"] <= 6 * 3600  # the sinusoid peaks at hour 5 of 8
    assert "Requests and latency over time" in _images(out / "report.html")


def test_a_run_report_without_slo_or_prices_leaves_their_rows_out():
    run = simulator.run(_serving_scenario(slo=False, cost=False), progress=False)
    from simulator.report.html import render_report

    text = render_report(run)
    assert "Service chat" in text and "time to first token p50 / p95 / p99" in text
    assert "<td>SLO attainment</td>" not in text and "<td>cost per million output tokens</td>" not in text
    assert "<td>energy per output token (mean power)</td>" in text  # energy needs no prices
    assert "Service" not in render_report(small_run())  # a run without services has no such section


def test_serving_plan_report_shows_the_fleet_and_each_thresholds_search(tmp_path):
    import json

    plan = {"name": "chat-fleet", "seeds": 2, "base": {**_serving_scenario(), "seed": 4},
            "target": {"service": "chat", "ttft_p99_s": "150ms", "tpot_p99_s": "20ms"},
            "options": [{"name": "h100", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_replicas": 4}]}
    plan["base"]["requests"][0].update(until="2h", arrival={"process": "poisson", "rate_per_s": 12})
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "plan.yaml"), "--out", str(out), "--workers", "1",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "plan.json").read_text())
    best = saved["cheapest"]
    assert best is not None and f"cheapest: {best['replicas']} replica" in result.stdout
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    once = (out / "report.html").read_bytes()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").read_bytes() == once
    text = " ".join(_page(out / "report.html").text)
    assert f"Run {best['replicas']} replica" in text and "on h100-sxm (h100, tp 1)" in text
    assert "The busiest hour" in text
    images = _images(out / "report.html")
    assert {"Each option's search: ttft_p99_s", "Each option's search: tpot_p99_s"} <= set(images)
    ev = pd.read_parquet(out / "evaluations.parquet")
    assert set(ev["replicas"]) >= {best["replicas"]} and ev["window_start_s"].notna().all()
