"""`capsim predict`, the Python API, bad input and the engine's job_runtime."""

import json
import time

import pytest
from click.testing import CliRunner

from simulator.errors import CapsimError
from simulator.perf import ModelSpec, default_layout, job_runtime, predict_training
from simulator.perf.cli import predict

LLAMA8B = "--layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --mlp swiglu --seq-len 8192 --vocab 128256"


def run(args: str):
    return CliRunner().invoke(predict, args.split())


def test_predict_json_contract():
    r = run(f"--device h100-sxm --gpus 64 {LLAMA8B} --global-batch 512 --tp 2 --zero 1 "
            "--sequence-parallel --recompute selective --json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("step_time_s", "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu", "memory_per_device_gib", "fits"):
        assert key in out
    assert out["layout"]["dp"] == 32
    assert out["tokens_per_s_per_gpu"] == pytest.approx(512 * 8192 / out["step_time_s"] / 64)
    assert 0.2 < out["mfu"] < 0.8 and out["fits"] is True
    parts = out["breakdown"]
    total = parts["compute_s"] + parts["exposed_comm_s"] + parts["bubble_s"] + parts["optimizer_s"]
    assert total == pytest.approx(out["step_time_s"])


def test_device_and_model_may_be_named_as_tables_and_model_cards_name_them():
    by_id = run("--device h100-sxm --gpus 8 --model llama3-8b --global-batch 16 --json")
    spelled = CliRunner().invoke(predict, ["--device", "NVIDIA H100 80GB HBM3", "--gpus", "8", "--model",
                                           "meta-llama/Llama-3.1-8B", "--global-batch", "16", "--json"])
    assert by_id.exit_code == spelled.exit_code == 0, spelled.output
    assert json.loads(spelled.output)["step_time_s"] == json.loads(by_id.output)["step_time_s"]


def test_predict_table_output():
    r = run(f"--device a100-sxm-80gb --gpus 8 {LLAMA8B} --global-batch 16 --tp 8 --recompute full")
    assert r.exit_code == 0, r.output
    assert "step time" in r.output and "MFU" in r.output


@pytest.mark.parametrize("args, where", [
    ("--device h100-sxm --gpus 6 --tp 4", "--gpus"),
    ("--device h100-sxm --gpus 24 --tp 3", "--tp"),
    ("--device nope --gpus 8", "unknown device"),
    ("--device h100-sxm --gpus 8 --pp 3", "--gpus"),
    ("--device h100-sxm --gpus 16 --global-batch 3", "--global-batch"),
])
def test_bad_layouts_name_the_argument(args, where):
    base = "--layers 32 --hidden 4096 --heads 32 --seq-len 2048 --vocab 32000"
    full = f"{base} {args}" + ("" if "--global-batch" in args else " --global-batch 48")
    r = run(full)
    assert r.exit_code == 2
    assert where in r.output


def test_more_memory_saving_options_use_less_memory():
    m = ModelSpec(layers=32, hidden=4096, heads=32, seq_len=4096, vocab=32000)
    mem = {rc: predict_training("h100-sxm", m, 8, 8, recompute=rc, flash=False).memory_per_device_gib
           for rc in ("none", "selective", "full")}
    assert mem["none"] > mem["selective"] > mem["full"]
    z = [predict_training("h100-sxm", m, 8, 8, zero=k).memory_per_device_gib for k in (0, 1, 2, 3)]
    assert z == sorted(z, reverse=True)


def test_pipeline_bubble_shrinks_with_interleaving_and_fp8_is_faster():
    m = ModelSpec(layers=32, hidden=4096, heads=32, seq_len=2048, vocab=32000)
    p1 = predict_training("h100-sxm", m, 16, 32, tp=4, pp=4)
    p2 = predict_training("h100-sxm", m, 16, 32, tp=4, pp=4, virtual_stages=2)
    assert p2.breakdown.bubble_s < p1.breakdown.bubble_s
    assert predict_training("h100-sxm", m, 16, 32, tp=4, pp=4, dtype="fp8").step_time_s < p1.step_time_s


def test_newer_devices_are_faster():
    m = ModelSpec(layers=32, hidden=4096, heads=32, seq_len=2048, vocab=32000)
    t = {d: predict_training(d, m, 8, 64, tp=1, zero=1).step_time_s for d in ("v100-sxm-32gb", "a100-sxm-80gb", "h100-sxm", "b200")}
    assert t["v100-sxm-32gb"] > t["a100-sxm-80gb"] > t["h100-sxm"] > t["b200"]


def test_job_runtime_default_layout_and_cache():
    model = {"name": "gpt-13b", "layers": 40, "hidden": 5120, "heads": 40, "vocab": 50257, "seq_len": 2048}
    lay = default_layout("h100-sxm", ModelSpec.from_dict(model), 64, 1024)
    assert lay.tp == 8 and lay.gpus == 64
    t0 = time.perf_counter()
    a = job_runtime("h100-sxm", model, 64, tokens=1e9)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = job_runtime("h100-sxm", model, 64, tokens=1e9)
    assert a == b and time.perf_counter() - t0 < first
    # twice the tokens, twice the time; twice the GPUs, less time
    assert job_runtime("h100-sxm", model, 64, tokens=2e9) == pytest.approx(2 * a, rel=0.02)
    assert job_runtime("h100-sxm", model, 128, tokens=1e9) < a
    assert job_runtime("h100-sxm", model, 64, steps=10, layout={"tp": 4, "pp": 2}) > 0
    with pytest.raises(CapsimError, match="exactly one"):
        job_runtime("h100-sxm", model, 64)


def test_default_layout_adds_pipeline_stages_when_memory_does_not_fit():
    big = ModelSpec(layers=96, hidden=12288, heads=96, vocab=51200, seq_len=2048)
    lay = default_layout("a100-sxm-80gb", big, 1024, 1536)
    assert lay.tp == 8 and lay.pp > 1


@pytest.mark.parametrize("model", ["qwen2.5-72b", "mixtral-8x22b"])
def test_a_layout_that_does_not_fit_comes_with_one_that_does(model):
    # TP1 does not hold a 72B dense or a 141B MoE model on 80 GB parts; predict names the flags of the
    # layout a model-based job would take, and those flags fit
    base = ["--device", "h100-sxm", "--model", model, "--gpus", "64", "--global-batch", "512", "--seq-len", "4096"]
    out = json.loads(CliRunner().invoke(predict, base + ["--json"]).output)
    assert not out["fits"] and out["fitting_layout"]
    text = CliRunner().invoke(predict, base).output
    assert f"a layout that fits       {out['fitting_layout']}" in text
    again = json.loads(CliRunner().invoke(predict, base + out["fitting_layout"].split() + ["--json"]).output)
    assert again["fits"] and again["fitting_layout"] is None


def test_a_loss_in_chunks_keeps_one_chunks_logits():
    # Gemma 3 12B at 32K on v6e (vocab 262144, tp 1): fp32 logits of one 32768-token sequence are
    # 4 x 32768 x 262144 B = 32 GiB; over MaxText's num_vocab_tiling 16 chunks, 2 GiB live
    from dataclasses import replace

    from simulator.perf.maxtext_row import read_maxtext_keys
    from simulator.perf.published import _layout
    from simulator.perf.zoo import load_model

    m = replace(load_model("gemma3-12b").model_spec(), seq_len=32768)
    kw = dict(zero=3, recompute="full", stack="maxtext")
    whole, chunked = (predict_training("tpu-v6e", m, 256, 256, loss_chunks=n, **kw) for n in (1, 16))
    assert whole.memory_per_device_gib - chunked.memory_per_device_gib == pytest.approx(32 * 15 / 16)
    assert not whole.fits and chunked.fits  # the recipe runs it on 32 GiB chips
    assert whole.step_time_s == chunked.step_time_s  # memory only: the same FLOPs, chunk by chunk
    # the flag, a row's MaxText key (top level or in its layout), and a bad value naming the flag
    out = CliRunner().invoke(predict, ["--device", "tpu-v6e", "--model", "gemma3-12b", "--seq-len", "32768",
                                       "--gpus", "256", "--global-batch", "256", "--zero", "3", "--loss-chunks", "16",
                                       "--json"])
    assert json.loads(out.output)["layout"]["loss_chunks"] == 16
    run = {"gpus": 256, "num_vocab_tiling": 16}
    read_maxtext_keys(run)
    assert run["layout"]["loss_chunks"] == 16
    layout, notes = _layout({"layout": {"num_vocab_tiling": 16}, "stack": "maxtext"})
    assert layout["loss_chunks"] == 16 and not any("ignored" in n for n in notes)
    with pytest.raises(CapsimError) as err:
        predict_training("tpu-v6e", m, 256, 256, loss_chunks=0, **kw)
    assert err.value.where == "--loss-chunks"
