"""The model zoo and model-based jobs: runtimes from the performance model on the placed device."""

import numpy as np
import pandas as pd
import pytest

import simulator.perf
from simulator.errors import CapsimError
from simulator.job import Job
from simulator.perf import load_profile
from simulator.perf.jobs import fill_reference_durations, make_runtime, model_job_seconds
from simulator.perf.zoo import FlopsModel, TransformerModel, list_models, load_model
from simulator.workload.spec import SyntheticWorkload
from simulator.workload.synthetic import generate

ZOO = {"gpt3-175b", "llama3-8b", "llama3-70b", "llama3-405b", "mixtral-8x7b", "bert-large", "resnet50",
       "vit-l16", "dit-xl2", "llama2-7b", "llama2-13b", "llama2-70b", "nemotron4-15b", "nemotron4-340b"}


def test_zoo_has_the_promised_models_and_every_figure_is_cited():
    assert ZOO <= set(list_models())
    for name in ZOO:
        model = load_model(name)
        assert model.name == name
        assert all(model.sources[k] for k in model._figures())


@pytest.mark.parametrize("name", sorted(n for n in ZOO if n not in ("resnet50", "dit-xl2")))
def test_transformer_shapes_give_the_published_parameter_count(name):
    model = load_model(name)
    assert isinstance(model, TransformerModel)
    # Untied entries (Llama 3: tied_embeddings false) count the input embedding and the LM head separately.
    assert model.model_spec().total_params() == pytest.approx(model.params, rel=0.08)
    if model.active_params:
        assert model.model_spec().active_params() == pytest.approx(model.active_params, rel=0.05)


def test_a_model_is_found_under_the_names_tables_and_model_cards_give_it():
    spelled = {"Llama-3.1-70B-Instruct": "llama3-70b", "meta-llama/Llama-2-7b-hf": "llama2-7b",
               "Meta-Llama-3-8B": "llama3-8b", "Llama 3.3 70B": "llama3-70b", "DeepSeek-V3-Base": "deepseek-v3",
               "Mixtral-8x7B-v0.1": "mixtral-8x7b", "GPT-3 175B": "gpt3-175b", "Nemotron-4 340B": "nemotron4-340b",
               "gemma-3-27b-it": "gemma3-27b", "Qwen3-235B-A22B": "qwen3-235b-a22b",
               "meta-llama/Llama-3.2-1B": "llama3.2-1b", "Qwen2.5-72B-Instruct": "qwen2.5-72b",
               "Mixtral-8x22B-v0.1": "mixtral-8x22b", "google/gemma-2-9b-it": "gemma2-9b"}
    assert {name: load_model(name).name for name in spelled} == spelled
    # a different size of a known family is not one of these: Qwen2.5 14B has no entry
    with pytest.raises(CapsimError, match="unknown model 'Qwen2.5-14B'"):
        load_model("Qwen2.5-14B")


def test_unknown_model_and_uncited_figure_are_errors(tmp_path):
    with pytest.raises(CapsimError, match="llama3-8b"):
        load_model("llama-9000")
    path = tmp_path / "m.yaml"
    path.write_text("kind: cnn\nname: m\nfwd_flops_per_sample: 1e9\nsample: img\nparams: 1e6\n"
                    "sources: {params: paper}\n")
    with pytest.raises(CapsimError, match="fwd_flops_per_sample"):
        load_model(str(path))


def test_flops_models_run_for_3x_forward_flops_at_the_stated_efficiency():
    model = load_model("resnet50")
    assert isinstance(model, FlopsModel)
    seconds = model_job_seconds("h100-sxm", "resnet50", 8, samples=1.28e6 * 90)
    peak = load_profile("h100-sxm").peak("bf16") * 1e12
    assert seconds == pytest.approx(3 * 7.7e9 * 1.28e6 * 90 / (8 * peak * 0.4))


def _model_jobs() -> pd.DataFrame:
    return pd.DataFrame({"job_id": ["a", "b", "c"], "submit_time": [0.0, 1.0, 2.0], "gpus": [8, 64, 4],
                         "duration": [np.nan, np.nan, 100.0], "model": ["llama3-8b", "llama3-70b", None],
                         "tokens": [1e9, 2e10, np.nan], "tp": [np.nan, 8, np.nan]})


def test_make_runtime_uses_the_perf_model_per_device_and_caches(monkeypatch):
    calls = []

    def fake_job_runtime(device, model, gpus, tokens=None, steps=None, layout=None):
        calls.append((device, model.name, gpus, tokens, layout))
        return {"h100-sxm": 1000.0, "a100-sxm-80gb": 3000.0}[device] * tokens / 1e9 / gpus

    monkeypatch.setattr(simulator.perf, "job_runtime", fake_job_runtime)
    model_job_seconds.cache_clear()
    jobs = _model_jobs()
    filled = fill_reference_durations(jobs, "h100-sxm")
    assert filled["duration"].tolist() == [125.0, 312.5, 100.0]
    runtime_of = make_runtime(filled)
    job_a = Job(0, "a", 0.0, 8, 125.0)
    assert runtime_of(job_a, 8, "a100-sxm-80gb") == 375.0
    assert runtime_of(Job(1, "b", 1.0, 64, 312.5), 64, "h100-sxm") == 312.5
    assert runtime_of(Job(2, "c", 2.0, 4, 100.0), 2, "h100-sxm") == 200.0  # duration job: linear scaling
    runtime_of(job_a, 8, "a100-sxm-80gb")
    assert len(calls) == 3  # a on h100, b on h100, a on a100: the repeat came from the cache
    assert calls[1][4] == {"tp": 8}
    model_job_seconds.cache_clear()


def test_duration_only_tables_keep_the_plain_runtime():
    from simulator.job import duration_runtime

    jobs = pd.DataFrame({"job_id": ["x"], "submit_time": [0.0], "gpus": [1], "duration": [5.0]})
    assert make_runtime(jobs) is duration_runtime


def test_synthetic_model_jobs_get_model_columns_and_reference_durations():
    spec = SyntheticWorkload.model_validate({
        "kind": "synthetic", "jobs": 3, "arrival": {"process": "poisson", "rate_per_hour": 1},
        "gpus": 64, "model": "llama3-8b", "tokens": 1e10, "layout": {"tp": 2}})
    jobs = generate(spec, np.random.default_rng(0))
    assert jobs["duration"].isna().all() and (jobs["model"] == "llama3-8b").all() and (jobs["tp"] == 2).all()
    filled = fill_reference_durations(jobs, "h100-sxm")
    assert (filled["duration"] > 0).all() and filled["duration"].nunique() == 1
    with pytest.raises(ValueError, match="exactly one of 'tokens'"):
        SyntheticWorkload.model_validate({"kind": "synthetic", "jobs": 1, "gpus": 8, "model": "llama3-8b",
                                          "arrival": {"process": "poisson", "rate_per_hour": 1}})


def test_a_scenario_with_model_jobs_builds_with_perf_model_durations():
    from simulator.scenario import scenario_from_text
    from simulator.workload.build import build_jobs

    scenario = scenario_from_text("""
name: models
cluster: {pools: [{name: p, device: h100-sxm, nodes: 8, devices_per_node: 8}]}
workload:
  - {kind: synthetic, name: llm, jobs: 2, arrival: {process: poisson, rate_per_hour: 1}, gpus: 64,
     model: llama3-8b, tokens: 1.0e11}
  - {kind: synthetic, name: cnn, jobs: 2, arrival: {process: poisson, rate_per_hour: 1}, gpus: 8,
     model: resnet50, samples: 1.0e8}
""")
    jobs = build_jobs(scenario, [np.random.default_rng(i) for i in range(2)])
    llm = jobs[jobs["model"] == "llama3-8b"]["duration"]
    # 6 x 8e9 params x 1e11 tokens = 4.8e21 FLOPs at 25-60% MFU of 64 x 989 TFLOP/s: 1.3e5 to 3.0e5 s.
    assert ((llm > 1.2e5) & (llm < 3.1e5)).all()
    assert (jobs[jobs["model"] == "resnet50"]["duration"] > 0).all()
