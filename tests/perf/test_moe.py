"""Mixture-of-experts training (simulator/perf/moe.py) against values worked by hand: the all-to-all
volume, expert sharding and its memory, the reduction of expert gradients, parameter counts of published
MoE models, and the cost of an all-to-all that leaves the node."""

import json
import math
from dataclasses import replace

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import CapsimError
from simulator.perf import ModelSpec, make_layout, moe, predict_training
from simulator.perf.collectives import collective_time
from simulator.perf.kernels import gemm_time
from simulator.perf.memory import GIB, memory_per_device, stage_params
from simulator.perf.step import layer_times, training_step
from simulator.perf.zoo import load_model

H100 = "h100-sxm"
# Mixtral 8x7B at the Megatron-Core reference sequence length (MoE README: 4096).
MIXTRAL = ModelSpec(name="mixtral", layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, mlp="swiglu",
                    vocab=32000, seq_len=4096, num_experts=8, top_k=2)
SMALL = ModelSpec(layers=2, hidden=1024, heads=8, ffn=4096, vocab=1000, seq_len=2048, num_experts=8, top_k=2)


def test_all_to_all_volume_per_device_by_hand():
    # 16 GPUs, TP2 with sequence parallelism, DP8; experts EP4 x ETP1 x EDP4 over the 16 (4*1 divides 2*1*8).
    lay = make_layout(SMALL, 16, 16, tp=2, sequence_parallel=True, ep=4, etp=1, micro_batch=2)
    assert (lay.dp, lay.expert_dp) == (8, 4)
    # Each device owns 2 sequences x 2048 tokens / TP2 = 2048 tokens, sends each to top-2 experts:
    # 4096 copies x 1024 hidden x 2 bytes = 8 MiB per all-to-all.
    assert moe.routed_tokens(SMALL, lay) == 4096
    assert moe.all_to_all_bytes(SMALL, lay) == 8 * 2**20
    # Dropping/padding to a capacity factor of 1.25 sends 1.25x the copies.
    padded = lay.with_(capacity_factor=1.25)
    assert moe.all_to_all_bytes(SMALL, padded) == 10 * 2**20
    # The 4 EP ranks are consecutive (ETP1), inside one 8-GPU NVLink domain; 4 all-to-alls per layer
    # and microbatch (dispatch + combine, forward and backward), 6 when full recompute re-runs the forward.
    one = collective_time(H100, "all_to_all", 8 * 2**20, 4, per_domain=4)
    assert moe.ep_ranks_per_domain(H100, lay) == 4
    assert layer_times(H100, SMALL, lay).ep == pytest.approx(4 * one)
    assert layer_times(H100, SMALL, lay.with_(recompute="full")).ep == pytest.approx(6 * one)
    # Per step: 16 sequences / (DP8 x micro-batch 2) = 1 microbatch x 2 layers x 4 all-to-alls.
    assert training_step(H100, SMALL, lay, 16).ep_comm_s == pytest.approx(2 * 4 * one)


def test_one_expert_and_ep1_is_the_dense_model():
    dense = ModelSpec(layers=4, hidden=2048, heads=16, kv_heads=4, ffn=5632, mlp="swiglu", vocab=32000, seq_len=4096)
    as_moe_keys = ModelSpec(layers=4, hidden=2048, heads=16, kv_heads=4, ffn=5632, mlp="swiglu", vocab=32000,
                            seq_len=4096, num_experts=1, top_k=1, moe_ffn=None, shared_experts=0)
    for kw in ({}, {"tp": 2, "sequence_parallel": True, "zero": 3}, {"pp": 2, "recompute": "full"}):
        a = predict_training(H100, dense, 8, 16, **kw).as_dict()
        b = predict_training(H100, as_moe_keys, 8, 16, ep=1, etp=None, capacity_factor=None, **kw).as_dict()
        assert a == b
        assert a["breakdown"]["ep_comm_s"] == 0.0
    assert stage_params(dense, make_layout(dense, 8, 16)) == (dense.total_params(), 0.0)


def test_every_expert_routed_counts_like_a_dense_mlp_of_all_experts():
    # top_k = num_experts: every token uses all 4 experts of 1024, the FLOPs of one 4096-wide MLP plus
    # the router (hidden x experts = 2048 x 4 per layer).
    moe_all = ModelSpec(layers=2, hidden=2048, heads=16, ffn=1024, vocab=1000, seq_len=512, num_experts=4, top_k=4)
    dense = ModelSpec(layers=2, hidden=2048, heads=16, ffn=4096, vocab=1000, seq_len=512)
    assert moe_all.total_params() == moe_all.active_params() == dense.total_params() + 2 * 2048 * 4
    assert moe_all.training_flops_per_seq() == pytest.approx(dense.training_flops_per_seq() + 6 * 2 * 2048 * 4 * 512)


def test_expert_memory_per_device_falls_as_one_over_ep():
    expert = 3 * 4096 * 14336  # one SwiGLU expert: 176,160,768 parameters
    dense_only = None
    for ep in (1, 2, 4, 8):
        lay = make_layout(MIXTRAL, 64, 256, pp=4, virtual_stages=8, ep=ep)
        dense, experts = stage_params(MIXTRAL, lay)
        assert experts == 8 * 8 * expert / ep  # 8 layers a stage x 8 experts / ep
        dense_only = dense if dense_only is None else dense_only
        assert dense == dense_only  # attention, norms, router and embedding do not shard over EP
        # weights and grads held in bf16: 2 bytes each, dense + experts / ep
        assert memory_per_device(MIXTRAL, lay).weights_gib == pytest.approx((dense + experts) * 2 / GIB)


def test_mixtral_fits_on_64_h100_with_ep8_and_not_with_ep1():
    # Megatron-Core's reference mapping for Mixtral 8x7B (MoE README): 64 GPUs, TP1 EP8 PP4 VP8, MBS1,
    # GBS256, seq 4096, distributed optimizer (ZeRO-1). By hand, per device of the first stage:
    attn = 4096 * (4096 + 2 * 1024) + 4096 * 4096           # 41,943,040 (GQA, 8 KV heads of 128)
    dense = 8 * (attn + 4 * 4096) + 32000 * 4096 + 8 * 4096 * 8  # 8 layers + embedding + routers = 467,009,536
    experts = {ep: 8 * 8 * 3 * 4096 * 14336 // ep for ep in (8, 1)}  # 1,409,286,144 at EP8
    # optimizer state: dense over DP16, experts over EDP = 16 / ep
    optim = {ep: 12 * (dense / 16 + experts[ep] / (16 // ep)) for ep in (8, 1)}
    # activations: 35 layers in flight (32 x (1 + 3/32) with VP8); an MoE layer is Korthikanti's 34 sbh
    # (flash) minus the 19 sbh dense MLP, plus the MoE block: input + mask 3 sbh, fp32 router probs
    # 4 x 4096 x 8, 8192 routed copies x 2 x (4096 + 2 x 14336 + 14336) bytes, their outputs 2 x 8192 x 4096.
    sbh = 4096 * 4096
    block = 3 * sbh + 4 * 4096 * 8 + 8192 * 2 * (4096 + 3 * 14336) + 2 * 8192 * 4096
    act = 35 * (34 * sbh - 19 * sbh + block) + 4 * 4096 * 32000  # + fp32 logits
    for ep, fits in ((8, True), (1, False)):
        pred = predict_training(H100, MIXTRAL, 64, 256, pp=4, virtual_stages=8, ep=ep, zero=1)
        mem = pred.memory
        assert mem.weights_gib == pytest.approx(2 * (dense + experts[ep]) / GIB)
        assert mem.grads_gib == pytest.approx(2 * (dense + experts[ep]) / GIB)
        assert mem.optimizer_gib == pytest.approx(optim[ep] / GIB)
        assert mem.activations_gib == pytest.approx(act / GIB)
        assert pred.fits is fits
    assert predict_training(H100, MIXTRAL, 64, 256, pp=4, virtual_stages=8, ep=8).memory_per_device_gib == \
        pytest.approx(54.87, abs=0.01)
    # On one 8-GPU node nothing fits: mixed-precision Adam holds 16 bytes x 46.6B = 745 GB > 8 x 80 GiB.
    assert 16 * MIXTRAL.total_params() > 8 * 80 * GIB
    assert not predict_training(H100, MIXTRAL, 8, 64, ep=8, zero=1, recompute="full").fits


def test_expert_gradients_reduce_over_their_own_replicas():
    lay = make_layout(MIXTRAL, 64, 256, pp=4, virtual_stages=8, ep=8)
    dense, experts = stage_params(MIXTRAL, lay)
    # dense grads over DP16 (8 to a node), expert grads over EDP2, whose members are ep*etp = 8 ranks
    # apart: one per node.
    want = (collective_time(H100, "all_reduce", 2 * dense, 16, 8)
            + collective_time(H100, "all_reduce", 2 * experts, 2, 1))
    assert moe.grad_collective_time(H100, "all_reduce", MIXTRAL, lay) == pytest.approx(want)
    # with ETP1 and TP2, DP1, the experts are replicated on both TP ranks and their gradients are reduced
    # even though the dense ones have no data-parallel replica
    two = make_layout(SMALL, 2, 4, tp=2, sequence_parallel=True, etp=1)
    assert (two.dp, two.expert_dp) == (1, 2)
    assert training_step(H100, SMALL, two.with_(overlap_grad_reduce=False), 4).dp_comm_s > 0


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
    # MLA: q_a 7168x1536, q_b 1536x(128x192), kv_a 7168x576, kv_b 512x(128x256), o 16384x7168, two latent norms
    attn = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168 + 1536 + 512
    assert attn == 187_107_328
    expert = 3 * 7168 * 2048        # 44,040,192
    dense_layer = attn + 3 * 7168 * 18432 + 4 * 7168
    moe_layer = attn + (256 + 1) * expert + 4 * 7168 + 7168 * 256
    assert (ds.n_dense_layers, ds.n_moe_layers) == (3, 58)
    # untied: the input embedding and the output head both count in the total; the active count takes one
    assert ds.total_params() == 3 * dense_layer + 58 * moe_layer + 2 * 129280 * 7168
    assert ds.active_params() == 3 * dense_layer + 58 * (moe_layer - 248 * expert) + 129280 * 7168
    mav = load_model("llama4-maverick").model_spec()
    assert (mav.n_dense_layers, mav.n_moe_layers) == (24, 24)
    assert mav.total_params() == pytest.approx(400e9, rel=0.01)
    # ModelSpec ties the embedding; Maverick's output head is separate: add it to compare with 17B active.
    assert mav.active_params() + mav.embedding_params() == pytest.approx(17e9, rel=0.02)


def test_busiest_stage_holds_its_share_of_moe_layers():
    ds = load_model("deepseek-v3").model_spec()
    assert moe.stage_layer_mix(ds, make_layout(ds, 8, 8, ep=8)) == (58, 3)
    mav = load_model("llama4-maverick").model_spec()
    assert moe.stage_layer_mix(mav, make_layout(mav, 8, 8, pp=4, ep=2)) == (6, 6)
    assert moe.stage_layer_mix(mav, make_layout(mav, 16, 16, pp=16)) == (2, 1)  # 3 layers: 1.5 MoE, rounded up


def test_all_to_all_across_nodes_costs_more_than_inside_one():
    # The same bytes: 8 ranks in one 8-GPU NVLink node, 8 ranks 4 to a node, 16 ranks over two nodes.
    b = 2**26
    in_node = collective_time(H100, "all_to_all", b, 8, per_domain=8)
    assert collective_time(H100, "all_to_all", b, 8, per_domain=4) > 2 * in_node
    assert collective_time(H100, "all_to_all", b, 16, per_domain=8) > 2 * in_node
    # The same 8-way EP group and bytes: with ETP1 its ranks are consecutive, one node; with ETP2 they are
    # 2 apart and span two nodes, 4 to a node, so half of every rank's bytes leave the node.
    inside = make_layout(MIXTRAL, 16, 16, ep=8, etp=1)
    across = make_layout(MIXTRAL, 16, 16, ep=8, etp=2)
    assert moe.all_to_all_bytes(MIXTRAL, inside) == moe.all_to_all_bytes(MIXTRAL, across) == 4096 * 2 * 4096 * 2
    assert moe.ep_ranks_per_domain(H100, inside) == 8 and not moe.ep_spans_domains(H100, inside)
    assert moe.ep_ranks_per_domain(H100, across) == 4 and moe.ep_spans_domains(H100, across)
    assert moe.all_to_all_time(H100, MIXTRAL, across) > 2 * moe.all_to_all_time(H100, MIXTRAL, inside)
    # only the all-to-all that leaves the node counts as scale-out traffic (beside the DP traffic, all of it
    # exposed here)
    for lay, spans in ((inside, False), (across, True)):
        br = training_step(H100, MIXTRAL, lay.with_(overlap_grad_reduce=False), 16)
        assert br.scale_out_comm_s == pytest.approx(br.dp_comm_s + (br.ep_comm_s if spans else 0.0))


def test_small_per_expert_gemms_lose_efficiency():
    # 32 local experts of 1024 token copies each run slower than one GEMM with all 32768 rows.
    grouped = moe.grouped_gemm_time(H100, 32, 1024, 2048, 7168, "bf16")
    single = gemm_time(H100, 32 * 1024, 2048, 7168, "bf16")
    assert grouped > single
    # and a fine-grained layer (DeepSeek-V3, 8 of 256 experts) takes longer per routed FLOP than Mixtral's
    ds = load_model("deepseek-v3").model_spec()
    ds_lay = make_layout(ds, 64, 64, ep=64)
    mx_lay = make_layout(MIXTRAL, 8, 8, ep=8)

    def per_flop(m, lay):
        fwd, _ = moe.routed_times(H100, m, lay)
        return fwd / (2 * moe.expert_rows(m, lay) * m.expert_params())

    assert per_flop(ds, ds_lay) > per_flop(MIXTRAL, mx_lay)


@pytest.mark.parametrize("kw, where", [
    ({"ep": 3}, "--ep"),                                         # 8 experts are not divisible by 3
    ({"ep": 16}, "--ep"),                                        # ep*etp must divide tp*cp*dp = 8
    ({"tp": 2, "ep": 2}, "--sequence-parallel"),                # EP with TP needs sequence parallelism
    ({"tp": 2, "ep": 8, "sequence_parallel": True}, "--ep"),    # etp defaults to tp: 8*2 > 8
    ({"etp": 3}, "--etp"),                                       # 14336 is not divisible by 3
    ({"capacity_factor": 0.0}, "--capacity-factor"),
])
def test_bad_expert_layouts_name_the_flag(kw, where):
    with pytest.raises(CapsimError) as err:
        make_layout(MIXTRAL, 8, 8, **kw)
    assert err.value.where == where


def test_expert_layout_needs_an_moe_model():
    dense = ModelSpec(layers=4, hidden=1024, heads=8)
    for kw, where in (({"ep": 2}, "--ep"), ({"etp": 1}, "--etp"), ({"capacity_factor": 1.0}, "--capacity-factor")):
        with pytest.raises(CapsimError) as err:
            make_layout(dense, 8, 8, **kw)
        assert err.value.where == where


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


def test_cli_takes_expert_parallelism_and_the_moe_shape():
    from simulator.perf.cli import predict

    base = ("--device h100-sxm --gpus 16 --layers 4 --hidden 2048 --heads 16 --ffn 8192 --mlp swiglu --experts 16 "
            "--top-k 2 --moe-ffn 1024 --shared-experts 1 --first-dense-layers 1 --seq-len 2048 --vocab 32000 "
            "--global-batch 32")
    ok = CliRunner().invoke(predict, [*base.split(), "--ep", "8", "--json"])
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.output)
    assert out["layout"]["ep"] == 8 and out["breakdown"]["ep_comm_s"] > 0
    total = sum(out["breakdown"][k] for k in ("compute_s", "exposed_comm_s", "bubble_s", "optimizer_s"))
    assert total == pytest.approx(out["step_time_s"])
    table = CliRunner().invoke(predict, [*base.split(), "--ep", "8"])
    assert "EP8 ETP1 EDP2" in table.output and "ep_comm_s" in table.output
    bad = CliRunner().invoke(predict, [*base.split(), "--ep", "5"])
    assert bad.exit_code == 2 and "--ep" in bad.output
    dense = CliRunner().invoke(predict, "--device h100-sxm --gpus 8 --layers 4 --hidden 2048 --heads 16 "
                                        "--seq-len 2048 --vocab 32000 --global-batch 8 --moe-ffn 512".split())
    assert dense.exit_code == 2 and "--moe-ffn" in dense.output


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


def test_cross_node_expert_parallelism_costs_as_much_as_the_compute():
    ds = load_model("deepseek-v3").model_spec()
    # 64 H100, no TP, one sequence of 4K a device. EP8 stays in the node: its all-to-alls are a small share
    # of the compute. EP64 spans 8 nodes and 7/8 of every all-to-all crosses 50 GB/s NICs: as long as the
    # compute. (DeepSeek-V3 report sec. 3.2.1: cross-node EP gives a computation-to-communication ratio of
    # about 1:1; its node-limited routing, at most 4 nodes a token, roughly halves the cross-node bytes,
    # which is not modelled here, hence up to ~2x.)
    ratio = {}
    for ep in (8, 64):
        br = training_step(H100, ds, make_layout(ds, 64, 64, ep=ep), 64)
        assert math.isfinite(br.step_time_s)
        ratio[ep] = br.ep_comm_s / br.compute_s
    assert ratio[8] < 0.25
    assert 1.0 < ratio[64] < 2.5


def test_expert_host_time_by_hand():
    # SMALL has 8 experts; EP4 leaves 2 on each device. At 100 us per local expert the forward of an
    # MoE layer gains 200 us and its backward 400 us, on top of the kernels (not scaled by efficiency);
    # a stack that compiles the whole step (maxtext: no host launches) pays nothing.
    from simulator.perf.stacks import trial_efficiencies

    lay = make_layout(SMALL, 8, 16, ep=4, micro_batch=2, stack="nemo")
    assert moe.local_experts(SMALL, lay) == 2
    assert moe.expert_host_time(SMALL, lay, 100.0) == pytest.approx(200e-6)
    with trial_efficiencies({}, 0.8, 0.0):
        base = layer_times(H100, SMALL, lay)
    with trial_efficiencies({}, 0.8, 100.0):
        slow = layer_times(H100, SMALL, lay)
        compiled = layer_times(H100, SMALL, lay.with_(stack="maxtext"))
    assert slow.fwd_compute - base.fwd_compute == pytest.approx(200e-6, rel=1e-9)
    assert slow.bwd_compute - base.bwd_compute == pytest.approx(400e-6, rel=1e-9)
    with trial_efficiencies({}, 0.8, 0.0):
        assert layer_times(H100, SMALL, lay.with_(stack="maxtext")) == compiled
    # a dense model has no experts to issue
    dense = ModelSpec(layers=2, hidden=1024, heads=8, vocab=1000, seq_len=2048)
    assert moe.expert_host_time(dense, make_layout(dense, 8, 16), 100.0) == 0.0


@pytest.mark.parametrize("name, total, active", [("qwen3-30b-a3b", 30.5e9, 3.3e9), ("qwen3-235b-a22b", 235e9, 22e9)])
def test_qwen3_moe_counts_with_their_head_width(name, total, active):
    # Qwen3 MoE runs 128-wide heads on a narrower model (zoo: head_dim 128). The published totals hold
    # within 1%; the published active counts include the output head as well as the input embedding,
    # which the 6N count (active_params) counts once.
    spec = load_model(name).model_spec()
    assert spec.attn_width == spec.heads * 128 != spec.hidden
    assert spec.total_params() == pytest.approx(total, rel=0.01)
    assert spec.active_params() + spec.embedding_params() == pytest.approx(active, rel=0.02)


def test_overlapped_all_to_alls_leave_only_what_exceeds_the_compute():
    # Mixtral EP8 inside one node: its all-to-alls are shorter than the blocks they run beside, so
    # overlapped they vanish from the step. A fine-grained MoE (64 narrow experts, top-8) on EP64 across
    # 8 nodes moves more than it computes: only the excess stays exposed. The traffic the fabric carries
    # is the same either way.
    fine = ModelSpec(layers=2, hidden=1024, heads=8, ffn=1024, vocab=1000, seq_len=2048, num_experts=64, top_k=8,
                     moe_ffn=256)
    excesses = []
    for m, ep in ((MIXTRAL, 8), (fine, 64)):
        lay = make_layout(m, 64, 256, ep=ep, micro_batch=1, stack="nemo")
        lt = layer_times(H100, m, lay)
        plain = training_step(H100, m, lay, 256)
        hidden = training_step(H100, m, lay.with_(overlap_ep=True), 256)
        micro = 256 // lay.dp
        excess = moe.overlapped_ep_exposure(lt, lay)
        assert plain.ep_comm_s == pytest.approx(micro * m.layers * lt.ep)
        assert hidden.ep_comm_s == pytest.approx(micro * m.layers * excess)
        assert hidden.scale_out_comm_s == pytest.approx(plain.scale_out_comm_s)
        assert hidden.step_time_s == pytest.approx(plain.step_time_s - plain.ep_comm_s + hidden.ep_comm_s)
        excesses.append(excess)
    assert excesses[0] == 0.0 < excesses[1]
    with pytest.raises(CapsimError, match="expert parallelism"):
        make_layout(MIXTRAL, 8, 16, overlap_ep=True)


def test_overlap_schedule_hides_each_all_to_all_under_the_block_beside_it():
    # Megatron-Core's schedule: combine_bwd beside attn_fwd | dispatch_fwd, dispatch_bwd beside mlp_bwd,
    # mlp_fwd | combine_fwd beside attn_bwd. All-to-alls of 1 ms; attention 0.5 ms forward, 2 ms backward;
    # MLP 0.5 + 1 ms: exposed 0.5 (beside attn_fwd) + 0.5 (two beside 1.5 ms of MLP) + 0 = 1 ms, where
    # hiding them under the layer's compute as a whole (4 ms under 4 ms) would leave none
    from simulator.perf.step import LayerTimes

    lay = make_layout(MIXTRAL, 8, 8, ep=8, micro_batch=1)
    lt = LayerTimes(fwd_compute=1e-3, bwd_compute=3e-3, recompute=0.0, fwd_tp=0.0, bwd_tp=0.0, recompute_tp=0.0,
                    cp=0.0, ep=4e-3, attn_fwd=0.5e-3, attn_bwd=2e-3)
    assert moe.overlapped_ep_exposure(lt, lay) == pytest.approx(1e-3)
    # full recompute re-runs the forward's dispatch and combine exposed: 6 all-to-alls, 2 of them in the open
    full = lay.with_(recompute="full")
    assert moe.all_to_alls_per_layer(full) == 6
    assert moe.overlapped_ep_exposure(replace(lt, ep=6e-3), full) == pytest.approx(3e-3)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 10), st.floats(0, 10), st.floats(0, 10), st.floats(0, 10), st.floats(0, 10))
def test_overlap_schedule_lies_between_free_overlap_and_none(a2a, attn_f, attn_b, mlp_f, mlp_b):
    # never less exposed than hiding under the whole layer, never more than not overlapping at all
    from simulator.perf.step import LayerTimes

    lay = make_layout(MIXTRAL, 8, 8, ep=8, micro_batch=1)
    lt = LayerTimes(fwd_compute=attn_f + mlp_f, bwd_compute=attn_b + mlp_b, recompute=0.0, fwd_tp=0.0,
                    bwd_tp=0.0, recompute_tp=0.0, cp=0.0, ep=4 * a2a, attn_fwd=attn_f, attn_bwd=attn_b)
    exposed = moe.overlapped_ep_exposure(lt, lay)
    tol = 1e-9 * (1 + 4 * a2a)
    assert max(0.0, lt.ep - lt.fwd_compute - lt.bwd_compute) - tol <= exposed <= lt.ep + tol


def test_per_node_dispatch_crosses_the_fabric_once_per_remote_node():
    # 8 copies a token (top-8) over 8 nodes: 8 (1 - (7/8)^8) = 5.25 nodes reached, 7/8 of them remote; with
    # node-limited routing to 4 nodes, 4 (1 - (3/4)^8) = 3.60 reached, 3.15 remote. One node: none.
    free = ModelSpec(layers=2, hidden=1024, heads=8, vocab=1000, seq_len=2048, num_experts=64, top_k=8)
    limited = ModelSpec(**{**free.as_dict(), "route_nodes": 4})
    assert moe.remote_domains_per_token(free, 8) == pytest.approx(8 * (1 - (7 / 8) ** 8) * 7 / 8)
    assert moe.remote_domains_per_token(limited, 8) == pytest.approx(4 * (1 - (3 / 4) ** 8) * 7 / 8)
    assert moe.remote_domains_per_token(limited, 1) == 0.0
    # EP64 over 8 H100 nodes: per-node dispatch sends 3.15 token vectors across the fabric where the
    # alltoall dispatcher sends 7 of the 8 copies, so it is faster; inside one node the two are the same
    lay = make_layout(limited, 64, 64, ep=64, micro_batch=1)
    per_node = lay.with_(dispatcher="deepep")
    assert moe.all_to_all_time(H100, limited, per_node) < moe.all_to_all_time(H100, limited, lay)
    one_node = make_layout(limited, 8, 8, ep=8, micro_batch=1)
    assert moe.all_to_all_time(H100, limited, one_node.with_(dispatcher="deepep")) == \
        moe.all_to_all_time(H100, limited, one_node)
    # the crossing time is the fitted scale-out link's: alpha + bytes / bandwidth
    from simulator.perf.collectives import tier_model

    up, out = tier_model(H100, "scale_up"), tier_model(H100, "scale_out")
    crossing = 2048 * moe.remote_domains_per_token(limited, 8) * 1024 * 2
    expected = up.time("all_to_all", moe.all_to_all_bytes(limited, lay), 8) + out.alpha_s + crossing / out.bw_Bps
    assert moe.all_to_all_time(H100, limited, per_node) == pytest.approx(expected)
    with pytest.raises(CapsimError, match="needs an MoE model"):
        ModelSpec(layers=2, hidden=1024, heads=8, vocab=1000, seq_len=2048, route_nodes=4)
    # HybridEP buffers each token once per remote NVLink domain, as DeepEP sends it: the same crossing
    assert moe.all_to_all_time(H100, limited, lay.with_(dispatcher="hybridep")) == \
        moe.all_to_all_time(H100, limited, per_node)
    with pytest.raises(CapsimError, match="unknown dispatcher"):
        make_layout(limited, 8, 8, ep=8, dispatcher="nccl")


def test_deepseek_stack_defaults_to_overlapped_per_node_dispatch():
    # the deepseek stack (DualPipe, per-node dispatch) overlaps and dedups unless the layout says otherwise
    from simulator.perf.stacks import load_stack

    ds = load_stack("deepseek")
    assert (ds.overlap_ep, ds.dispatcher) == (True, "deepep")
    assert (load_stack("nemo").overlap_ep, load_stack("nemo").dispatcher) == (False, "alltoall")
    m = load_model("deepseek-v3").model_spec()
    assert m.route_nodes == 4
    kw = dict(tp=1, pp=16, ep=64, etp=1, dtype="fp8")
    own = predict_training("h800-sxm", m, 2048, 15360, stack="deepseek", **kw).breakdown
    plain = predict_training("h800-sxm", m, 2048, 15360, stack="deepseek", overlap_ep=False, dispatcher="alltoall",
                             **kw).breakdown
    assert own.ep_comm_s < plain.ep_comm_s and own.step_time_s < plain.step_time_s


def test_default_layout_shards_the_experts():
    # a model job without a layout: experts sharded over one NVLink domain (EP8, expert TP 1), TP 1 where
    # it fits; DeepSeek-V3's 61 layers take an uneven pipeline. Dense models keep their layout.
    from simulator.perf import default_layout

    q30 = load_model("qwen3-30b-a3b").model_spec()
    lay = default_layout(H100, q30, 64, 1024)
    assert (lay.tp, lay.ep, lay.expert_tp, lay.expert_dp) == (1, 8, 1, 8)
    ds = default_layout(H100, load_model("deepseek-v3").model_spec(), 512, 1024)
    assert ds.ep == 8 and ds.pp > 1 and 61 % ds.pp != 0
    dense = default_layout(H100, load_model("llama3-70b").model_spec(), 64, 512)
    assert (dense.ep, dense.etp) == (1, None)
