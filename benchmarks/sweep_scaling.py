"""Sweep throughput: the same sweep serially, on local worker processes, and on Ray (when installed).

    python benchmarks/sweep_scaling.py [--jobs 50000] [--runs 8] [--workers 1 2] [--ray local]

Runs are independent, so a sweep should scale with cores until the per-run start-up (a worker's
imports, Ray's task dispatch) dominates. Every variant must give the same runs table.
"""

from __future__ import annotations

import argparse
import time


def spec(jobs: int, runs: int) -> dict:
    return {
        "name": "scaling", "seeds": runs,
        "base": {
            "name": "bench", "seed": 1,
            "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 32, "devices_per_node": 8}]},
            "workload": [{"kind": "synthetic", "jobs": jobs,
                          "arrival": {"process": "poisson", "rate_per_hour": 0.85 * 256 / 4.7},
                          "gpus": {"choice": [1, 2, 4, 8, 16, 32], "weights": [0.55, 0.1, 0.1, 0.15, 0.07, 0.03]},
                          "duration": {"dist": "exponential", "mean": "1h"}}],
        },
    }


def main() -> None:
    from simulator.experiment import sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray", default="local", help="Ray address, or 'none' to skip Ray")
    args = parser.parse_args()
    variants = [(f"local x{w}", {"workers": w}) for w in args.workers]
    if args.ray != "none":
        try:
            import ray  # noqa: F401

            variants.append((f"ray ({args.ray})", {"ray_address": args.ray}))
        except ImportError:
            print("ray not installed: skipping the Ray variant")
    print(f"{args.runs} runs of {args.jobs:,} jobs each")
    print(f"{'executor':<14} {'seconds':>8} {'runs/s':>7} {'speed-up':>9}")
    reference, first = None, None
    for name, kwargs in variants:
        start = time.perf_counter()
        result = sweep(spec(args.jobs, args.runs), progress=False, **kwargs)
        elapsed = time.perf_counter() - start
        first = first or elapsed
        if reference is None:
            reference = result.runs
        assert result.runs.equals(reference), f"{name} gave a different runs table"
        print(f"{name:<14} {elapsed:>8.1f} {args.runs / elapsed:>7.2f} {first / elapsed:>8.2f}x")


if __name__ == "__main__":
    main()
