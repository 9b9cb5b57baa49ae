"""Serving throughput: requests simulated per second of wall time.

    python benchmarks/serving_speed.py            # one hour at 50 requests/s on 32 replicas (180,000 requests)
    python benchmarks/serving_speed.py --full     # the issue's day: 24 hours, 4.3 million requests
    python benchmarks/serving_speed.py --hours 6 --rate 50 --replicas 32
    python benchmarks/serving_speed.py --kv-allocation paged   # the paged KV cache (vLLM's block manager)

A llama3-8b chat service on 32 H100 replicas (tp 1, vLLM-style scheduler, 256 sequences, 8192 batched
tokens), Poisson arrivals, lognormal prompts (median 512, sigma 0.8, up to 4096) and outputs (median
200, sigma 0.8, up to 2048), run through `simulator.run` like any scenario (no training jobs). Prints
the wall time of building and of simulating, and the simulated requests per second.
"""

from __future__ import annotations

import argparse
import time


def scenario(hours: float, rate: float, replicas: int, kv_allocation: str = "reserve") -> dict:
    return {
        "name": "serving-speed",
        "seed": 1,
        "cluster": {"pools": [{"name": "h100", "device": "h100-sxm", "nodes": -(-replicas // 8),
                               "devices_per_node": 8}]},
        "services": [{"name": "chat", "model": "llama3-8b", "pool": "h100", "replicas": replicas,
                      "scheduler": {"max_num_seqs": 256, "max_batched_tokens": 8192,
                                    "kv_allocation": kv_allocation},
                      "router": "least-outstanding"}],
        "requests": [{"kind": "synthetic", "service": "chat", "until": hours * 3600.0,
                      "arrival": {"process": "poisson", "rate_per_s": rate},
                      "prompt_tokens": {"dist": "lognormal", "median": 512, "sigma": 0.8, "max": 4096},
                      "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.8, "max": 2048}}],
    }


def main() -> None:
    import simulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--full", action="store_true", help="a whole day (24 hours)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--replicas", type=int, default=32)
    parser.add_argument("--kv-allocation", choices=["reserve", "paged"], default="reserve")
    args = parser.parse_args()
    hours = 24.0 if args.full else args.hours
    t0 = time.perf_counter()
    sim = simulator.build(scenario(hours, args.rate, args.replicas, args.kv_allocation), progress=False)
    t1 = time.perf_counter()
    sim.run()
    t2 = time.perf_counter()
    res = simulator.collect(sim)
    t3 = time.perf_counter()
    n = len(res.requests)
    svc = res.summary["services"]["chat"]
    print(f"{hours:g} h at {args.rate:g} requests/s on {args.replicas} replicas: {n:,} requests "
          f"({svc['requests_completed']:,} completed)")
    print(f"build {t1 - t0:.2f} s, simulate {t2 - t1:.2f} s, collect {t3 - t2:.2f} s; "
          f"{n / (t2 - t1):,.0f} requests/s simulated ({n / (t3 - t0):,.0f} end to end)")
    print(f"TTFT p50 {svc['ttft_p50_s'] * 1e3:.1f} ms p99 {svc['ttft_p99_s'] * 1e3:.1f} ms; "
          f"TPOT p50 {svc['tpot_p50_s'] * 1e3:.2f} ms p99 {svc['tpot_p99_s'] * 1e3:.2f} ms; "
          f"replicas busy {svc['busy_fraction']:.0%}")


if __name__ == "__main__":
    main()
