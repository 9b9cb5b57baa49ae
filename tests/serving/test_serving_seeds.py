"""`capsim run --seeds N` on a serving scenario: each service's figures are the mean over the seeds with
their 95% interval, as the top-level figures are; per_seed keeps each seed's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats

import simulator
from simulator.cli import main
from tests.serving.test_serving_run import scenario


def test_seeds_aggregate_each_services_figures(tmp_path):
    s = scenario(requests__0__requests=60)
    s["services"][0]["slo"] = {"ttft_s": 0.02}
    s["cost"] = {}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(s))
    out = CliRunner().invoke(main, ["run", str(path), "--seeds", "3", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    # each seed on its own, as a plain run gives it
    runs = [simulator.run(s, seed=seed, progress=False).summary["services"]["chat"] for seed in (5, 6, 7)]
    chat = summary["services"]["chat"]
    assert [row["services"]["chat"] for row in summary["per_seed"]] == runs
    varied = 0
    for key, value in runs[0].items():
        values = np.array([r[key] for r in runs], dtype=float)
        if (values == values[0]).all():
            assert chat[key] == value and chat[f"{key}_ci95"] == 0.0
            continue
        varied += 1
        assert chat[key] == pytest.approx(values.mean(), rel=1e-12), key
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        assert chat[f"{key}_ci95"] == pytest.approx(half, rel=1e-9), key
    assert varied >= 10  # latencies, throughput, energy, cost, SLO attainment vary with the seed
    assert chat["requests"] == 60 and chat["requests_ci95"] == 0.0
    # the table shows each service's figures with their intervals, and the note each seed's TTFT p99
    text = CliRunner().invoke(main, ["run", str(path), "--seeds", "3"])
    assert text.exit_code == 0, text.output
    row = next(line for line in text.output.splitlines() if "service chat: TTFT p50 / p99" in line)
    assert row.count("±") == 2
    assert "service chat: SLO attainment" in text.output and "cost per million tokens" in text.output
    assert "service chat TTFT p99 by seed: 5: " in text.output
