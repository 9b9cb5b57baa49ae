"""Serving stacks: the properties of an inference engine that change the time of a decode step on
the same hardware, independently of the model's FLOPs and bytes.

Each stack names:

- gqa_aware_decode: whether its decode attention kernel reads each KV head once per step for all the
  query heads of its group (FlashInfer, FlashAttention's decode path, TensorRT-LLM XQA), or re-reads
  the KV cache once per *query* head (vLLM's paged-attention v1/v2 CUDA kernels, one thread block per
  (sequence, query head); eager HF attention after `repeat_kv`), i.e. heads / kv_heads times the bytes.
- cuda_graphs: whether a decode step is replayed as a captured CUDA graph. With graphs the CPU issues
  one launch per step and kernels follow each other with a small gap (`kernel_gap_s`); without them
  every kernel is launched from Python, and when the host issues ops more slowly than the GPU runs them
  the step is host-bound (`host_s_per_layer`: each dispatched operator's host time, plus a launch call
  for each one that runs a kernel).
- step_overhead_s: host work per engine iteration that is NOT overlapped with the GPU (scheduling,
  building the batch's input tensors and block tables, sampling bookkeeping, detokenisation when it is
  on the critical path). Seconds per iteration, added to every decode step and to prefill.
- attention_kernel: the decode attention kernel generation, for the record.
- continuous_batching: whether the engine admits new requests into a running batch (iteration-level
  scheduling); throughput tables of such engines are priced as a steady state (serving_validation.py).

Figures and where they come from (every number that is not measured is marked assumed):

- KERNEL_GAP_GRAPH_S = 1.5 us: assumed; kernels replayed from a CUDA graph still leave ~1-2 us between
  dependent kernels, against the ~4 us charged per eagerly launched kernel (kernels.KERNEL_OVERHEAD_S).
- vLLM before v0.6 spent most of a step on the CPU: "for Llama 3 8B running on 1 H100 GPU: the HTTP API
  server takes 33% of the total execution time; 29% ... is spent on scheduling ...; only 38% of the time
  was spent on the actual GPU execution" (vLLM blog, "vLLM v0.6.0: 2.7x Throughput Improvement and 5x
  Latency Reduction", 2024-09-05). The vLLM V1 blog (2025-01-27) puts that GPU step at "as low as
  ~5ms" for Llama-8B on H100, so scheduling alone was ~29/38 x 5 ms ~ 4 ms per step: vllm-legacy's
  step_overhead_s (offline runs, API server excluded).
- vLLM v0.6+ / V1 overlap most of it (multi-step scheduling, async output processing, V1's separate
  EngineCore process and persistent batch; V1 aims at "near-zero CPU overhead"); what is left exposed
  is assumed ~1 ms per step (low confidence: no published per-step figure found).
- SGLang v0.4's overlapped "zero-overhead batch scheduler" shows no GPU idle time between consecutive
  decode batches in Nsight (SGLang v0.4 blog, 2024-12-04): 0.2 ms assumed for what remains (sampling sync).
- TensorRT-LLM's C++ batch manager / overlap scheduler (on by default in the PyTorch backend: "At step n,
  the system launches GPU computation for step n+1 without waiting for CPU tasks", TensorRT-LLM docs,
  Overlap Scheduler) and the static gptSessionBenchmark runs of v0.5-v0.7: 0.1 ms assumed.
- tensorrt-llm-legacy: TensorRT-LLM before its XQA kernel "provides optimization for MQA and GQA during
  generation phase" (TensorRT-LLM blog XQA-kernel.md, v0.8; the Falcon180B-H200 blog, v0.7a: "improved its
  Group Query Attention (GQA) kernels, in the generation phase, providing up to 2.4x improvement on
  Llama-70B over TensorRT-LLM v0.5"). Its decode kernel read the KV cache per query head. Its engines
  were benchmarked with static batching (gptSessionBenchmark), launched as one TensorRT engine per step:
  treated as graph-launched with a C++ runtime (0.1 ms per step, assumed).
- hf-eager (PyTorch eager, HF transformers `generate` or any eager decode loop): no CUDA graphs, so
  the host issues every operator of every layer. benchmarks/eager_host_overhead.py builds an eager
  Llama decoder layer the way such loops write it and counts what one decode step dispatches: 91 aten
  operators per layer, 50 of which launch a kernel (the rest are views). Their dispatch cost, measured
  with tiny tensors on one thread (2026-11-30, AMD EPYC 2-vCPU VM, torch 2.13 CPU): 6.3-7.5 us per
  operator; 6.5 us is used. A kernel operator on a GPU also pays the CUDA launch call,
  HOST_LAUNCH_S. The PyTorch gpt-fast blog (2023-11-30) measured such an eager baseline "heavily CPU
  overhead bound" at 25.5 tok/s for Llama-7B on A100 at batch 1 (a validation row, not used here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.errors import CapsimError
from simulator.perf.row_fields import name_spellings

KERNEL_GAP_GRAPH_S = 1.5e-6
KERNEL_GAP_EAGER_S = 4e-6  # = kernels.KERNEL_OVERHEAD_S: a launch a CUDA graph does not hide
# Host time of one cudaLaunchKernel call from an eager framework (the same few microseconds as the
# launch latency the GPU side is charged: kernels.KERNEL_OVERHEAD_S, "CUDA launch latency ~3-5 us").
HOST_LAUNCH_S = 4e-6


@dataclass(frozen=True)
class ServingStack:
    name: str
    gqa_aware_decode: bool
    cuda_graphs: bool
    step_overhead_s: float
    attention_kernel: str
    continuous_batching: bool
    host_op_s: float = 0.0           # host dispatch time per eagerly issued operator (no CUDA graphs)
    host_ops_per_layer: int = 0      # operators a decoder layer dispatches per step, views included
    host_kernels_per_layer: int = 0  # of which launch a kernel (each also pays HOST_LAUNCH_S)
    description: str = ""

    @property
    def kernel_gap_s(self) -> float:
        """GPU-side time between consecutive kernels of a step."""
        return KERNEL_GAP_GRAPH_S if self.cuda_graphs else KERNEL_GAP_EAGER_S

    @property
    def host_s_per_layer(self) -> float:
        """Host time to issue one decoder layer's operators (0 when a CUDA graph replays them)."""
        if self.cuda_graphs:
            return 0.0
        return self.host_ops_per_layer * self.host_op_s + self.host_kernels_per_layer * HOST_LAUNCH_S


STACKS: dict[str, ServingStack] = {
    s.name: s for s in (
        ServingStack("vllm", gqa_aware_decode=True, cuda_graphs=True, step_overhead_s=1.0e-3,
                     attention_kernel="FlashAttention-2/3 or FlashInfer (paged, GQA-aware decode)",
                     continuous_batching=True,
                     description="vLLM >= 0.6 / V1 engine, default CUDA graphs, FlashAttention or FlashInfer backend"),
        ServingStack("vllm-legacy", gqa_aware_decode=False, cuda_graphs=True, step_overhead_s=4.0e-3,
                     attention_kernel="paged-attention v1/v2 (one thread block per query head)",
                     continuous_batching=True,
                     description="vLLM 0.1-0.5 with its own paged-attention kernels and a synchronous Python scheduler"),
        ServingStack("tensorrt-llm", gqa_aware_decode=True, cuda_graphs=True, step_overhead_s=1.0e-4,
                     attention_kernel="XQA / masked multi-head attention (GQA-aware), fused kernels",
                     continuous_batching=True,
                     description="TensorRT-LLM engines or PyTorch backend; in-flight batching (v0.10+) or static "
                                 "gptSessionBenchmark (v0.5-v0.9)"),
        ServingStack("tensorrt-llm-legacy", gqa_aware_decode=False, cuda_graphs=True, step_overhead_s=1.0e-4,
                     attention_kernel="masked multi-head attention (KV re-read per query head)",
                     continuous_batching=False,
                     description="TensorRT-LLM v0.5-v0.7 before the XQA generation kernel (static gptSessionBenchmark)"),
        ServingStack("sglang", gqa_aware_decode=True, cuda_graphs=True, step_overhead_s=2.0e-4,
                     attention_kernel="FlashInfer / Triton (GQA-aware)", continuous_batching=True,
                     description="SGLang >= 0.4 with the overlapped (zero-overhead) scheduler"),
        ServingStack("hf-eager", gqa_aware_decode=False, cuda_graphs=False, step_overhead_s=0.0,
                     attention_kernel="eager / SDPA after repeat_kv (KV re-read per query head)",
                     continuous_batching=False, host_op_s=6.5e-6, host_ops_per_layer=91,
                     host_kernels_per_layer=50,
                     description="PyTorch eager decode loop (HF transformers generate), static batch"),
    )
}
DEFAULT_STACK = "vllm"
# Engines as tables name them, with the release that changed how a decode step is priced: vLLM's own
# paged-attention kernels and synchronous scheduler until v0.6 (vLLM blog, 2024-09-05), TensorRT-LLM's
# decode kernel re-reading the KV cache per query head until v0.7 (Falcon180B-H200 blog: "improved ... GQA
# kernels, in the generation phase"); `None`: one profile whatever the release.
ENGINES = {"vllm": ("vllm", "vllm-legacy", (0, 6)), "sglang": ("sglang", None, None),
           "tensorrt-llm": ("tensorrt-llm", "tensorrt-llm-legacy", (0, 7)),
           "hf-eager": ("hf-eager", None, None)}
ENGINE_NAMES = {"vllm": "vllm", "sglang": "sglang", "tensorrt-llm": "tensorrt-llm", "trt-llm": "tensorrt-llm",
                "trtllm": "tensorrt-llm", "tensorrt": "tensorrt-llm", "transformers": "hf-eager",
                "huggingface": "hf-eager", "hf": "hf-eager", "eager": "hf-eager"}


def resolve_stack(name) -> tuple[str, str]:
    """(profile, note) for a serving stack as tables spell it: "vLLM 0.5.4" is vllm-legacy, "vLLM v0.8" vllm,
    "TensorRT-LLM 0.6.1" tensorrt-llm-legacy, "TRT-LLM", "SGLang v0.4"; an engine without a profile (TGI,
    LMDeploy) is priced as the default, recent vLLM, and the note says so."""
    key = str(name).strip().lower()
    if key in STACKS:
        return key, ""
    version = re.search(r"(\d+)\.(\d+)", key)
    for candidate in name_spellings(key):
        engine = ENGINE_NAMES.get(candidate)
        if engine:
            current, legacy, since = ENGINES[engine]
            before = legacy is not None and version is not None and (int(version[1]), int(version[2])) < since
            stack = legacy if before else current
            return stack, f"serving stack {name!r} priced as {stack}"
    return DEFAULT_STACK, f"no profile for serving stack {name!r}: priced as {DEFAULT_STACK}"


def get_stack(name: str | ServingStack | None) -> ServingStack:
    """A stack by name (None: the default, recent vLLM)."""
    if isinstance(name, ServingStack):
        return name
    key = DEFAULT_STACK if name is None else str(name)
    try:
        return STACKS[key]
    except KeyError:
        raise CapsimError(f"unknown serving stack {key!r}; expected one of {', '.join(STACKS)}",
                          where="--stack") from None
