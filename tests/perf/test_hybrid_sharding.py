"""Hybrid sharding (layout.dp_replicate): ZeRO inside each of N replica groups, the groups' gradient shards
all-reduced across the network. Checked against the collectives it is made of and against its two limits:
one group is plain ZeRO, groups of one rank are plain data parallelism."""

import json

import pytest
from click.testing import CliRunner

from simulator.errors import CapsimError
from simulator.perf import ModelSpec, make_layout
from simulator.perf.cli import predict
from simulator.perf.collectives import collective_time
from simulator.perf.memory import GRAD_BYTES, memory_per_device, stage_params
from simulator.perf.stacks import load_stack
from simulator.perf.step import _dp_comm, layer_times

H100 = "h100-sxm"  # an 8-GPU NVLink domain
DENSE = ModelSpec(layers=8, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu", vocab=32000, seq_len=4096)
MOE = ModelSpec(layers=4, hidden=2048, heads=16, ffn=1024, vocab=1000, seq_len=2048, num_experts=8, top_k=2)


def _dp_total(model: ModelSpec, lay) -> float:
    """All of a step's data-parallel communication, none of it hidden (overlap off): (exposed, total) agree."""
    lay = lay.with_(overlap_grad_reduce=False)
    exposed, total = _dp_comm(H100, model, lay, 1, layer_times(H100, model, lay), model.layers, load_stack(lay.stack))
    assert exposed == total
    return total


def test_one_replica_group_is_plain_zero():
    for zero in (1, 3):
        plain = make_layout(DENSE, 64, 64, zero=zero)
        assert plain.dp_replicate == 1 and plain.shard_dp == 64
        assert _dp_total(DENSE, plain) > 0


def test_groups_of_one_rank_are_plain_data_parallelism():
    """TP 8 fills each node, so the 4 data-parallel ranks sit in 4 domains either way: ZeRO-1 in 4 groups
    of one rank shards nothing and all-reduces whole gradients across the 4, as ZeRO-0 does."""
    hybrid = make_layout(DENSE, 32, 32, tp=8, zero=1, dp_replicate=4)
    plain = make_layout(DENSE, 32, 32, tp=8, zero=0)
    assert hybrid.shard_dp == 1
    assert _dp_total(DENSE, hybrid) == pytest.approx(_dp_total(DENSE, plain), rel=1e-12)
    assert memory_per_device(DENSE, hybrid).total_gib == pytest.approx(memory_per_device(DENSE, plain).total_gib)


def test_two_nodes_shard_inside_each_and_all_reduce_their_shards_across():
    """16 H100s, DP 16, ZeRO-1 in 2 groups: reduce-scatter and all-gather over the 8 GPUs of a node, then each
    GPU all-reduces its 1/8 shard with its twin in the other node over its own NIC."""
    lay = make_layout(DENSE, 16, 16, zero=1, dp_replicate=2)
    grads = stage_params(DENSE, lay)[0] * GRAD_BYTES
    expected = (collective_time(H100, "reduce_scatter", grads, 8, 8) + collective_time(H100, "all_gather", grads, 8, 8)
                + collective_time(H100, "all_reduce", grads / 8, 2, per_domain=1))
    assert _dp_total(DENSE, lay) == pytest.approx(expected, rel=1e-12)
    # it moves less across the network than ZeRO-1 over all 16 does
    assert collective_time(H100, "all_reduce", grads / 8, 2, per_domain=1) < \
        collective_time(H100, "reduce_scatter", grads, 16) + collective_time(H100, "all_gather", grads, 16)


def test_fsdp_groups_hold_their_group_share_of_the_state():
    """ZeRO-3 in r groups: each GPU holds 1/(dp/r) of the weights, gradients and optimizer state, r times
    what one group over every rank gives it; the activations do not change."""
    one, four = make_layout(DENSE, 64, 64, zero=3), make_layout(DENSE, 64, 64, zero=3, dp_replicate=4)
    m1, m4 = memory_per_device(DENSE, one), memory_per_device(DENSE, four)
    for part in ("weights_gib", "grads_gib", "optimizer_gib"):
        assert getattr(m4, part) == pytest.approx(4 * getattr(m1, part), rel=1e-12)
    assert m4.activations_gib == m1.activations_gib


def test_expert_state_is_split_into_the_same_groups():
    lay = make_layout(MOE, 16, 16, ep=4, zero=1, dp_replicate=2)
    assert lay.expert_dp == 4
    plain = make_layout(MOE, 16, 16, ep=4, zero=1)
    dense, expert = stage_params(MOE, lay)
    gap = memory_per_device(MOE, lay).optimizer_gib - memory_per_device(MOE, plain).optimizer_gib
    per_param = memory_per_device(MOE, plain).optimizer_gib / (dense / 16 + expert / 4)
    assert gap == pytest.approx(per_param * (dense / 8 - dense / 16 + expert / 2 - expert / 4), rel=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"dp_replicate": 3}, "not divisible by dp-replicate 3"),
    ({"dp_replicate": 2, "zero": 0}, "need ZeRO sharding"),
    ({"dp_replicate": 0}, "positive integer"),
])
def test_a_layout_that_cannot_be_split_is_refused_naming_the_flag(kwargs, message):
    with pytest.raises(CapsimError) as err:
        make_layout(DENSE, 16, 16, **{"zero": 1, **kwargs})
    assert err.value.where == "--dp-replicate" and message in str(err.value)


def test_expert_replicas_must_split_too():
    with pytest.raises(CapsimError) as err:
        make_layout(MOE, 16, 16, ep=8, zero=1, dp_replicate=4)  # 2 replicas of each expert, 4 groups
    assert err.value.where == "--dp-replicate" and "replicas of each expert" in str(err.value)


def test_predict_takes_the_flag():
    args = ["--device", H100, "--gpus", "16", "--layers", "8", "--hidden", "4096", "--heads", "32", "--seq-len",
            "4096", "--vocab", "32000", "--global-batch", "16", "--zero", "3"]
    plain = json.loads(CliRunner().invoke(predict, [*args, "--json"]).output)
    hybrid = CliRunner().invoke(predict, [*args, "--dp-replicate", "2"])
    assert hybrid.exit_code == 0, hybrid.output
    assert "ZeRO-3 in 2 replica groups" in hybrid.output
    as_json = json.loads(CliRunner().invoke(predict, [*args, "--dp-replicate", "2", "--json"]).output)
    assert as_json["memory_per_device_gib"] > plain["memory_per_device_gib"]
