"""The replica's iteration costs against the performance model they come from."""

from __future__ import annotations

import pytest

from simulator.perf.inference import decode_step_time, prefill_time
from simulator.perf.zoo import load_model
from simulator.serving.cost import PerfCost, kv_capacity_tokens


@pytest.mark.parametrize("b", [1, 8, 64])
def test_decode_affine_form_is_within_one_and_a_half_percent(b):
    m = load_model("llama3-8b").model_spec()
    cost = PerfCost("h100-sxm", m)
    a, slope = cost.decode(b)
    for context in (100, 500, 1000, 2000, 4000, 8000):
        exact = decode_step_time("h100-sxm", m, 1, b, context)
        assert a + slope * b * context == pytest.approx(exact, rel=0.015)
    for context in (512, 4096):  # exact at the fit points
        assert a + slope * b * context == pytest.approx(decode_step_time("h100-sxm", m, 1, b, context), rel=1e-12)


def test_prefill_is_the_models_and_kv_capacity_is_memory_less_weights():
    m = load_model("llama3-8b").model_spec()
    assert PerfCost("h100-sxm", m).prefill(4, 2048) == prefill_time("h100-sxm", m, 1, 4, 512)
    tokens, weights, budget = kv_capacity_tokens(80.0, m, 1, "bf16", "bf16", 0.9)
    # llama3-8b: 8 KV heads x 128 x 32 layers x 2 (K, V) x 2 bytes = 128 KiB per token
    assert tokens == int((budget - weights) * 2**30 // (128 * 1024))
    assert 14.5 < weights < 15.5


def test_a_mixed_iteration_is_one_pass_over_chunk_and_decodes_plus_their_kv_reads():
    m = load_model("llama3-8b").model_spec()
    cost = PerfCost("h100-sxm", m)
    assert cost.mixed(0, 0, 512) == cost.prefill(1, 512)
    a, slope = cost.decode(16)
    assert cost.mixed(16, 16 * 1000, 512) == pytest.approx(cost.prefill(1, 528) + slope * 16_000, rel=1e-12)
    # a chunk costs more than the decode step alone, and less than the decode step plus the chunk's prefill
    assert a + slope * 16_000 < cost.mixed(16, 16_000, 512) < a + slope * 16_000 + cost.prefill(1, 512)


def test_nvfp4_weights_serve_from_an_fp8_cache_and_an_fp4_cache_is_refused():
    import simulator
    from simulator.errors import CapsimError

    m = load_model("llama3-8b").model_spec()
    fp4, fp8 = PerfCost("b200", m, dtype="fp4"), PerfCost("b200", m, dtype="fp8")
    assert fp4.kv_dtype == "fp8"  # NVFP4 checkpoints ship an FP8 KV cache
    tokens4, weights4, _ = kv_capacity_tokens(180.0, m, 1, "fp4", fp4.kv_dtype, 0.9)
    tokens8, weights8, _ = kv_capacity_tokens(180.0, m, 1, "fp8", fp8.kv_dtype, 0.9)
    assert weights4 == pytest.approx(0.5625 * weights8, rel=1e-9)  # 4 bits + one FP8 scale per 16 weights
    assert tokens4 > tokens8 and fp4.decode(1)[0] < fp8.decode(1)[0]
    service = {"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 1, "layout": {"dtype": "fp4"}}
    base = {"name": "fp4", "seed": 1, "cluster": {"pools": [{"name": "main", "device": "b200", "nodes": 1, "devices_per_node": 8}]},
            "services": [service],
            "requests": [{"kind": "synthetic", "service": "chat", "requests": 20, "prompt_tokens": 128,
                          "output_tokens": 8, "arrival": {"process": "poisson", "rate_per_s": 1.0}}]}
    served = simulator.run(base, progress=False).summary["services"]["chat"]
    assert served["requests_completed"] == 20 and served["kv_capacity_tokens"] > 0
    service["layout"]["kv_dtype"] = "fp4"
    with pytest.raises(CapsimError, match="kv_dtype"):
        simulator.run(base, progress=False)
