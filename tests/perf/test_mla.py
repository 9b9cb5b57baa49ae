"""Multi-head Latent Attention (DeepSeek-V2/V3) against hand-worked values: parameters, the latent KV
cache and its decode read, attention FLOPs, the GEMM shapes Megatron-Core and vLLM run, the inputs
that accept it and the values refused; and models without MLA priced exactly as before it."""

import json

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.errors import CapsimError
from simulator.perf.decode import decode_kv_read_bytes, decode_proj_shapes, decode_step
from simulator.perf.inference import kv_cache_bytes
from simulator.perf.model import ModelSpec
from simulator.perf.published import run_model
from simulator.perf.zoo import load_model

MLA = dict(q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64, v_head_dim=128)
# One DeepSeek-V3 attention layer on a dense MLP (HF config.json shape), 61 layers.
DSV3_DENSE = ModelSpec(name="dsv3-dense", layers=61, hidden=7168, heads=128, head_dim=128, ffn=18432, mlp="swiglu",
                       vocab=129280, seq_len=4096, **MLA)


def test_deepseek_v3_attention_parameters_per_layer():
    q_a, q_b = 7168 * 1536, 1536 * 128 * (128 + 64)      # 11,010,048 + 37,748,736
    kv_a, kv_b = 7168 * (512 + 64), 512 * 128 * (128 + 128)  # 4,128,768 + 16,777,216
    o = 128 * 128 * 7168                                    # 117,440,512
    norms = 1536 + 512                                      # q_a_layernorm, kv_a_layernorm
    assert q_a + q_b + kv_a + kv_b + o + norms == 187_107_328
    assert DSV3_DENSE.attn_params() == 187_107_328
    assert load_model("deepseek-v3").model_spec().attn_params() == 187_107_328


def test_full_rank_query_without_q_lora_rank():
    # DeepSeek-V2-Lite: no query latent, Q = hidden x heads * 192, no q_a_layernorm
    lite = ModelSpec(layers=27, hidden=2048, heads=16, head_dim=128, kv_lora_rank=512, qk_rope_head_dim=64,
                     v_head_dim=128, vocab=102400)
    assert lite.attn_params() == 2048 * 16 * 192 + 2048 * 576 + 512 * 16 * 256 + 16 * 128 * 2048 + 512


def test_mla_kv_cache_is_one_latent_per_token_and_layer_on_every_tp_rank():
    # (512 + 64) elements x 2 bytes x 61 layers = 70,272 bytes per token, whatever the TP degree
    for tp in (1, 8):
        assert kv_cache_bytes(DSV3_DENSE, tp=tp, batch=1, context=1) == 61 * 576 * 2 == 70_272
    assert kv_cache_bytes(DSV3_DENSE, tp=8, batch=4, context=1000, dtype="fp8") == 61 * 576 * 4 * 1000


def test_mla_decode_reads_the_latent_once_whatever_the_tp_or_the_kernel():
    stored = kv_cache_bytes(DSV3_DENSE, tp=1, batch=16, context=2048)
    for tp in (1, 2, 8):
        for gqa_aware in (True, False):
            assert decode_kv_read_bytes(DSV3_DENSE, tp, 16, 2048, gqa_aware=gqa_aware) == stored


def test_mla_model_flops_count_qk_at_192_and_pv_at_128():
    # 6 * L * s^2 * (h_qk + h_v): h_qk = 128 heads x 192, h_v = 128 heads x 128
    assert DSV3_DENSE.attention_flops_per_seq() == 6.0 * 61 * 4096**2 * 128 * (192 + 128)
    mha = ModelSpec(layers=2, hidden=1024, heads=8, vocab=100, seq_len=512)
    assert mha.attention_flops_per_seq() == 12.0 * 2 * 1024 * 512**2


def test_absorbed_decode_attention_flops():
    # per token and head: scores over latent + RoPE key, 2*ctx*576, and the latent sum, 2*ctx*512
    assert DSV3_DENSE.decode_attention_flops(1000) == 128 * (2 * 1000 * 576 + 2 * 1000 * 512)


def test_megatron_shapes_duplicate_the_down_projections_and_split_the_rest():
    tok = 4096
    shapes = DSV3_DENSE.attn_proj_shapes(tok, 8, down_tokens=tok / 8)
    assert shapes == [(512.0, 576, 7168), (512.0, 1536, 7168), (4096, 128 * 192 / 8, 1536),
                      (4096, 128 * 256 / 8, 512), (4096, 7168, 128 * 128 / 8)]


def test_absorbed_decode_reads_every_attention_weight_once():
    # down projections whole on each rank, the rest split: summed over 8 ranks, the down ones 8 times
    weights = {tp: sum(n * k * heads for _, n, k, heads in decode_proj_shapes(DSV3_DENSE, 32, tp)) for tp in (1, 8)}
    assert weights[1] == DSV3_DENSE.attn_params() - 1536 - 512
    down = 7168 * (1536 + 576)
    assert weights[8] == pytest.approx(down + (weights[1] - down) / 8)


def test_mla_decode_step_at_tp8_is_not_slower_than_the_mha_approximation():
    approx = ModelSpec(layers=61, hidden=7168, heads=128, ffn=18432, mlp="swiglu", vocab=129280, seq_len=4096)
    mla = decode_step("h200-sxm", DSV3_DENSE, 8, 64, 1500, dtype="fp8")
    mha = decode_step("h200-sxm", approx, 8, 64, 1500, dtype="fp8")
    assert mla.kv_s < mha.kv_s


def test_models_without_mla_are_priced_as_before():
    # values recorded before MLA existed (2026-12-01, same profiles; re-recorded 2026-12-02 after the stacks' refit,
    # and again when Megatron-Core's column layers hid their backward TP all-reduces behind their wgrad GEMMs, and
    # 2026-12-03 after the refit that followed the 2023 Triton attention tables' correction, after the one
    # that followed selective recompute by each stack's policy, and after the one that followed TPU attention's
    # systolic-array fill)
    llama = load_model("llama3-70b").model_spec()
    assert not llama.is_mla and llama.qk_head_dim == llama.v_dim == llama.head_dim == 128
    args = ["predict", "--device", "h100-sxm", "--model", "llama3-70b", "--gpus", "64", "--global-batch", "512",
            "--tp", "8", "--pp", "2", "--dtype", "fp8", "--json"]
    out = json.loads(CliRunner().invoke(main, args).output)
    assert out["step_time_s"] == 59.31400552800098
    assert out["memory_per_device_gib"] == 96.23715209960938
    args = ["predict-inference", "--device", "h100-sxm", "--model", "llama3-70b", "--tp", "8", "--batch", "32",
            "--prompt-len", "1000", "--output-len", "500", "--json"]
    out = json.loads(CliRunner().invoke(main, args).output)
    assert (out["tpot_s"], out["ttft_s"]) == (0.013489212211827094, 1.419048060466098)


@pytest.mark.parametrize("bad, where", [
    (dict(v_head_dim=128), "--v-head-dim"),             # MLA keys without kv_lora_rank
    (dict(q_lora_rank=1536), "--q-lora-rank"),
    (dict(kv_lora_rank=0), "--kv-lora-rank"),
    (dict(kv_lora_rank=512, qk_rope_head_dim=-1), "--qk-rope-head-dim"),
    (dict(kv_lora_rank=512, q_lora_rank=0), "--q-lora-rank"),
    (dict(kv_lora_rank=512, kv_heads=2), "--kv-heads"),  # MLA has a K and a V per head
])
def test_bad_mla_values_are_refused_naming_the_key(bad, where):
    with pytest.raises(CapsimError) as err:
        ModelSpec(layers=2, hidden=1024, heads=8, vocab=100, **bad)
    assert err.value.where == where


def test_runs_file_takes_hf_and_megatron_names():
    hf = {"num_hidden_layers": 61, "hidden_size": 7168, "num_attention_heads": 128, "vocab_size": 129280,
          "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}
    megatron = {"num_layers": 61, "hidden_size": 7168, "num_attention_heads": 128, "vocab_size": 129280,
                "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_head_dim": 128, "qk_pos_emb_head_dim": 64,
                "v_head_dim": 128}
    for model in (hf, megatron):
        spec = run_model({"model": model, "seq_len": 4096})
        assert (spec.head_dim, spec.qk_head_dim, spec.v_dim, spec.kv_latent_width()) == (128, 192, 128, 576)
        assert spec.attn_params() == 187_107_328


def test_predict_inference_cli_takes_the_mla_options():
    base = ["predict-inference", "--device", "h200-sxm", "--layers", "61", "--hidden", "7168", "--heads", "128",
            "--head-dim", "128", "--vocab", "129280", "--ffn", "18432", "--mlp", "swiglu", "--prompt-len", "1000",
            "--output-len", "1000", "--tp", "8", "--batch", "4", "--json"]
    mla = ["--q-lora-rank", "1536", "--kv-lora-rank", "512", "--qk-rope-head-dim", "64", "--v-head-dim", "128"]
    out = json.loads(CliRunner().invoke(main, base + mla).output)
    # 4 sequences x 2000 tokens x 70,272 bytes, on each of the 8 ranks
    assert out["kv_cache_gib"] == pytest.approx(4 * 2000 * 70_272 / 2**30)
    refused = CliRunner().invoke(main, base + ["--v-head-dim", "128"])
    assert refused.exit_code != 0 and "kv_lora_rank" in refused.output
