"""Shipped presets reproduce the published trace statistics; scenarios use presets; fitting round-trips."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from simulator.errors import CapsimError
from simulator.runner import run
from simulator.workload.fit_cli import fit
from simulator.workload.fitting import fit_preset
from simulator.workload.presets import list_presets, load_preset, preset_path, resolve_preset
from simulator.workload.spec import PresetWorkload
from simulator.workload.stats import trace_stats
from simulator.workload.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]


def _generate(name: str, jobs: int, seed: int) -> pd.DataFrame:
    spec = resolve_preset(PresetWorkload(kind="preset", name=name, jobs=jobs), ROOT)
    return generate(spec, np.random.default_rng(seed))


def test_shipped_presets_load_and_cite_their_figures():
    assert {"helios-venus", "philly", "acme-seren"} <= set(list_presets())
    for name in ("helios-venus", "philly", "acme-seren"):
        preset = load_preset(preset_path(name))
        assert preset.figures and all("source" in f for f in preset.figures.values())
        assert set(preset.published) >= {"mean_runtime_s", "median_runtime_s", "mean_gpus"}


def test_helios_venus_preset_reproduces_published_venus_statistics():
    published = load_preset(preset_path("helios-venus")).published
    figures = trace_stats(_generate("helios-venus", 200_000, seed=2024))
    # Published: helios_cluster_summary.csv row Venus (SC'21); single-GPU share derived from the
    # Venus 10-minute throughput series (see the preset's `figures`).
    assert published["mean_runtime_s"] == pytest.approx(13040.598)
    assert published["median_runtime_s"] == 204.0 and published["mean_gpus"] == 6.736
    for key in ("mean_runtime_s", "median_runtime_s", "mean_gpus", "single_gpu_share"):
        assert figures[key] == pytest.approx(published[key], rel=0.10), key


@pytest.mark.parametrize("name", ["philly", "acme-seren"])
def test_other_presets_reproduce_their_source_statistics(name):
    published = load_preset(preset_path(name)).published
    figures = trace_stats(_generate(name, 200_000, seed=7))
    for key, value in published.items():
        assert figures[key] == pytest.approx(value, rel=0.10), key


def test_shipped_presets_are_what_make_presets_writes(shared_dir, tmp_path):
    script = ROOT / "workloads" / "presets" / "make_presets.py"
    subprocess.run([sys.executable, str(script), "--shared", str(shared_dir), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in ("helios-venus", "philly", "acme-seren"):
        assert yaml.safe_load((tmp_path / f"{name}.yaml").read_text()) == \
            yaml.safe_load(preset_path(name).read_text()), name


def test_scenario_runs_a_preset_with_rate_scale_and_growth():
    scenario = {
        "name": "preset", "seed": 3,
        "cluster": {"pools": [{"name": "p", "device": "h100-sxm", "nodes": 128, "devices_per_node": 8}]},
        "workload": [{"kind": "preset", "name": "acme-seren", "until": "12h", "rate_scale": 0.2,
                      "growth": {"annual": 0.3}}],
    }
    summary = run(scenario).summary
    # 0.2 x the Seren rate for 12 hours; arrivals are Poisson, so allow a wide band.
    assert 300 < summary["jobs_submitted"] < 430  # expected 0.2 x 150.3/h x 12 h = 361


def test_unknown_preset_names_the_shipped_ones():
    with pytest.raises(CapsimError, match="helios-venus"):
        resolve_preset(PresetWorkload(kind="preset", name="nope", jobs=1), ROOT)


def test_preset_from_a_path_with_a_bad_key_names_the_key(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "preset": "p", "source": "test", "arrival": {"process": "poisson", "rate_per_hour": 1},
        "classes": [{"weight": 1, "duration": {"dist": "constant", "value": 1, "typo": 2}}]}))
    with pytest.raises(CapsimError, match=r"classes\[0\]\.duration\.typo"):
        resolve_preset(PresetWorkload(kind="preset", path="p.yaml", jobs=1), tmp_path)


def _trace(n=20_000, seed=0) -> pd.DataFrame:
    """Small jobs short (lognormal median 5 min), 8+ GPU jobs long (median 5 h): a correlation to keep."""
    rng = np.random.default_rng(seed)
    gpus = rng.choice([1, 2, 8, 16], n, p=[0.6, 0.2, 0.15, 0.05])
    median = np.where(gpus >= 8, 5 * 3600.0, 300.0)
    return pd.DataFrame({"job_id": [str(i) for i in range(n)],
                         "submit_time": np.sort(rng.uniform(0, 30 * 86400, n)), "gpus": gpus,
                         "duration": median * rng.lognormal(0, 1.0, n)})


def test_fit_preset_keeps_size_duration_correlation_and_resamples():
    trace = _trace()
    preset = fit_preset(trace, "toy", source="synthetic test trace")
    assert preset["arrival"]["process"] == "diurnal"
    assert [b["chosen"] for b in preset["fit"]["buckets"]] == ["lognormal"] * 4
    path_spec = load_preset_dict(preset)
    jobs = generate(path_spec, np.random.default_rng(1))
    for small in (True, False):
        mask_gen, mask_obs = (jobs["gpus"] < 8) == small, (trace["gpus"] < 8) == small
        assert jobs.loc[mask_gen, "duration"].median() == pytest.approx(
            trace.loc[mask_obs, "duration"].median(), rel=0.1)
    assert jobs["gpus"].mean() == pytest.approx(trace["gpus"].mean(), rel=0.05)


def load_preset_dict(preset: dict):
    from simulator.workload.presets import preset_from_dict
    from simulator.workload.spec import SyntheticWorkload

    p = preset_from_dict(yaml.safe_load(yaml.safe_dump(preset)))
    return SyntheticWorkload(kind="synthetic", name="toy", jobs=20_000, arrival=p.arrival, classes=p.classes)


def test_fit_cli_writes_a_preset_a_scenario_can_use(tmp_path):
    trace = ROOT / "workloads" / "traces" / "samples" / "helios_cluster_log.csv"
    out = tmp_path / "mine.yaml"
    result = CliRunner().invoke(fit, [str(trace), "--format", "helios", "--out", str(out)])
    assert result.exit_code == 0, result.output
    preset = load_preset(out)
    assert preset.preset == "mine" and preset.classes
    spec = resolve_preset(PresetWorkload(kind="preset", path="mine.yaml", until="2d"), tmp_path)
    assert len(generate(spec, np.random.default_rng(0))) > 0
