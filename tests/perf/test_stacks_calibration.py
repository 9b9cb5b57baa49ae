"""Software stacks, uneven pipeline stages, the stack fit and its cross-validation, `validate-perf --runs`."""

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from simulator.errors import CapsimError
from simulator.perf.api import predict_training
from simulator.perf.calibration import calibrate, calibration_runs, cross_validate, fit
from simulator.perf.cli import validate_perf
from simulator.perf.layout import make_layout, stage_layers
from simulator.perf.model import ModelSpec
from simulator.perf.published import evaluate_run, resolve_stack
from simulator.perf.stacks import list_stacks, load_stack, trial_efficiencies

SMALL = {"layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 8, "ffn": 5632, "mlp": "swiglu", "vocab": 32000,
         "seq_len": 2048}


def test_uneven_stages_take_blocks_off_the_ends_first():
    # Llama 3 405B: 126 layers on 16 stages = 7, 8 x 14, 7 (Llama 3 Herd of Models, Sec. 3.3.2)
    assert stage_layers(126, 16) == (7,) + (8,) * 14 + (7,)
    assert stage_layers(70, 12) == (5,) + (6,) * 10 + (5,)  # BLOOM: 70 blocks + 2 embeddings over 12
    assert stage_layers(96, 8) == (12,) * 8
    for layers in range(1, 60):
        for pp in range(1, layers + 1):
            counts = stage_layers(layers, pp)
            assert sum(counts) == layers and len(counts) == pp and max(counts) - min(counts) <= 1
    # the embedding and the loss count as a stage each (account_for_embedding/loss_in_pipeline_split): up to two
    # more stages than blocks, the end stages holding none
    assert stage_layers(4, 6) == (0, 1, 1, 1, 1, 0) and stage_layers(5, 6) == (1, 1, 1, 1, 1, 0)
    m = ModelSpec(**SMALL)  # 8 blocks
    assert make_layout(m, 10, 10, pp=10).pp == 10
    with pytest.raises(CapsimError, match="cannot fill"):
        make_layout(m, 11, 11, pp=11)


def test_uneven_pipeline_is_paced_by_its_slowest_stage():
    # 9 layers on 4 stages hold (2, 3, 2, 2) blocks; the last also runs the LM head. The pace is the
    # slower of the 3-block stage and the 2-block + head stage, for every microbatch and the bubble.
    from simulator.perf.layout import bubble_fraction, make_layout
    from simulator.perf.step import head_times, layer_times

    for vocab in (32000, 256000):  # a small head (3-block stage paces) and a large one (the last stage paces)
        m = ModelSpec(**{**SMALL, "layers": 9, "vocab": vocab})
        lay = make_layout(m, 8, 16, pp=4, zero=1)
        lt, head = layer_times("h100-sxm", m, lay), head_times("h100-sxm", m, lay)
        per_layer = lt.fwd_compute + lt.bwd_compute + lt.recompute
        pace = max(3 * per_layer, 2 * per_layer + head)
        micro = 16 // (lay.dp * lay.micro_batch)
        b = predict_training("h100-sxm", m, 8, 16, pp=4, zero=1).breakdown
        assert b.compute_s == pytest.approx(micro * pace, rel=1e-9)
        assert b.bubble_s == pytest.approx(bubble_fraction(4, 1, micro) * micro * (pace + b.pp_comm_s / micro),
                                           rel=1e-9)


def test_every_stack_profile_loads_and_cites_its_parameters():
    import simulator.perf.stacks as stacks

    for name in list_stacks():
        s = load_stack(name)
        raw = yaml.safe_load((stacks.stacks_dir() / f"{name}.yaml").read_text())
        for key in ("attention", "host_us_per_layer", "exposed_dp_share", "overlap_tp", "optimizer_bytes_per_param",
                    "step_overhead_s"):
            assert raw["sources"].get(key), f"{name}: no source for {key}"
        if "async_tp_backward" in raw:
            assert raw["sources"].get("async_tp_backward"), f"{name}: no source for async_tp_backward"
        assert 0 < s.efficiency <= 2
    with pytest.raises(CapsimError, match="unknown stack 'nope'"):
        load_stack("nope")


def test_stack_aliases_and_unknown_stacks_fall_back_with_a_note():
    assert resolve_stack("Megatron-DeepSpeed")[0] == "deepspeed"
    # spellings of published tables: case, spaces, underscores, versions and remarks do not matter
    for spelled, stack in (("NeMo 2.0", "nemo"), ("Megatron_LM v0.9", "megatron-core"), ("NeMo 24.07", "nemo"),
                           ("torchtitan (FSDP2)", "torchtitan"), ("PyTorch FSDP2", "torchtitan"),
                           ("MaxText", "maxtext"), ("Mosaic LLM Foundry", "llm-foundry"),
                           ("Megatron-DeepSpeed 0.9", "deepspeed"), ("Megatron-Bridge", "nemo")):
        name, note = resolve_stack(spelled)
        assert name == stack and (spelled in note or spelled.lower() == stack), spelled
    assert resolve_stack("nemo") == ("nemo", "") and resolve_stack("MaxText") == ("maxtext", "")
    name, note = resolve_stack("colossalai")
    assert name == "generic" and "colossalai" in note
    name, note = resolve_stack(None)
    assert name == "generic" and "no stack" in note
    # a stack the calibration set has no runs of: Megatron-Core's structure at the pooled efficiency, which
    # is what leave-one-stack-out cross-validation gives a left-out stack
    from dataclasses import replace

    from simulator.perf.stacks import fitted_efficiencies

    generic, core = load_stack("generic"), load_stack("megatron-core")
    assert generic.efficiency == fitted_efficiencies()[1] != core.efficiency
    assert replace(generic, name=core.name, efficiency=core.efficiency, moe_host_us_per_expert=0.0) == \
        replace(core, moe_host_us_per_expert=0.0)


def test_host_overhead_floors_a_launch_bound_layer():
    # a tiny model: the GPU work of a layer is far below the stack's host time per layer
    tiny = ModelSpec(layers=4, hidden=256, heads=4, vocab=1000, seq_len=128)
    with trial_efficiencies({}, 1.0):
        eager = predict_training("h100-sxm", tiny, 1, 1, stack="llm-foundry")
        compiled = predict_training("h100-sxm", tiny, 1, 1, stack="maxtext")
    host = load_stack("llm-foundry").host_us_per_layer * 1e-6
    assert eager.breakdown.compute_s >= 4 * 3 * host  # fwd + 2x bwd per layer
    assert compiled.breakdown.compute_s < eager.breakdown.compute_s


def test_efficiency_scales_kernel_time_only():
    m = ModelSpec(**SMALL)
    with trial_efficiencies({}, 1.0):
        full = predict_training("h100-sxm", m, 8, 64, stack="kernels").breakdown
    with trial_efficiencies({"torchtitan": 0.5}, 1.0):
        half = predict_training("h100-sxm", m, 8, 64, stack="torchtitan").breakdown
        one = predict_training("h100-sxm", m, 8, 64, stack="torchtitan").breakdown
    with trial_efficiencies({"torchtitan": 1.0}, 1.0):
        one = predict_training("h100-sxm", m, 8, 64, stack="torchtitan").breakdown
    assert half.compute_s == pytest.approx(2 * one.compute_s, rel=1e-9)
    assert half.optimizer_s == pytest.approx(one.optimizer_s)
    assert full.compute_s > 0


def _synthetic_set(tmp_path, truth: dict[str, float]):
    """Published values generated by the model itself at known stack efficiencies."""
    runs = []
    for i, (stack, e) in enumerate(sorted(truth.items())):
        for j, (layers, seq) in enumerate(((8, 2048), (16, 4096), (12, 8192))):
            run = {"name": f"{stack}-{j}", "family": f"fam{i}{j % 2}", "stack": stack, "device": "h100-sxm", "gpus": 8,
                   "model": {**SMALL, "layers": layers, "seq_len": seq}, "global_batch": 16,
                   "layout": {"tp": 1, "zero": 1}, "metric": "tokens_per_s_per_gpu", "value": 1.0}
            with trial_efficiencies({stack: e}, 1.0):
                run["value"] = evaluate_run(run).predicted
            runs.append(run)
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump({"runs": runs}))
    return path


def test_fit_recovers_the_efficiencies_that_generated_the_data(tmp_path):
    truth = {"torchtitan": 0.62, "nemo": 0.85, "llm-foundry": 0.7}
    result = fit(calibration_runs(_synthetic_set(tmp_path, truth)))
    for stack, e in truth.items():
        assert result["stacks"][stack]["unshrunk"] == pytest.approx(e, rel=0.01)
        # shrunk toward the pooled value, never past it
        pooled = result["pooled_efficiency"]
        shrunk = result["stacks"][stack]["efficiency"]
        assert min(e, pooled) - 1e-3 <= shrunk <= max(e, pooled) + 1e-3


def test_cross_validation_never_sees_the_held_out_group(tmp_path):
    truth = {"torchtitan": 0.6, "nemo": 0.9}
    runs = calibration_runs(_synthetic_set(tmp_path, truth))
    rows = cross_validate(runs, by="stack")
    # a held-out stack is priced at the other stack's efficiency: its error is the ratio of the two
    for run, row in zip(runs, rows, strict=True):
        other = 0.9 if run["stack"] == "torchtitan" else 0.6
        assert row.error > 0 if run["stack"] == "torchtitan" else row.error < 0
        assert abs(math.log1p(row.error)) == pytest.approx(abs(math.log(other / truth[run["stack"]])), rel=0.15)


def test_stored_fit_is_the_fit_of_the_named_calibration_set():
    from simulator.perf.stacks import fit_file

    stored = yaml.safe_load(fit_file().read_text())
    fresh = calibrate()
    assert stored["calibration_set"] == fresh["calibration_set"] == "workloads/validation/published_runs.yaml"
    assert stored["pooled_efficiency"] == pytest.approx(fresh["pooled_efficiency"], abs=2e-3)
    for name, v in fresh["stacks"].items():
        assert stored["stacks"][name]["efficiency"] == pytest.approx(v["efficiency"], abs=2e-3), name
    for key in ("leave_one_family_out", "leave_one_device_out", "leave_one_stack_out"):
        assert stored["cross_validated"][key]["median_abs_error"] == pytest.approx(
            fresh["cross_validated"][key]["median_abs_error"], abs=2e-3)


def test_validate_runs_json_contract_and_unexpressible_rows(tmp_path):
    good = {"name": "ok", "device": "h100-sxm", "gpus": 8, "stack": "torchtitan", "model": SMALL,
            "global_batch": 16, "layout": {"tp": 2, "zero": 1, "some_future_key": 3},
            "metric": "tokens_per_s_per_gpu", "value": 10000, "citation": "ignored"}
    bad_layout = {**good, "name": "bad-tp", "layout": {"tp": 3}}
    bad_metric = {**good, "name": "bad-metric", "metric": "joules"}
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump({"runs": [good, bad_layout, bad_metric]}))
    r = CliRunner().invoke(validate_perf, ["--runs", str(path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    by = {row["name"]: row for row in out["runs"]}
    assert set(by["ok"]) >= {"name", "predicted", "published", "error"}
    assert by["ok"]["error"] == pytest.approx((by["ok"]["predicted"] - 10000) / 10000)
    assert "some_future_key" in by["ok"]["notes"]
    assert by["bad-tp"]["error"] is None and "tp" in by["bad-tp"]["reason"]
    assert by["bad-metric"]["error"] is None and "metric" in by["bad-metric"]["reason"]
    assert out["summary"]["failed"] == 2 and out["summary"]["summary_rows"] == 1
    assert "cannot predict bad-tp" in r.stderr
    table = CliRunner().invoke(validate_perf, ["--runs", str(path)])
    assert "CANNOT PREDICT" in table.output and "median |error|" in table.output


def test_validate_runs_bad_file_is_one_clear_error(tmp_path):
    missing = CliRunner().invoke(validate_perf, ["--runs", str(tmp_path / "none.yaml")])
    assert missing.exit_code != 0 and "runs file not found" in missing.output
    (tmp_path / "x.yaml").write_text("runs: 5\n")
    bad = CliRunner().invoke(validate_perf, ["--runs", str(tmp_path / "x.yaml")])
    assert bad.exit_code != 0 and "runs:" in bad.output and "Traceback" not in bad.output


def test_rows_in_other_tools_spelling_are_priced_not_refused():
    base = {"name": "a", "device": "h100-sxm", "gpus": 8, "model": SMALL, "global_batch": 16,
            "layout": {"tp": 1, "recompute": "full"}, "metric": "tokens_per_s_per_gpu", "value": 1000}
    ref = evaluate_run(base)
    aliased = evaluate_run({**base, "device": "H100", "layout": {"tp": 1, "recompute": True},
                            "model": {**SMALL, "rope_theta": 500000}})
    assert aliased.predicted == ref.predicted and "rope_theta" in aliased.notes
    # a model under its config.json names is the same model; one without its depth is refused, not
    # priced at defaults
    hf = {"num_hidden_layers": SMALL["layers"], "hidden_size": SMALL["hidden"], "num_attention_heads": SMALL["heads"],
          "vocab_size": SMALL["vocab"], "seq_length": SMALL["seq_len"]}
    assert evaluate_run({**base, "model": {**{k: v for k, v in SMALL.items() if k not in
                                               ("layers", "hidden", "heads", "vocab", "seq_len")}, **hf}}
                        ).predicted == ref.predicted
    no_depth = evaluate_run({**base, "model": {k: v for k, v in SMALL.items() if k != "layers"}})
    assert no_depth.predicted is None and "missing model key layers" in no_depth.reason
    no_seq = evaluate_run({**base, "model": {k: v for k, v in SMALL.items() if k != "seq_len"}})
    assert no_seq.predicted is None and "seq_len" in no_seq.reason
    # a layout under Megatron / NeMo names (a table's FSDP column, VP, MBS, precision) is the same layout
    nemo_names = evaluate_run({**base, "num_gpus": 8, "global_batch_size": 16, "gpus": None, "global_batch": None,
                               "layout": {"tensor_model_parallel_size": 1, "activation_checkpointing": True,
                                          "fsdp": 8, "mbs": 2}})
    plain = evaluate_run({**base, "layout": {"tp": 1, "recompute": "full", "zero": 3, "micro_batch": 2}})
    assert nemo_names.predicted == plain.predicted, nemo_names.reason
    # a zoo model under its model-card name, its sequence length and chip count under a TPU table's names
    zoo = {**base, "model": "llama3-8b", "seq_len": 4096}
    spelled = {**zoo, "model": "Meta-Llama-3.1-8B", "seq_len": None, "sequence_length": 4096, "gpus": None, "chips": 8}
    assert evaluate_run(spelled).predicted == evaluate_run(zoo).predicted is not None
    # a Megatron-Bridge recipe's dispatcher key is the layout's dispatcher
    moe_row = {**base, "gpus": 16, "global_batch": 32, "model": {**SMALL, "num_experts": 16, "top_k": 4}}
    bridge = evaluate_run({**moe_row, "layout": {"tp": 1, "ep": 16, "moe_flex_dispatcher_backend": "HybridEP"}})
    ours = evaluate_run({**moe_row, "layout": {"tp": 1, "ep": 16, "dispatcher": "hybridep"}})
    every_copy = evaluate_run({**moe_row, "layout": {"tp": 1, "ep": 16}})
    assert bridge.predicted == ours.predicted > every_copy.predicted, bridge.reason
    # system names as performance tables print them
    from simulator.perf.published import resolve_device

    spelled = {"DGX-H100": "h100-sxm", "GB200 NVL72": "gb200", "DGX-B200": "b200", "A100 80GB": "a100-sxm-80gb",
               "TPU v5p": "tpu-v5p", "HGX H800": "h800-sxm", "H200 SXM 141GB": "h200-sxm",
               "NVIDIA H100 80GB HBM3": "h100-sxm", "Tesla V100-SXM2-32GB": "v100-sxm-32gb", "Intel Gaudi 2": "gaudi2"}
    assert {name: resolve_device(name) for name in spelled} == spelled
    # NeMo's precision names: FP8 with current scaling or MXFP8 blocks is priced as FP8
    fp8 = evaluate_run({**base, "layout": {"tp": 1, "recompute": "full", "dtype": "fp8"}})
    for written in ("FP8-CS", "mxfp8", "fp8_mx", "fp8-hybrid", "amp_fp8"):
        row = evaluate_run({**base, "layout": {"tp": 1, "recompute": "full", "dtype": written}})
        assert row.predicted == fp8.predicted and "priced as fp8" in row.notes
    # Lightning / NeMo `precision` and Composer's names for 16-bit mixed precision
    bf16 = evaluate_run({**base, "layout": {"tp": 1, "recompute": "full", "dtype": "bf16"}})
    for written in ("bf16-mixed", "amp_bf16", "bf16-true"):
        row = evaluate_run({**base, "layout": {"tp": 1, "recompute": "full", "precision": written}})
        assert row.predicted == bf16.predicted and "priced as bf16" in row.notes
    # a model mapping may name a zoo entry and override its fields: the same prediction as the zoo name
    # with the row's seq_len beside it, and as the zoo entry's fields written out
    from dataclasses import asdict

    from simulator.perf.zoo import load_model

    by_name = evaluate_run({**base, "model": "llama3-8b", "seq_len": 2048})
    overridden = evaluate_run({**base, "model": {"name": "llama3-8b", "seq_len": 2048}})
    fields = {k: v for k, v in asdict(load_model("llama3-8b").model_spec()).items() if k != "name" and v is not None}
    written_out = evaluate_run({**base, "model": {**fields, "seq_len": 2048}})
    assert by_name.predicted == overridden.predicted == written_out.predicted is not None, overridden.reason
    # the row's own fields win over the zoo's whatever their spelling: seq_len beside the mapping, a config.json
    # name inside it
    beside = evaluate_run({**base, "model": {"name": "llama3-8b"}, "seq_len": 2048})
    assert beside.predicted == by_name.predicted
    shallower = evaluate_run({**base, "model": {"name": "llama3-8b", "seq_len": 2048, "num_hidden_layers": 16}})
    assert shallower.predicted == evaluate_run({**base, "model": {**fields, "seq_len": 2048, "layers": 16}}).predicted
    # a `name` the zoo does not hold only describes a shape given in full; `zoo:` must name an entry
    described = evaluate_run({**base, "model": {**fields, "seq_len": 2048, "name": "our 8B variant"}})
    assert described.predicted == written_out.predicted
    unknown = evaluate_run({**base, "model": {"zoo": "no-such-model", "seq_len": 2048}})
    assert unknown.predicted is None and "unknown model" in unknown.reason
    six_n = evaluate_run({**base, "metric": "tflops_per_gpu", "flops": "6n"})
    with_attn = evaluate_run({**base, "metric": "tflops_per_gpu", "flops": "6n_attn"})
    assert six_n.predicted < with_attn.predicted
    # a serving metric alone marks a serving row, whose shape may sit at the top level
    serving = evaluate_run({"name": "s", "device": "h100-sxm", "model": "llama3-8b", "metric": "tpot_s", "value": 0.01,
                            "layout": {"tp": 1}, "batch": 8, "prompt_len": 512, "output_len": 128})
    assert serving.kind == "serving" and serving.predicted > 0, serving.reason


def test_fit_recovers_the_moe_host_time_that_generated_the_data(tmp_path):
    # dense rows at nemo efficiency 0.85 fix the efficiency; MoE rows generated with 80 us of host time
    # per local expert then fix that, and the refit leaves the efficiency where the dense rows put it
    moe_model = {**SMALL, "num_experts": 8, "top_k": 2}
    runs = []
    for j, (layers, seq, ep, model) in enumerate(((8, 2048, 1, SMALL), (16, 4096, 1, SMALL), (8, 2048, 4, moe_model),
                                                 (12, 4096, 8, moe_model), (8, 4096, 2, moe_model))):
        run = {"name": f"row-{j}", "family": f"fam{j}", "stack": "nemo", "device": "h100-sxm", "gpus": 8,
               "model": {**model, "layers": layers, "seq_len": seq}, "global_batch": 16,
               "layout": {"tp": 1, "zero": 1, "ep": ep}, "metric": "tokens_per_s_per_gpu", "value": 1.0}
        with trial_efficiencies({"nemo": 0.85}, 1.0, 80.0):
            run["value"] = evaluate_run(run).predicted
        runs.append(run)
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump({"runs": runs}))
    result = fit(calibration_runs(path))
    assert result["moe_host_us_per_expert"] == pytest.approx(80.0, rel=0.02)
    assert result["stacks"]["nemo"]["unshrunk"] == pytest.approx(0.85, rel=0.01)
    # a set without MoE rows leaves it at 0
    dense_only = tmp_path / "dense.yaml"
    dense_only.write_text(yaml.safe_dump({"runs": runs[:2]}))
    assert fit(calibration_runs(dense_only))["moe_host_us_per_expert"] == 0.0
