"""Sliding-window (local) attention against hand-worked values: the layer pattern, model FLOPs of the band,
the KV cache a windowed layer keeps and what decode reads of it, the measured windowed kernel rates and the
fallback where none were measured, the inputs that accept it and the values refused; and models without a
window priced exactly as before."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.decode import decode_attention_time, decode_kv_read_bytes
from simulator.perf.inference import kv_cache_bytes, predict_inference
from simulator.perf.kernels import (
    attention_efficiency,
    attention_time,
    band_pairs,
    block_band_pairs,
    memory_time,
    window_lenders,
)
from simulator.perf.layout import make_layout
from simulator.perf.maxtext_row import read_maxtext_keys
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.published import layer_types_global_every, run_model
from simulator.perf.zoo import load_model

GEMMA3 = load_model("gemma3-27b").model_spec()


def _no_window(m: ModelSpec) -> ModelSpec:
    from dataclasses import replace

    return replace(m, sliding_window=None, global_every=None)


# ---- the layer pattern ------------------------------------------------------------------------------

def test_gemma3_27b_has_ten_global_and_52_local_layers():
    # HF sliding_window_pattern 6: layer i is global when (i + 1) % 6 == 0 -> layers 5, 11, ..., 59: 10 of 62
    assert [i for i in range(62) if (i + 1) % 6 == 0] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]
    assert (GEMMA3.full_layers(), GEMMA3.windowed_layers()) == (10, 52)
    m = ModelSpec(layers=32, hidden=4096, heads=32, sliding_window=4096)  # Mistral: every layer windowed
    assert (m.full_layers(), m.windowed_layers()) == (0, 32)
    assert ModelSpec(layers=32, hidden=4096, heads=32).windowed_layers() == 0


def test_kv_span():
    assert GEMMA3.kv_span("full", 32768) == 32768
    assert GEMMA3.kv_span("windowed", 32768) == 1024
    assert GEMMA3.kv_span("windowed", 500) == 500
    with pytest.raises(ValueError):
        GEMMA3.kv_span("local", 10)


# ---- model FLOPs ---------------------------------------------------------------------------------------

def test_windowed_layer_flops_are_the_band():
    base = dict(layers=4, hidden=1024, heads=8, seq_len=8192, vocab=1000)
    full = ModelSpec(**base)
    win = ModelSpec(**base, sliding_window=512)
    every2 = ModelSpec(**base, sliding_window=512, global_every=2)
    h, s = 1024, 8192
    assert full.attention_flops_per_seq() == 12 * 4 * h * s * s
    assert win.attention_flops_per_seq() == 12 * 4 * h * s * 512          # 12*h*s*min(w, s) a layer
    assert every2.attention_flops_per_seq() == 12 * h * s * (2 * s + 2 * 512)
    # a window at least the sequence is full attention
    for w in (8192, 20000):
        same = ModelSpec(**base, sliding_window=w, global_every=2)
        assert same.attention_flops_per_seq() == pytest.approx(full.attention_flops_per_seq(), rel=1e-15)


def test_gemma3_attention_flops_by_hand():
    h, s = 32 * 128, 32768
    assert GEMMA3.attention_flops_per_seq() == 12 * h * s * (10 * s + 52 * 1024)


# ---- KV cache and decode -----------------------------------------------------------------------------

def test_gemma3_kv_cache_at_32k_by_hand():
    # per token and layer: K and V of 16 heads of 128 in bf16 = 2 * 16 * 128 * 2 = 8192 B
    # 10 global layers hold 32768 tokens, 52 local layers hold 1024: (327,680 + 53,248) tokens x 8192 B
    per_token_layer = 2 * 16 * 128 * 2
    expected = (10 * 32768 + 52 * 1024) * per_token_layer
    assert expected == 3_120_562_176
    assert kv_cache_bytes(GEMMA3, 1, 1, 32768) == expected
    assert kv_cache_bytes(_no_window(GEMMA3), 1, 1, 32768) == 62 * 32768 * per_token_layer
    # below the window every layer holds the whole context
    assert kv_cache_bytes(GEMMA3, 1, 1, 1000) == kv_cache_bytes(_no_window(GEMMA3), 1, 1, 1000)


def test_decode_reads_at_most_the_window_on_windowed_layers():
    mistral = load_model("mistral-7b").model_spec()
    per_token = 2 * 8 * 128 * 2 * 32  # K and V, 8 KV heads of 128, bf16, 32 layers
    for ctx in (8192, 32768, 100_000):
        assert decode_kv_read_bytes(mistral, 1, 4, ctx) == 4 * 4096 * per_token
    # the attention time of one decode step does not grow past the window
    t1 = decode_attention_time("h100-sxm", mistral, 1, 8, 8192, "bf16")
    t2 = decode_attention_time("h100-sxm", mistral, 1, 8, 65536, "bf16")
    assert t1 == t2 == memory_time("h100-sxm", 8 * 4096 * 2 * 8 * 128 * 2)


def test_predict_inference_shows_the_smaller_cache():
    kw = dict(batch=16, prompt_len=30000, output_len=1000)
    win = predict_inference("h100-sxm", GEMMA3, **kw)
    full = predict_inference("h100-sxm", _no_window(GEMMA3), **kw)
    ctx = 31000
    assert win.kv_cache_gib * 2**30 == pytest.approx(16 * (10 * ctx + 52 * 1024) * 8192)
    assert full.kv_cache_gib * 2**30 == pytest.approx(16 * 62 * ctx * 8192)
    assert win.kv_cache_gib < full.kv_cache_gib / 5
    assert win.output_tokens_per_s > full.output_tokens_per_s


# ---- kernels -----------------------------------------------------------------------------------------

def test_band_pairs_is_cudnns_count():
    # cuDNN's GPT-OSS benchmark on GB200: batch 2, 128 heads of 64, s 2048, w 128, forward 0.109 ms, 153 TFLOP/s
    flops = 4 * 2 * 128 * 64 * band_pairs(2048, 128)
    assert band_pairs(2048, 128) == 2048 * 128 - 128 * 127 / 2
    assert flops / 0.109e-3 / 1e12 == pytest.approx(153, abs=0.5)
    # backward at 2.5x the forward count: s 32768, 3.692 ms, 186 TFLOP/s
    assert 2.5 * 4 * 2 * 128 * 64 * band_pairs(32768, 128) / 3.692e-3 / 1e12 == pytest.approx(186, abs=0.5)
    assert band_pairs(1000, 4096) == 1000 * 1000 - 1000 * 999 / 2  # w >= s: the causal triangle


def test_windowed_lookup_uses_the_measured_window_points_on_gb200():
    peak = load_profile("gb200").peak("bf16")
    assert attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", 128) == pytest.approx(161 / peak)
    assert attention_efficiency("gb200", "cudnn", "bwd", True, 64, 8192, "bf16", 128) == pytest.approx(187 / peak)
    # far below the dense causal rate at the same length, and than the dense table at seq = window
    dense = attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16")
    assert attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", 128) < dense / 3
    # the windowed points never enter the dense table
    assert dense == attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", None)
    # the nearest measured window within a factor 2 (gb200 measured 128 only): 256 uses it, 1024 does not
    assert (attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", 256)
            == attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", 128))
    assert (attention_efficiency("gb200", "cudnn", "fwd", True, 64, 4096, "bf16", 1024)
            == attention_efficiency("gb200", "cudnn", "fwd", True, 64, 1024, "bf16"))
    # h200 measured window 1024 (64 q / 8 kv heads): Gemma 3's window uses it
    peak_h200 = load_profile("h200-sxm").peak("bf16")
    assert attention_efficiency("h200-sxm", "cudnn", "bwd", True, 128, 8192, "bf16", 1024) == pytest.approx(300 / peak_h200)


def test_windowed_lookup_falls_back_to_the_dense_table_at_the_window():
    # h100-sxm has no windowed points; the only Hopper device that has (h200-sxm) measured window 1024, so
    # window 128 finds none within a factor 2: dense table at seq = window
    assert not any(a.window for a in load_profile("h100-sxm").attention)
    assert (attention_efficiency("h100-sxm", "cudnn", "fwd", True, 128, 32768, "bf16", 128)
            == attention_efficiency("h100-sxm", "cudnn", "fwd", True, 128, 128, "bf16"))
    # a100 (Ampere): no device of its architecture measured a window
    assert (attention_efficiency("a100-sxm-80gb", "fa2", "fwd", True, 128, 8192, "bf16", 1024)
            == attention_efficiency("a100-sxm-80gb", "fa2", "fwd", True, 128, 1024, "bf16"))


def test_windowed_lookup_borrows_a_window_measured_on_the_same_architecture():
    # b200 measured no window and its lender (h100-sxm) neither: GB200's cuDNN window-128 band (the same
    # Blackwell GPU), as a fraction of peak: 161 TFLOP/s at s 4096 forward, 187 at 8192 backward
    assert window_lenders("b200")[:2] == ("b200", "h100-sxm") and "gb200" in window_lenders("b200")
    peak = load_profile("gb200").peak("bf16")
    assert attention_efficiency("b200", "cudnn", "fwd", True, 64, 4096, "bf16", 128) == pytest.approx(161 / peak)
    assert attention_efficiency("b200", "cudnn", "bwd", True, 64, 8192, "bf16", 128) == pytest.approx(187 / peak)
    # h100-sxm takes h200-sxm's window-1024 points: 300 TFLOP/s backward at 8192
    peak_h200 = load_profile("h200-sxm").peak("bf16")
    assert attention_efficiency("h100-sxm", "cudnn", "bwd", True, 64, 8192, "bf16", 1024) == pytest.approx(300 / peak_h200)
    # never across architectures: the TPUs (splash) find no GPU's window
    assert not any(load_profile(d).arch != "tpu" for d in window_lenders("tpu-v6e")[2:])


# ---- block-sparse kernels: whole tiles --------------------------------------------------------------

def _tiles_by_brute_force(seq: int, window: int, tq: int, tk: int) -> int:
    """Tiles holding at least one (query, key) pair of the causal band: key k <= query q < k + window."""
    q = np.arange(seq)[:, None]
    k = np.arange(seq)[None, :]
    band = (k <= q) & (q < k + window)
    nq, nk = -(-seq // tq), -(-seq // tk)
    padded = np.zeros((nq * tq, nk * tk), bool)
    padded[:seq, :seq] = band
    return int(padded.reshape(nq, tq, nk, tk).any(axis=(1, 3)).sum())


@pytest.mark.parametrize("seq, window, tile", [(8192, 128, (1024, 1024)), (8192, 128, (2048, 2048)),
                                               (4096, 1024, (512, 2048)), (4096, 1024, (1024, 1024)),
                                               (1000, 128, (512, 512)), (3000, 700, (256, 128)),
                                               (512, 4096, (128, 128)), (640, 1, (128, 256))])
def test_block_band_pairs_counts_every_touched_tile(seq, window, tile):
    assert block_band_pairs(seq, window, tile) == _tiles_by_brute_force(seq, window, *tile) * tile[0] * tile[1]


def test_block_band_pairs_by_hand():
    # GPT-OSS on TPU7x: 8192 tokens, window 128, 1024-token tiles: the first query block touches its own
    # tile, the other seven their own and the one before: 15 tiles, 16x the band's ~8192 x 128 pairs
    assert block_band_pairs(8192, 128, (1024, 1024)) == 15 * 1024**2
    # Gemma 3 on v6e, backward dkv tiles 512 x 2048, window 1024, 32768 tokens: query blocks 0-3 touch one
    # key tile; from block 4 on they go 2, 2, 1, 1 in each run of four: 4 + 15 * 6 = 94 tiles
    assert block_band_pairs(32768, 1024, (512, 2048)) == 94 * 512 * 2048


def test_splash_band_costs_its_tiles_as_dense_rows_of_their_length():
    # 15 tiles of 1024^2 over 8192 queries = 1920 keys a query: the same work and bytes as a dense
    # non-causal kernel over 15 * 1024^2 / 1920^2 sequences of 1920 tokens (8192 queries in all)
    win = attention_time("tpu-v6e", 1, 8, 8, 8192, 8192, 128, "bf16", "splash", window=128, tile=(1024, 1024))
    batch = 15 * 1024**2 / 1920**2
    dense = attention_time("tpu-v6e", batch, 8, 8, 1920, 1920, 128, "bf16", "splash", causal=False)
    assert win == pytest.approx(dense, rel=1e-12)
    # larger tiles cost more; the default tile is MaxText's 512
    small = attention_time("tpu-v6e", 1, 8, 8, 8192, 8192, 128, "bf16", "splash", window=128, tile=(512, 512))
    assert small < win
    assert attention_time("tpu-v6e", 1, 8, 8, 8192, 8192, 128, "bf16", "splash", window=128) == small
    # GPU kernels keep the measured band rate: the tile does not enter
    assert (attention_time("gb200", 1, 8, 8, 8192, 8192, 64, "bf16", "cudnn", window=128, tile=(1024, 1024))
            == attention_time("gb200", 1, 8, 8, 8192, 8192, 64, "bf16", "cudnn", window=128))


def test_attention_block_in_layouts_rows_and_the_cli():
    m = ModelSpec(layers=4, hidden=1024, heads=8, seq_len=8192, vocab=1000, sliding_window=128)
    lay = make_layout(m, 4, 4, attention_block=1024)
    assert (lay.attention_block, lay.attention_block_bwd) == ((1024, 1024), (1024, 1024))
    lay = make_layout(m, 4, 4, attention_block=[1024, 512], attention_block_bwd=2048)
    assert (lay.attention_block, lay.attention_block_bwd) == ((1024, 512), (2048, 2048))
    for bad in (0, [512], [512, 0], "big", True):
        with pytest.raises(CapsimError) as err:
            make_layout(m, 4, 4, attention_block=bad)
        assert err.value.where == "--attention-block"
    # a step on TPU: bigger tiles, more time; a model without a window does not see them
    kw = dict(stack="maxtext", zero=3)
    t = [predict_training("tpu-v6e", m, 4, 4, attention_block=b, **kw).step_time_s for b in (512, 2048)]
    assert t[0] < t[1]
    dense = _no_window(m)
    assert (predict_training("tpu-v6e", dense, 4, 4, attention_block=2048, **kw).step_time_s
            == predict_training("tpu-v6e", dense, 4, 4, **kw).step_time_s)
    # a row written with MaxText's names reads the forward and dkv tiles (unnamed sizes: base.yml's 512)
    run = {"gpus": 4, "layout": {}, "sa_block_q": 1024, "sa_block_kv": 1024, "sa_block_kv_dkv": 2048}
    read_maxtext_keys(run)
    assert run["layout"]["attention_block"] == [1024, 1024]
    assert run["layout"]["attention_block_bwd"] == [512, 2048]
    out = CliRunner().invoke(main, ["predict", "--device", "tpu-v6e", "--model", "gemma3-12b", "--seq-len", "8192",
                                    "--gpus", "16", "--global-batch", "16", "--zero", "3", "--stack", "maxtext",
                                    "--attention-block", "1024", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["layout"]["attention_block"] == [1024, 1024]


def test_windowed_attention_time_by_hand_on_gb200():
    # fwd, batch 1, 128 heads of 64 over 8192 tokens, window 128: band FLOPs at 165 TFLOP/s x sustained clock
    from simulator.perf.kernels import KERNEL_OVERHEAD_S, sustained_fraction

    flops = 4 * 128 * 64 * band_pairs(8192, 128)
    rate = 165e12 * sustained_fraction("gb200")
    t = attention_time("gb200", 1, 128, 128, 8192, 8192, 64, "bf16", "cudnn", window=128)
    assert t == pytest.approx(flops / rate + KERNEL_OVERHEAD_S, rel=1e-9)  # compute-bound: 1.15e11 FLOPs
    # a window at least the sequence prices full causal attention exactly
    assert (attention_time("gb200", 1, 8, 8, 4096, 4096, 128, "bf16", "cudnn", window=4096)
            == attention_time("gb200", 1, 8, 8, 4096, 4096, 128, "bf16", "cudnn"))


def test_training_step_windowed_attention_is_cheaper_and_equal_when_window_covers_seq():
    base = dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu", vocab=32000, seq_len=16384)
    kw = dict(tp=1, cp=1, micro_batch=1, stack="nemo")
    full = predict_training("gb200", ModelSpec(**base), 8, 64, **kw)
    win = predict_training("gb200", ModelSpec(**base, sliding_window=4096), 8, 64, **kw)
    same = predict_training("gb200", ModelSpec(**base, sliding_window=16384), 8, 64, **kw)
    assert win.step_time_s < full.step_time_s
    assert same.step_time_s == full.step_time_s


def test_moe_carries_the_window_through_dense_view():
    from simulator.perf.moe import dense_view

    m = load_model("gpt-oss-20b").model_spec()
    v = dense_view(m, 2880)
    assert (v.sliding_window, v.global_every) == (128, 2)


# ---- inputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, key", [
    (dict(sliding_window=0), "--sliding-window"),
    (dict(sliding_window=-5), "--sliding-window"),
    (dict(sliding_window=1.5), "--sliding-window"),
    (dict(sliding_window=128, global_every=0), "--global-every"),
    (dict(global_every=2), "--global-every"),
])
def test_bad_window_values_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(CapsimError) as err:
        ModelSpec(layers=4, hidden=256, heads=4, **kwargs)
    assert err.value.where == key


def test_runs_file_keys():
    notes: list[str] = []
    m = run_model({"model": {"num_hidden_layers": 62, "hidden_size": 5376, "num_attention_heads": 32,
                             "head_dim": 128, "vocab_size": 262144, "sliding_window": 1024,
                             "sliding_window_pattern": 6}, "seq_len": 4096}, notes, training=True)
    assert (m.sliding_window, m.global_every) == (1024, 6)
    types = ["sliding_attention", "full_attention"] * 12
    notes = []
    m = run_model({"model": {"layers": 24, "hidden": 2880, "heads": 64, "head_dim": 64, "vocab": 201088,
                             "sliding_window": 128, "layer_types": types, "attention_sinks": True},
                   "seq_len": 4096}, notes, training=True)
    assert (m.sliding_window, m.global_every) == (128, 2)
    assert any("attention_sinks ignored" in n for n in notes)
    # Qwen-style config: a sliding_window it does not use
    notes = []
    m = run_model({"model": {"layers": 4, "hidden": 256, "heads": 4, "vocab": 100, "sliding_window": 4096,
                             "use_sliding_window": False}, "seq_len": 512}, notes, training=True)
    assert m.sliding_window is None and any("use_sliding_window is false" in n for n in notes)


def test_layer_types_conversion():
    s, f = "sliding_attention", "full_attention"
    assert layer_types_global_every([s] * 5 + [f] + [s] * 5 + [f] + [s, s]) == 6
    assert layer_types_global_every([s] * 4) is None
    for bad in ([s, f, f, s], [f, s, f, s], [s, f, s, s, f], [f, f], [s, "linear_attention"], []):
        with pytest.raises(CapsimError) as err:
            layer_types_global_every(bad)
        assert err.value.where == "model.layer_types"


def test_cli_flags_and_turning_a_zoo_window_off():
    runner = CliRunner()
    base = ["predict-inference", "--device", "h100-sxm", "--model", "gemma3-27b", "--batch", "16",
            "--prompt-len", "30000", "--output-len", "1000", "--json"]
    win = json.loads(runner.invoke(main, base).output)
    full = json.loads(runner.invoke(main, base + ["--sliding-window", "0"]).output)
    assert win["kv_cache_gib"] == pytest.approx(16 * (10 * 31000 + 52 * 1024) * 8192 / 2**30)
    assert full["kv_cache_gib"] == pytest.approx(16 * 62 * 31000 * 8192 / 2**30)
    shaped = runner.invoke(main, ["predict", "--device", "gb200", "--layers", "32", "--hidden", "4096", "--heads", "32",
                                  "--vocab", "32000", "--seq-len", "8192", "--gpus", "8", "--global-batch", "64",
                                  "--sliding-window", "4096", "--global-every", "2", "--json"])
    assert shaped.exit_code == 0, shaped.output
    bad = runner.invoke(main, base + ["--global-every", "2", "--sliding-window", "0"])
    assert bad.exit_code != 0 and "--global-every" in bad.output


# ---- zoo ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, total, active", [("gpt-oss-120b", 116.8e9, 5.1e9), ("gpt-oss-20b", 20.9e9, 3.6e9),
                                                 ("gemma3-27b", 27.0e9, None), ("gemma3-12b", 11.771e9, None),
                                                 ("mistral-7b", 7.24e9, None)])
def test_zoo_entries_match_published_counts(name, total, active):
    m = load_model(name).model_spec()
    assert m.total_params() == pytest.approx(total, rel=0.01)
    if active:
        assert m.active_params() == pytest.approx(active, rel=0.02)
