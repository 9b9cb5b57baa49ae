"""Mixture-of-experts models (simulator/perf/model.py and the zoo): what the MoE keys mean for parameter
and FLOP counts, the counts of published MoE models, and which combinations are errors."""

import pytest

from simulator.errors import CapsimError
from simulator.perf import ModelSpec
from simulator.workload.models import load_model


def test_every_expert_routed_counts_like_a_dense_mlp_of_all_experts():
    # top_k = num_experts: every token uses all 4 experts of 1024, the FLOPs of one 4096-wide MLP plus
    # the router (hidden x experts = 2048 x 4 per layer).
    moe_all = ModelSpec(layers=2, hidden=2048, heads=16, ffn=1024, vocab=1000, seq_len=512, num_experts=4, top_k=4)
    dense = ModelSpec(layers=2, hidden=2048, heads=16, ffn=4096, vocab=1000, seq_len=512)
    assert moe_all.total_params() == moe_all.active_params() == dense.total_params() + 2 * 2048 * 4
    assert moe_all.training_flops_per_seq() == pytest.approx(dense.training_flops_per_seq() + 6 * 2 * 2048 * 4 * 512)


def test_moe_model_keys_need_experts_and_fit_the_layers():
    for key, value in (("moe_ffn", 512), ("shared_experts", 1), ("first_dense_layers", 1), ("moe_layers", 2)):
        with pytest.raises(CapsimError) as err:
            ModelSpec(layers=4, hidden=1024, heads=8, **{key: value})
        assert err.value.where == f"--{key.replace('_', '-')}"
    with pytest.raises(CapsimError, match="first_dense_layers"):
        ModelSpec(layers=4, hidden=1024, heads=8, num_experts=4, first_dense_layers=4)
    with pytest.raises(CapsimError) as err:
        ModelSpec(layers=4, hidden=1024, heads=8, num_experts=4, first_dense_layers=1, moe_layers=4)
    assert err.value.where == "--moe-layers"


@pytest.mark.parametrize("name, total, active, tol", [
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.02),
    ("deepseek-v3", 671e9, 37e9, 0.03),
])
def test_published_total_and_active_parameter_counts(name, total, active, tol):
    spec = load_model(name).model_spec()
    assert spec.total_params() == pytest.approx(total, rel=tol)
    assert spec.active_params() == pytest.approx(active, rel=tol)


def test_deepseek_v3_and_llama4_maverick_counts_by_hand():
    ds = load_model("deepseek-v3").model_spec()
    attn = 4 * 7168 * 7168          # MLA approximated as MHA with 128 heads of 56: 205,520,896
    expert = 3 * 7168 * 2048        # 44,040,192
    dense_layer = attn + 3 * 7168 * 18432 + 4 * 7168
    moe_layer = attn + (256 + 1) * expert + 4 * 7168 + 7168 * 256
    assert (ds.n_dense_layers, ds.n_moe_layers) == (3, 58)
    assert ds.total_params() == 3 * dense_layer + 58 * moe_layer + 129280 * 7168
    assert ds.active_params() == 3 * dense_layer + 58 * (moe_layer - 248 * expert) + 129280 * 7168
    mav = load_model("llama4-maverick").model_spec()
    assert (mav.n_dense_layers, mav.n_moe_layers) == (24, 24)
    assert mav.total_params() == pytest.approx(400e9, rel=0.01)
    # ModelSpec ties the embedding; Maverick's output head is separate: add it to compare with 17B active.
    assert mav.active_params() + mav.embedding_params() == pytest.approx(17e9, rel=0.02)


def test_zoo_moe_keys_need_sources_and_experts(tmp_path):
    base = ("kind: transformer\nname: m\nlayers: 4\nhidden: 1024\nheads: 8\nffn: 4096\nmlp: swiglu\nvocab: 1000\n"
            "seq_len: 1024\nparams: 1e8\n")
    cited = "sources: {params: p, layers: p, hidden: p, heads: p, ffn: p, vocab: p, seq_len: p"
    path = tmp_path / "a.yaml"
    path.write_text(base + "num_experts: 8\ntop_k: 2\nmoe_ffn: 512\n" + cited + ", num_experts: p, top_k: p}\n")
    with pytest.raises(CapsimError, match="moe_ffn"):
        load_model(str(path))
    path = tmp_path / "b.yaml"
    path.write_text(base + "moe_ffn: 512\n" + cited + ", moe_ffn: p}\n")
    with pytest.raises(CapsimError) as err:
        load_model(str(path))
    assert err.value.where == "moe_ffn" and "MoE" in str(err.value)
