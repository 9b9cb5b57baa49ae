"""Host time of an eager PyTorch decode step: the operators one Llama-style decoder layer dispatches
per generated token, and the CPU time each costs, measured on this machine.

    python benchmarks/eager_host_overhead.py [--layers 32] [--repeat 300]

A decode step at batch 1 issues hundreds of tiny kernels; without CUDA graphs or a compiler the GPU
waits for Python and the dispatcher to issue each one, so the step lasts as long as the host takes
(the `hf-eager` serving stack, simulator/perf/serving_stacks.py). The layer below is written the way
eager decode loops write it (HF transformers, gpt-fast's eager baseline): RMSNorm in fp32, a fused QKV
projection, rotary embedding on real pairs, a static KV cache updated in place, GQA heads repeated,
SDPA with a mask, a SwiGLU MLP. Dimensions are tiny so that the CPU time is the dispatch cost alone
(a CUDA op additionally pays its launch call, so this is a lower bound of the GPU host's time).
"""

from __future__ import annotations

import argparse
import collections
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

# aten operators that only reinterpret a tensor (no kernel on a GPU)
VIEW_OPS = {"view", "_unsafe_view", "transpose", "split", "split_with_sizes", "slice", "select", "unsqueeze",
            "expand", "t", "reshape", "alias", "flatten", "unbind", "as_strided", "detach", "squeeze", "permute"}


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * self.weight


def rotate(x, cos, sin):
    """Rotary embedding on (even, odd) pairs of the head dimension."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    out = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return out.flatten(-2).type_as(x)


class DecoderLayer(torch.nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, ffn: int, max_len: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.attn_norm, self.mlp_norm = RMSNorm(dim), RMSNorm(dim)
        self.qkv = torch.nn.Linear(dim, (heads + 2 * kv_heads) * self.head_dim, bias=False)
        self.out = torch.nn.Linear(dim, dim, bias=False)
        self.gate = torch.nn.Linear(dim, ffn, bias=False)
        self.up = torch.nn.Linear(dim, ffn, bias=False)
        self.down = torch.nn.Linear(ffn, dim, bias=False)
        self.register_buffer("k_cache", torch.zeros(1, kv_heads, max_len, self.head_dim))
        self.register_buffer("v_cache", torch.zeros(1, kv_heads, max_len, self.head_dim))

    def forward(self, x, pos, cos, sin, mask):
        b, s, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1)
        q = rotate(q.view(b, s, self.heads, self.head_dim), cos, sin).transpose(1, 2)
        k = rotate(k.view(b, s, self.kv_heads, self.head_dim), cos, sin).transpose(1, 2)
        v = v.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        self.k_cache[:, :, pos] = k
        self.v_cache[:, :, pos] = v
        group = self.heads // self.kv_heads
        keys = self.k_cache.repeat_interleave(group, dim=1)
        values = self.v_cache.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        h = x + self.out(y.transpose(1, 2).contiguous().view(b, s, d))
        z = self.mlp_norm(h)
        return h + self.down(F.silu(self.gate(z)) * self.up(z))


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _inputs(dim: int, heads: int, max_len: int, pos: int = 16):
    half = dim // heads // 2
    cos = torch.ones(1, 1, 1, half)
    sin = torch.zeros(1, 1, 1, half)
    mask = torch.zeros(1, 1, 1, max_len, dtype=torch.bool)
    mask[..., : pos + 1] = True
    return torch.zeros(1, 1, dim), torch.tensor([pos]), cos, sin, mask


def layer_ops(heads: int = 4, kv_heads: int = 4) -> tuple[int, int]:
    """(operators dispatched, of which launch a kernel) by one decoder layer's decode step."""
    dim, max_len = 16 * heads, 64
    layer = DecoderLayer(dim, heads, kv_heads, 2 * dim, max_len).eval()
    counter = _Count()
    with torch.no_grad(), counter:
        layer(*_inputs(dim, heads, max_len))
    total = sum(counter.ops.values())
    return total, total - sum(n for op, n in counter.ops.items() if op in VIEW_OPS)


def host_seconds_per_layer(layers: int, repeat: int) -> float:
    """CPU time of one decoder layer's decode step with tiny tensors, one thread."""
    torch.set_num_threads(1)
    dim, heads, max_len = 64, 4, 64
    model = torch.nn.ModuleList(DecoderLayer(dim, heads, heads, 2 * dim, max_len) for _ in range(layers)).eval()
    args = _inputs(dim, heads, max_len)

    def step():
        x = args[0]
        for layer in model:
            x = layer(x, *args[1:])

    with torch.no_grad():
        for _ in range(20):
            step()
        start = time.process_time()
        for _ in range(repeat):
            step()
        return (time.process_time() - start) / repeat / layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    total, kernels = layer_ops()
    per_layer = host_seconds_per_layer(args.layers, args.repeat)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"operators per decoder layer per decode step: {total} dispatched, {kernels} launch a kernel")
    print(f"host CPU time per layer: {per_layer * 1e6:.0f} us, per dispatched operator: {per_layer / total * 1e6:.1f} us")
    print(f"a {args.layers}-layer model at batch 1: {per_layer * args.layers * 1e3:.1f} ms of host time per token")


if __name__ == "__main__":
    main()
