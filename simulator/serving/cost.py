"""What a replica's iterations cost, from the performance model (perf/inference.py), and how many KV
tokens it can hold.

A prefill iteration of n prompts holding `tokens` tokens together is priced as `prefill_time` of n
prompts of tokens / n tokens each (exact for equal prompts; for unequal ones the linear part is exact
and attention, quadratic in each prompt's length, is taken at the mean length).

A decode iteration of b sequences whose contexts sum to T is `decode_step_time(b, T / b)`. Its KV read
makes it grow with T; the performance model prices it at a bandwidth that depends slightly on the
bytes read, so it is affine in T only nearly. The replica uses the affine form A(b) + B(b) T through
the model's values at 512 and 4096 tokens per sequence (within about 1% of the model's own value from
100 to 8000 tokens per sequence: tests/serving/test_cost.py), which lets the iterations between two
changes of the batch be summed in closed form (replica.py).

A chunked-prefill iteration (`mixed`) of b decodes and a chunk of c prompt tokens is one forward pass
over c + b tokens plus the decodes' KV reads.
"""

from __future__ import annotations

import math

from simulator.perf.decode import kv_dtype_of
from simulator.perf.inference import decode_step_time, kv_cache_bytes, prefill_time, weight_bytes
from simulator.perf.model import ModelSpec

GIB = 2**30
FIT_CONTEXTS = (512.0, 4096.0)  # tokens per sequence at which the decode time's affine form is fitted


class PerfCost:
    """Iteration times of one replica layout from the performance model (cached per batch shape)."""

    def __init__(self, device: str, model: ModelSpec, tp: int = 1, dtype: str = "bf16",
                 kv_dtype: str | None = None, stack: str | None = None):
        self.device, self.model, self.tp, self.dtype = device, model, tp, dtype
        self.kv_dtype, self.stack = kv_dtype_of(dtype, kv_dtype), stack
        self._prefill: dict[tuple[int, int], float] = {}
        self._by_length: dict[tuple[int, int], float] = {}
        self._decode: dict[int, tuple[float, float]] = {}

    def prefill(self, n: int, tokens: int) -> float:
        """Seconds of one iteration that prefills `n` prompts of `tokens` tokens in all."""
        key = (n, tokens)
        t = self._prefill.get(key)
        if t is None:  # priced by (n, mean prompt length): many totals share one
            length = max(1, round(tokens / n))
            t = self._by_length.get((n, length))
            if t is None:
                t = self._by_length[n, length] = prefill_time(self.device, self.model, self.tp, n, length, self.dtype,
                                                               self.stack)
            self._prefill[key] = t
        return t

    def mixed(self, b: int, context: int, chunk: int) -> float:
        """Seconds of a chunked-prefill iteration: `b` decodes whose contexts sum to `context` beside a
        prompt chunk of `chunk` tokens. Priced as one forward pass over chunk + b tokens (the weights are
        read once for the chunk and the decodes together) plus the decodes' KV reads, B(b) x context; the
        chunk's attention to the prompt's earlier chunks is not counted."""
        t = self.prefill(1, chunk + b)
        return t + self.decode(b)[1] * context if b else t

    def decode(self, b: int) -> tuple[float, float]:
        """(A, B): one decode iteration of `b` sequences whose contexts sum to T lasts A + B T seconds."""
        ab = self._decode.get(b)
        if ab is None:
            lo, hi = FIT_CONTEXTS
            f_lo = decode_step_time(self.device, self.model, self.tp, b, lo, self.dtype, self.kv_dtype, self.stack)
            f_hi = decode_step_time(self.device, self.model, self.tp, b, hi, self.dtype, self.kv_dtype, self.stack)
            slope = (f_hi - f_lo) / (b * (hi - lo))
            ab = self._decode[b] = (f_lo - slope * b * lo, slope)
        return ab


def kv_capacity_tokens(device_memory_gib: float, model: ModelSpec, tp: int, dtype: str, kv_dtype: str,
                       memory_utilization: float) -> tuple[int, float, float]:
    """(KV tokens a replica holds, weights GiB per device, budget GiB per device): the share
    `memory_utilization` of each device's memory, less its weights, divided by one token's KV bytes
    per device. Activations and the CUDA graphs' workspace are not counted (vLLM profiles them; they
    are small beside the cache at serving batch sizes)."""
    budget = device_memory_gib * GIB * memory_utilization
    weights = weight_bytes(model, tp, dtype)
    per_token = kv_cache_bytes(model, tp, 1, 1, kv_dtype)
    tokens = max(0, math.floor((budget - weights) / per_token))
    return tokens, weights / GIB, budget / GIB
