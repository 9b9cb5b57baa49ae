"""capsim calibrate with the numpy backend; the torch path only where torch is installed."""

import importlib.util

import pytest
import yaml
from click.testing import CliRunner

from simulator.calibrate.cli import calibrate
from simulator.calibrate.fit import merge_measurements, write_profile_atomic
from simulator.perf.profile import profile_from_dict
from simulator.profiles import load_profile_yaml


def test_numpy_calibrate_writes_a_loadable_profile_and_refits(tmp_path):
    out = tmp_path / "cpu.yaml"
    r = CliRunner().invoke(calibrate, ["--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(out.read_text())
    gemm = data["measured"]["gemm"]
    assert gemm and all(p["tflops"] > 0 and p["date"] and "numpy" in p["source"] for p in gemm)
    assert data["measured"]["hbm"][0]["gbs"] > 0
    assert data["fitted"]["gemm_efficiency"]
    prof = profile_from_dict(data, source=str(out))
    assert prof.peak("bf16") == pytest.approx(max(p["tflops"] for p in gemm), rel=1e-3)
    # a second run replaces its own points instead of piling them up
    assert CliRunner().invoke(calibrate, ["--quick", "--out", str(out)]).exit_code == 0
    again = yaml.safe_load(out.read_text())
    assert len(again["measured"]["gemm"]) == len(gemm)
    assert not list(tmp_path.glob(".*.tmp"))


def test_merge_keeps_other_sources_and_fits_collectives():
    prof = dict(load_profile_yaml("h100-sxm"))
    before = len(prof["measured"]["gemm"])
    results = {"device_name": "Test GPU", "backend": "torch 9", "gemm": [
        {"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16", "tflops": 700.0}],
        "hbm": [{"kernel": "copy", "bytes": 2**31, "gbs": 3000.0}], "attention": [],
        "collectives": [{"op": "all_reduce", "bytes": 2**20, "group": 8, "scope": "scale_up", "busbw_gbs": 50.0}]}
    merged = merge_measurements(prof, results, date="2026-01-01")
    assert len(merged["measured"]["gemm"]) == before + 1
    assert merged["measured"]["gemm"][-1]["source"] == "capsim calibrate on Test GPU (torch 9)"
    assert merged["fitted"]["scale_up_alpha_beta"]["bw_gbs"] > 0


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("old: 1\n")
    write_profile_atomic(path, {"new": 2})
    assert yaml.safe_load(path.read_text()) == {"new": 2}


def test_numpy_backend_refuses_cuda(tmp_path):
    r = CliRunner().invoke(calibrate, ["--device", "cuda", "--backend", "numpy", "--out", str(tmp_path / "x.yaml")])
    assert r.exit_code != 0 and "--device" in r.output


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is an optional extra, not installed")
def test_torch_backend_quick(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    r = CliRunner().invoke(calibrate, ["--device", "cuda", "--backend", "torch", "--quick", "--out", str(tmp_path / "g.yaml")])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "g.yaml").read_text())["measured"]["gemm"]


def test_torch_backend_without_torch_is_a_clear_error(tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed")
    r = CliRunner().invoke(calibrate, ["--device", "cuda", "--backend", "torch", "--out", str(tmp_path / "g.yaml")])
    assert r.exit_code != 0 and "PyTorch" in r.output


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is an optional extra, not installed")
def test_torch_backend_on_cpu_writes_measured_points(tmp_path):
    out = tmp_path / "cpu.yaml"
    r = CliRunner().invoke(calibrate, ["--device", "cpu", "--backend", "torch", "--out", str(out)])
    assert r.exit_code == 0, r.output
    measured = yaml.safe_load(out.read_text())["measured"]
    assert {p["dtype"] for p in measured["gemm"]} == {"fp32", "bf16"}
    assert all(p["tflops"] > 0 and p["date"] and "torch" in p["source"] for p in measured["gemm"])
    assert measured["hbm"][0]["gbs"] > 0 and measured["attention"][0]["tflops"] > 0
