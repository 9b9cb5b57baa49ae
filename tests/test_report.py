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
