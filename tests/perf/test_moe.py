"""Mixture-of-experts models (simulator/perf/model.py): what the MoE keys mean for parameter and FLOP
counts, and which combinations are errors."""

import pytest

from simulator.errors import CapsimError
from simulator.perf import ModelSpec


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
