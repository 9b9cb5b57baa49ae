"""Each formula of the model against a value worked by hand."""

import math

import pytest

from simulator.perf.collectives import AlphaBeta, bus_factor, fit_alpha_beta, ring_all_reduce_time
from simulator.perf.layout import bubble_fraction
from simulator.perf.memory import activation_bytes_per_layer
from simulator.perf.model import ModelSpec
from simulator.perf.validate import eq3_flops


def test_six_n_t_flops_and_attention_term():
    m = ModelSpec(layers=2, hidden=64, heads=4, vocab=100, seq_len=32)
    # per layer: QKV 64*192 + out 64*64 + MLP 2*64*256 + norms 4*64 = 12288+4096+32768+256 = 49408
    assert m.layer_params() == 49408
    n = 2 * 49408 + 100 * 64
    assert m.total_params() == n
    # 6*N*s + 12*L*h*s^2
    assert m.training_flops_per_seq() == 6 * n * 32 + 12 * 2 * 64 * 32**2


def test_swiglu_gqa_and_moe_parameter_counts():
    m = ModelSpec(layers=1, hidden=64, heads=8, kv_heads=2, ffn=128, mlp="swiglu", vocab=10, num_experts=4, top_k=2)
    attn = 64 * (64 + 2 * 2 * 8) + 64 * 64  # head_dim 8, two kv heads for K and V
    assert m.attn_params() == attn
    assert m.layer_params() == attn + 4 * 3 * 64 * 128 + 256
    assert m.active_layer_params() == attn + 2 * 3 * 64 * 128 + 256


def test_korthikanti_activation_memory_variants():
    s, b, h, a, t = 2048, 1, 4096, 32, 8
    base = s * b * h * (34 + 5 * a * s / h)
    assert activation_bytes_per_layer(s, b, h, a) == pytest.approx(base)
    assert activation_bytes_per_layer(s, b, h, a, t=t) == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))
    assert activation_bytes_per_layer(s, b, h, a, t=t, sp=True) == pytest.approx(base / t)
    assert activation_bytes_per_layer(s, b, h, a, t=t, sp=True, recompute="selective") == pytest.approx(34 * s * b * h / t)
    assert activation_bytes_per_layer(s, b, h, a, t=t, recompute="selective") == pytest.approx(s * b * h * (10 + 24 / t))
    assert activation_bytes_per_layer(s, b, h, a, t=t, sp=True, recompute="full") == pytest.approx(2 * s * b * h / t)
    # fused attention never stores the s x s scores, like selective recompute
    assert activation_bytes_per_layer(s, b, h, a, flash=True) == pytest.approx(34 * s * b * h)


def test_ring_all_reduce_time():
    # 1 GB over 8 ranks at 100 GB/s with 20 us: 2*7/8 * 10 ms + 20 us
    assert ring_all_reduce_time(1e9, 8, 100e9, 20e-6) == pytest.approx(2 * 7 / 8 * 0.01 + 20e-6)
    assert ring_all_reduce_time(1e9, 1, 100e9, 20e-6) == 0.0
    assert bus_factor("all_gather", 4) == pytest.approx(0.75)
    assert bus_factor("send_recv", 2) == 1.0


def test_alpha_beta_fit_recovers_its_generator():
    truth = AlphaBeta(30e-6, 200e9)
    pts = []
    for size in (2**16, 2**20, 2**24, 2**28):
        t = truth.time("all_reduce", size, 8)
        pts.append(("all_reduce", size, 8, size * bus_factor("all_reduce", 8) / t / 1e9))
    fit = fit_alpha_beta(pts)
    assert fit.alpha_s == pytest.approx(30e-6, rel=1e-6)
    assert fit.bw_Bps == pytest.approx(200e9, rel=1e-6)


def test_bubble_fraction():
    assert bubble_fraction(8, 1, 64) == pytest.approx(7 / 64)
    assert bubble_fraction(8, 2, 64) == pytest.approx(7 / 128)
    assert bubble_fraction(1, 1, 10) == 0.0


def test_megatron_eq3_matches_published_flops_per_iteration():
    # Narayanan et al. Table 1, 1.7B row: 1.5467e16 FLOPs per iteration
    assert eq3_flops(512, 2048, 24, 2304, 51200) == pytest.approx(1.5467e16, rel=1e-3)
    assert math.isclose(eq3_flops(3072, 2048, 128, 25600, 51200), 5.1391e19, rel_tol=1e-3)


def test_head_dim_sets_the_attention_width():
    from simulator.errors import CapsimError
    from simulator.perf import ModelSpec

    # 32 heads of 128 on a 2048-wide model: Q and O are 2048 x 4096, K and V 2048 x (4 x 128) each
    m = ModelSpec(layers=2, hidden=2048, heads=32, kv_heads=4, head_dim=128, vocab=1000, seq_len=1024)
    assert m.attn_width == 4096
    assert m.attn_params() == 2048 * (4096 + 2 * 512) + 4096 * 2048
    assert m.attention_flops_per_seq() == 12.0 * 2 * 4096 * 1024**2
    # without it the width is the hidden size, as before
    plain = ModelSpec(layers=2, hidden=2048, heads=32, vocab=1000, seq_len=1024)
    assert (plain.head_dim, plain.attn_width, plain.attn_params()) == (64, 2048, 4 * 2048 * 2048)
    # a hidden size the heads do not divide needs head_dim
    with pytest.raises(CapsimError, match="head_dim"):
        ModelSpec(layers=2, hidden=1000, heads=16, vocab=1000, seq_len=1024)
    # GPT-OSS: 64 heads of 64 on a 2880-wide model, which hidden / heads (45) would not give
    assert ModelSpec(layers=2, hidden=2880, heads=64, head_dim=64, vocab=1000, seq_len=1024).attn_width == 4096
