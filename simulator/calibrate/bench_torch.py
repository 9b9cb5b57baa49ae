"""Micro-benchmarks with PyTorch (optional extra `capsim[calibrate]`; imported lazily): GEMM over
shapes and dtypes, device-to-device copy, fused attention (SDPA) and all-reduce via torch.distributed
when launched with several ranks (torchrun). On `cuda` it measures the GPU; on `cpu` the same kernels
run on a small grid, so the path is exercised on machines without a GPU."""

from __future__ import annotations

from simulator.errors import CapsimError

GRID = ((4096, 4096, 4096), (8192, 8192, 8192), (2048, 8192, 8192), (8192, 8192, 28672), (1024, 1024, 1024),
        (16384, 8192, 1024), (512, 8192, 8192), (64, 8192, 8192))
QUICK_GRID = ((1024, 1024, 1024), (4096, 4096, 4096), (8192, 8192, 8192))
CPU_GRID = ((128, 128, 128), (256, 256, 256), (512, 512, 512))


def _torch():
    try:
        import torch
    except ImportError:
        raise CapsimError("the torch backend needs PyTorch: pip install 'capsim[calibrate]'", where="--backend") from None
    return torch


def _time_cpu(torch, fn, repeats: int) -> float:
    import time

    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _time_cuda(torch, fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def run_all(device: str = "cuda", quick: bool = False, repeats: int = 20) -> dict:
    torch = _torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise CapsimError("CUDA is not available on this machine", where="--device")
    dev = torch.device(device)
    on_gpu = device == "cuda"
    timed = _time_cuda if on_gpu else _time_cpu
    dtypes = {"bf16": torch.bfloat16} if on_gpu else {"fp32": torch.float32, "bf16": torch.bfloat16}
    if on_gpu and hasattr(torch, "float8_e4m3fn") and torch.cuda.get_device_capability(dev)[0] >= 9:
        dtypes["fp8"] = torch.float8_e4m3fn
    grid = (QUICK_GRID if quick else GRID) if on_gpu else CPU_GRID
    repeats = repeats if on_gpu else 3
    gemm = []
    for name, dt in dtypes.items():
        for m, n, k in grid:
            a = torch.randn(m, k, device=dev).to(dt)
            b = torch.randn(n, k, device=dev).to(dt).t()
            if name == "fp8":
                one = torch.ones((), device=dev)
                fn = lambda a=a, b=b, one=one: torch._scaled_mm(a, b, scale_a=one, scale_b=one,  # noqa: E731
                                                                out_dtype=torch.bfloat16)
            else:
                fn = lambda a=a, b=b: a @ b  # noqa: E731
            t = timed(torch, fn, repeats)
            gemm.append({"m": m, "n": n, "k": k, "dtype": name, "tflops": 2.0 * m * n * k / t / 1e12})
    hbm = []
    for mib in ((256,) if quick else (64, 256, 1024)) if on_gpu else (16,):
        src = torch.empty(mib * 2**20, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        t = timed(torch, lambda src=src, dst=dst: dst.copy_(src), repeats)
        hbm.append({"kernel": "copy", "bytes": 2 * src.numel(), "gbs": 2 * src.numel() / t / 1e9})
    attention = _attention(torch, dev, on_gpu, quick, timed, repeats)
    sustained = _sustained(torch, dev, timed, quick) if on_gpu else None
    name = torch.cuda.get_device_name(dev) if on_gpu else _cpu_name()
    collectives = _all_reduce(torch, dev, quick, repeats) if on_gpu else []
    return {"gemm": gemm, "hbm": hbm, "attention": attention, "collectives": collectives,
            "sustained": sustained, "device_name": name, "backend": f"torch {torch.__version__}"}


def _attention(torch, dev, on_gpu: bool, quick: bool, timed, repeats: int) -> list[dict]:
    """Fused attention forward and backward by sequence length, causal and not, for each SDPA backend
    the build has (flash = FlashAttention-2, cudnn). FLOPs as FlashAttention counts them: 4*b*h*s^2*d
    forward, 2.5x that backward, halved when causal."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"fa2": SDPBackend.FLASH_ATTENTION}
    if on_gpu and hasattr(SDPBackend, "CUDNN_ATTENTION"):
        backends["cudnn"] = SDPBackend.CUDNN_ATTENTION
    if not on_gpu:
        backends = {"unfused": SDPBackend.MATH}
    seqs = ((2048, 8192) if quick else (1024, 2048, 4096, 8192, 16384)) if on_gpu else (256,)
    out = []
    for kernel, backend in backends.items():
        for seq in seqs:
            batch, heads = max(1, 16384 // seq), 16  # FlashAttention's benchmark shapes: 16k tokens, hidden 2048
            for causal in (True, False):
                q, k, v = (torch.randn(batch, heads, seq, 128, device=dev, dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                flops = 4.0 * batch * heads * seq * seq * 128 * (0.5 if causal else 1.0)
                try:
                    with sdpa_kernel(backend):
                        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        g = torch.randn_like(y)
                        t_fwd = timed(torch, lambda q=q, k=k, v=v, c=causal:  # noqa: E731
                                      torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=c), repeats)
                        t_bwd = timed(torch, lambda y=y, g=g, inputs=(q, k, v):  # noqa: E731
                                      torch.autograd.grad(y, inputs, g, retain_graph=True), repeats)
                except RuntimeError:  # this backend does not run here (architecture, dtype, build)
                    break
                for direction, t, f in (("fwd", t_fwd, flops), ("bwd", t_bwd, 2.5 * flops)):
                    out.append({"kernel": kernel, "direction": direction, "causal": causal, "seq": seq,
                                "head_dim": 128, "dtype": "bf16" if on_gpu else "fp32", "tflops": f / t / 1e12})
    return out


def _sustained(torch, dev, timed, quick: bool) -> dict:
    """A dense bf16 GEMM on random data run back to back for a while (the power limit settles), against
    the same GEMM in a short burst: the share of the burst rate a training run keeps."""
    import time

    n = 8192
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    flops = 2.0 * n**3
    burst = flops / timed(torch, lambda: a @ b, 5) / 1e12
    seconds = 10.0 if quick else 60.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # heat the part to its steady state
        timed(torch, lambda: a @ b, 50)
    steady = flops / timed(torch, lambda: a @ b, 200) / 1e12
    return {"gemm_clock_fraction": round(min(1.0, steady / burst), 4), "burst_tflops": round(burst, 1),
            "sustained_tflops": round(steady, 1), "seconds": seconds, "shape": f"{n}^3 bf16"}


def _cpu_name() -> str:
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _all_reduce(torch, dev, quick: bool, repeats: int) -> list[dict]:
    """nccl-tests-style bus bandwidth when run under torchrun with several ranks; empty otherwise."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return []
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl")
    out = []
    for mib in ((64,) if quick else (1, 16, 256)):
        buf = torch.empty(mib * 2**20 // 2, dtype=torch.bfloat16, device=dev)
        t = _time_cuda(torch, lambda buf=buf: dist.all_reduce(buf), repeats)
        size = buf.numel() * 2
        out.append({"op": "all_reduce", "bytes": size, "group": world, "scope": "scale_up",
                    "busbw_gbs": size * 2 * (world - 1) / world / t / 1e9})
    return out
