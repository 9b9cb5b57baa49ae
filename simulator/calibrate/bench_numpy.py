"""CPU micro-benchmarks with numpy: GEMM over a grid of shapes and dtypes, memory copy bandwidth,
and unfused attention. numpy has no bf16, so fp32 and fp16 stand in (recorded as such)."""

from __future__ import annotations

import time

import numpy as np

GRID = (256, 512, 1024, 2048)
QUICK_GRID = (128, 256, 512)


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, BLAS thread start-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_gemm(sizes=GRID, dtypes=("float32",), repeats: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for dt in dtypes:
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(dt)
            b = rng.standard_normal((n, n)).astype(dt)
            t = _best_time(lambda a=a, b=b: a @ b, repeats)
            out.append({"m": n, "n": n, "k": n, "dtype": dt, "tflops": 2.0 * n**3 / t / 1e12})
    return out


def bench_copy(sizes_mib=(16, 64, 256), repeats: int = 3) -> list[dict]:
    """Copy bandwidth counting bytes read + written (as STREAM Copy)."""
    out = []
    for mib in sizes_mib:
        src = np.ones(mib * 2**20 // 4, dtype=np.float32)
        dst = np.empty_like(src)
        t = _best_time(lambda src=src, dst=dst: np.copyto(dst, src), repeats)
        out.append({"kernel": "copy", "bytes": 2 * src.nbytes, "gbs": 2 * src.nbytes / t / 1e9})
    return out


def bench_attention(seq: int = 512, heads: int = 4, head_dim: int = 64, repeats: int = 3) -> list[dict]:
    """QK^T, softmax, AV in fp32; reports achieved TFLOP/s of the 4*h*s^2*d matmul FLOPs."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((heads, seq, head_dim)).astype(np.float32) for _ in range(3))

    def run():
        s = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        return s @ v

    t = _best_time(run, repeats)
    return [{"kernel": "unfused", "direction": "fwd", "causal": False, "seq": seq, "heads": heads,
             "head_dim": head_dim, "dtype": "fp32", "tflops": 4.0 * heads * seq * seq * head_dim / t / 1e12}]


def run_all(quick: bool = False) -> dict:
    sizes = QUICK_GRID if quick else GRID
    return {
        "gemm": bench_gemm(sizes, ("float32",) if quick else ("float32", "float16")),
        "hbm": bench_copy((8, 32) if quick else (16, 64, 256)),
        "attention": bench_attention(256 if quick else 1024),
        "collectives": [],  # one process, one device: nothing to all-reduce
        "device_name": _cpu_name(),
        "backend": f"numpy {np.__version__}",
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
