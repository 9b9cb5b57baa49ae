"""Sliding-window models in a serving fleet: a request reserves its windowed layers' KV only up to the
window (vLLM's and SGLang's sliding-window managers free what falls out of it), in whole blocks of every
layer, the same bytes perf/decode.kv_cache_bytes prices; so more long requests fit at once."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.perf.decode import kv_cache_bytes
from simulator.perf.zoo import load_model
from simulator.serving.fleet import ServiceRuntime, reserved_blocks, simulate
from tests.serving.reference import AffineCost


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200_000), st.integers(2, 64), st.integers(1, 8), st.integers(1, 8192),
       st.sampled_from([1, 16, 64]))
def test_reserved_blocks_hold_the_cache_kv_cache_bytes_prices(total, layers, global_every, window, block):
    model = load_model("gpt-oss-20b").model_spec()
    model = type(model)(**{**model.__dict__, "layers": layers, "global_every": min(global_every, layers),
                           "sliding_window": window})
    svc = ServiceRuntime("s", 1, None, 8, 4096, 10**9, block,
                         kv_window=(model.layers, model.windowed_layers(), window))
    (blocks,) = reserved_blocks([svc], np.array([total]), np.array([0]))
    per_block = kv_cache_bytes(model, 1, 1, 1) * block  # one block: block tokens of every layer
    need = kv_cache_bytes(model, 1, 1, total)
    assert (blocks - 1) * per_block < need <= blocks * per_block  # the fewest whole blocks that hold it
    plain = ServiceRuntime("s", 1, None, 8, 4096, 10**9, block)
    assert reserved_blocks([plain], np.array([total]), np.array([0]))[0] == math.ceil(total / block) >= blocks


def test_a_windowed_model_fits_twice_the_long_requests():
    # GPT-OSS 20B: 24 layers, every other one a 128-token window. 8,100 tokens reserve
    # (24 * 8100 - 12 * 7972) / 24 = 4,114 tokens of every layer: 258 blocks of 16, not 507
    model = load_model("gpt-oss-20b").model_spec()
    window = (model.layers, model.windowed_layers(), model.sliding_window)
    assert window == (24, 12, 128)
    cost = AffineCost(slope=0.0)
    arrival, prompt, output = np.zeros(2), np.array([8000, 8000]), np.array([100, 100])
    for kv_window, together in ((None, False), (window, True)):
        fleet = simulate([ServiceRuntime("s", 1, cost, 8, 16_384, 600, 16, kv_window=kv_window)],
                         arrival, prompt, output)
        assert fleet.blocks == ([258, 258] if kv_window else [507, 507])
        assert (fleet.first[1] < fleet.end[0]) is together  # the second starts before the first ends


def test_a_scenario_service_of_a_windowed_model_reserves_by_window():
    # two 8,064-token requests of GPT-OSS 20B run at once in a 9,600-token cache (4,146 tokens of every
    # layer each); counted in full, one would have to wait for the other
    scenario = {"name": "w", "seed": 1,
                "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
                "services": [{"name": "chat", "model": "gpt-oss-20b", "pool": "main", "replicas": 1,
                              "scheduler": {"max_num_seqs": 8, "max_batched_tokens": 16384, "kv_tokens": 9600}}],
                "requests": [{"kind": "synthetic", "service": "chat", "requests": 2,
                              "arrival": {"process": "poisson", "rate_per_s": 1000.0}, "prompt_tokens": 8000,
                              "output_tokens": 64}]}
    req = simulator.run(scenario, progress=False).requests.sort_values("arrival_s")
    assert (req["status"] == "completed").all()
    first, second = req.iloc[0], req.iloc[1]
    assert second["first_token_s"] < first["end_s"]
