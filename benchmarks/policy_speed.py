"""Scheduling-policy speed: jobs simulated per second for every built-in policy, relative to FIFO.

    python benchmarks/policy_speed.py [--jobs 100000] [--policies fifo sjf ...]

The same Helios-like mixed workload for every policy (Venus job mix: lognormal run times with median
204 s and sigma 2.88 capped at 7 days, 1 to 64 GPUs, 40 users) on a 1,024-GPU cluster (128 x 8 H100)
at about 85% offered load, so queues form. Target: no policy below a tenth of FIFO's rate.
"""

from __future__ import annotations

import argparse
import math
import time

from scipy.stats import norm

GPUS = {"choice": [1, 2, 4, 8, 16, 32, 64], "weights": [0.615, 0.08, 0.08, 0.12, 0.06, 0.03, 0.015]}
MEDIAN_S, SIGMA, CAP_S = 204.0, 2.88, 7 * 86400.0
CAPACITY, LOAD, USERS = 1024, 0.85, 40

# Options that make a policy meaningful on this workload (it has users but no VCs or deadlines).
OPTIONS = {"quota": {"by": "user", "default_quota": CAPACITY // USERS + 1}}

def default_policies() -> list[str]:
    """Every built-in policy, FIFO first (the others are measured against it); not `replay`, which needs
    the start times a trace recorded and this workload is synthetic."""
    from simulator.policies.builtin import BUILTIN

    return ["fifo", *(name for name in BUILTIN if name not in ("fifo", "replay"))]


def capped_lognormal_mean(median: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X lognormal: the mean of the clipped run times the generator draws."""
    mu, log_cap = math.log(median), math.log(cap)
    below = math.exp(mu + sigma**2 / 2) * norm.cdf((log_cap - mu - sigma**2) / sigma)
    return float(below + cap * (1 - norm.cdf((log_cap - mu) / sigma)))


def helios_like(jobs: int | None = None, until: str | None = None, capacity: int = CAPACITY,
                load: float = LOAD, policy: str = "fifo", seed: int = 1) -> dict:
    """The benchmark scenario as a dict (also used by the policy-comparison notebook)."""
    mean_gpus = sum(c * w for c, w in zip(GPUS["choice"], GPUS["weights"], strict=True))
    mean_work = mean_gpus * capped_lognormal_mean(MEDIAN_S, SIGMA, CAP_S)
    rate = load * capacity / mean_work * 3600.0
    stop = {"jobs": jobs} if jobs is not None else {"until": until}
    return {
        "name": f"helios-like-{policy}", "seed": seed,
        "cluster": {"pools": [{"name": "h100", "device": "h100-sxm", "nodes": capacity // 8, "devices_per_node": 8}]},
        "workload": [{"kind": "synthetic", "name": "venus", **stop, "arrival": {"process": "poisson", "rate_per_hour": rate},
                      "gpus": GPUS, "duration": {"dist": "lognormal", "median": MEDIAN_S, "sigma": SIGMA, "max": CAP_S},
                      "users": USERS}],
        "scheduler": {"policy": policy, **OPTIONS.get(policy, {})},
    }


def measure(policy: str, jobs: int) -> tuple[float, dict]:
    import simulator

    start = time.perf_counter()
    res = simulator.run(helios_like(jobs=jobs, policy=policy), progress=False)
    return time.perf_counter() - start, res.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--policies", nargs="+", default=None)
    args = parser.parse_args()
    args.policies = args.policies or default_policies()
    print("| policy | seconds | jobs/s | vs fifo | mean JCT h | util |\n|---|---:|---:|---:|---:|---:|")
    fifo_rate = None
    for policy in args.policies:
        seconds, summary = measure(policy, args.jobs)
        rate = args.jobs / seconds
        fifo_rate = fifo_rate or (rate if policy == "fifo" else None)
        ratio = f"{rate / fifo_rate:.2f}" if fifo_rate else "-"
        print(f"| {policy} | {seconds:.1f} | {rate:,.0f} | {ratio} | {summary['mean_jct_s'] / 3600:.2f} "
              f"| {summary['gpu_utilization']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
