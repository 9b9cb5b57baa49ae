"""How sure a prediction is: the error band of the nearest calibration runs, in predict and on model jobs."""

import json
import math

import pytest
import yaml
from click.testing import CliRunner

import simulator
from simulator.errors import CapsimError
from simulator.perf.band import NEAREST, distance, error_band
from simulator.perf.cli import predict
from simulator.perf.stacks import fit_file

SCENARIO = """
name: band
seed: 1
cluster:
  pools:
    - {name: main, device: h100-sxm, nodes: 4, devices_per_node: 8}
workload:
  - {kind: synthetic, jobs: 6, arrival: {process: poisson, rate_per_hour: 2}, gpus: 8, model: llama3-8b,
     tokens: 1.0e9, stack: torchtitan}
  - {kind: synthetic, name: plain, jobs: 4, arrival: {process: poisson, rate_per_hour: 2}, gpus: 1, duration: {dist: constant, value: 1h}}
scheduler: {policy: fifo}
"""


def test_band_is_the_range_of_the_nearest_rows_left_out_errors():
    rows = yaml.safe_load(fit_file().read_text())["rows"]
    for device, stack, size, dtype in (("h100-sxm", "nemo", 70, "bf16"), ("a100-sxm-80gb", "llm-foundry", 7, "bf16"),
                                       ("b200", "nemo", 405, "fp8")):
        band = error_band(device, stack, size, dtype)
        near = sorted(rows, key=lambda r: (distance(r, device, stack, size, dtype), r["name"]))[:NEAREST]
        errs = [r["cv_row_error"] for r in near]
        assert band.rows == tuple(r["name"] for r in near)
        assert (band.low_error, band.high_error) == (min(errs), max(errs))
        lo, hi = band.interval(1000.0)
        assert lo == pytest.approx(1000.0 / (1 + max(errs))) and hi == pytest.approx(1000.0 / (1 + min(errs)))
    # an MoE prediction is judged by MoE rows first: on H100 under nemo there are five of them, ahead of the
    # dense rows of that device and stack
    moe_rows = {r["name"] for r in rows if r.get("moe")}
    assert set(error_band("h100-sxm", "nemo", 235, "fp8", moe=True).rows[:5]) <= moe_rows
    assert not set(error_band("h100-sxm", "nemo", 235, "fp8").rows[:5]) & moe_rows


def test_a_device_or_stack_without_rows_takes_the_errors_the_rows_had_with_theirs_left_out():
    """Predicting on MI300X, which no calibration row ran on, is predicting for a device the fit never saw:
    its nearest rows' errors are the ones they had with their own device left out (stack likewise, both
    together for a device and stack that are both new)."""
    rows = yaml.safe_load(fit_file().read_text())["rows"]
    assert not any(r["device"] == "mi300x" for r in rows) and not any(r["stack"] == "generic" for r in rows)
    for device, stack, columns, kind in (("mi300x", "nemo", ["cv_device_error"], "device-out"),
                                         ("h100-sxm", "generic", ["cv_stack_error"], "stack-out"),
                                         ("mi300x", "generic", ["cv_device_error", "cv_stack_error"],
                                          "device- and stack-out"),
                                         ("h100-sxm", "nemo", ["cv_row_error"], "cross-validated")):
        band = error_band(device, stack, 70, "bf16")
        near = sorted(rows, key=lambda r: (distance(r, device, stack, 70, "bf16"), r["name"]))[:NEAREST]
        errs = [r[c] for r in near for c in columns]
        assert (band.low_error, band.high_error) == (min(errs), max(errs))
        assert band.kind.startswith(kind) and band.describe().startswith(kind)


def test_predict_reports_its_band_and_the_zoo_model():
    args = ["--device", "h100-sxm", "--model", "llama3-8b", "--gpus", "8", "--global-batch", "64", "--json"]
    out = json.loads(CliRunner().invoke(predict, args).output)
    lo, hi = out["band"]["tokens_per_s_per_gpu"]
    assert lo <= hi and len(out["band"]["nearest_runs"]) == NEAREST
    assert out["caveats"] == []
    borrowed = json.loads(CliRunner().invoke(predict, [*args[:1], "mi325x", *args[2:]]).output)
    assert "borrowed from mi300x" in borrowed["caveats"][0]
    assert "no measured fused-attention tables: h100-sxm's" in borrowed["caveats"][1]
    missing = CliRunner().invoke(predict, ["--device", "h100-sxm", "--gpus", "8", "--global-batch", "8"])
    assert missing.exit_code != 0 and "--layers" in missing.output


def test_model_jobs_carry_their_runtime_band_and_stack():
    res = simulator.run(SCENARIO)
    jobs = res.jobs
    model = jobs[jobs["job_id"].str.startswith("synthetic")]
    plain = jobs[jobs["job_id"].str.startswith("plain")]
    band = error_band("h100-sxm", "torchtitan", 8.03)
    assert (model["runtime_band_low"] == 1 + band.low_error).all()
    assert (model["runtime_band_high"] == 1 + band.high_error).all()
    assert plain["runtime_band_low"].isna().all()
    from simulator.perf import job_runtime
    from simulator.perf.zoo import load_model

    spec = load_model("llama3-8b").model_spec()
    expected = job_runtime("h100-sxm", spec, 8, tokens=1.0e9, layout={"stack": "torchtitan"})
    assert model["duration"].iloc[0] == pytest.approx(expected)
    assert not math.isclose(expected, job_runtime("h100-sxm", spec, 8, tokens=1.0e9))


def test_unknown_stack_on_a_model_job_is_a_validation_error():
    with pytest.raises(CapsimError, match="unknown stack 'nope'"):
        simulator.run(SCENARIO.replace("stack: torchtitan", "stack: nope"))


def test_serving_band_is_the_range_of_the_nearest_serving_rows_errors():
    """The serving band is built from the serving validation set's own errors (nothing fitted): for the
    device, stack, precision and size of one row, that row is among the nearest, the band spans exactly
    the nearest rows' speed errors, and the intervals invert them (speeds divide, times multiply)."""
    from simulator.perf.band import NEAREST_SERVING, distance, serving_band
    from simulator.perf.serving_validation import load_rows, predict_serving_row, row_errors

    rows = row_errors()
    runs = {r["name"]: r for r in load_rows()}
    row = next(r for r in rows if r["name"] == "trtllm017-llama31-8b-h100-fp8-128-2048")
    run = runs[row["name"]]
    assert row["speed_error"] == pytest.approx(predict_serving_row(run) / float(run["value"]) - 1.0)
    band = serving_band(row["device"], row["stack"], row["params_b"], row["dtype"])
    assert row["name"] in band.rows and len(band.rows) == NEAREST_SERVING and band.kind == "measured"
    nearest = sorted(rows, key=lambda r: (distance(r, row["device"], row["stack"], row["params_b"], row["dtype"]),
                                          r["name"]))[:NEAREST_SERVING]
    errs = [r["speed_error"] for r in nearest]
    assert (band.low_error, band.high_error) == (min(errs), max(errs))
    lo, hi = band.interval(1000.0)
    assert (lo, hi) == pytest.approx((1000.0 / (1 + max(errs)), 1000.0 / (1 + min(errs))))
    assert band.time_interval(0.01) == pytest.approx((0.01 * (1 + min(errs)), 0.01 * (1 + max(errs))))


def test_a_band_holds_about_four_left_out_runs_in_five():
    # NEAREST is chosen so: each calibration row's left-out error against the band of its nearest other rows
    rows = yaml.safe_load(fit_file().read_text())["rows"]
    inside = 0
    for r in rows:
        others = [o for o in rows if o["name"] != r["name"]]
        near = sorted(others, key=lambda o: (distance(o, r["device"], r["stack"], r["params_b"], r["dtype"],
                                                      r["moe"]), o["name"]))[:NEAREST]
        errs = [o["cv_row_error"] for o in near]
        inside += min(errs) <= r["cv_row_error"] <= max(errs)
    assert 0.75 <= inside / len(rows) <= 0.85
