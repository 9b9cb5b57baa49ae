"""Engine throughput: jobs simulated per second and peak memory, FIFO on a 1,024-GPU cluster.

    python benchmarks/engine_speed.py [--sizes 10000 100000 1000000] [--repeat 3] [--loop simpy] [--load 0.9]
                                      [--policy fifo]

Two workloads per size: 1-GPU jobs, and a mixed gang workload (1 to 64 GPUs). The offered load is
about 90% of the cluster so queues form; `--load 1.3` overloads it, so the queue grows all run long
(as a planner's growth scenario does once demand passes capacity). Each run is a fresh process so peak RSS is its own. A shared
machine's speed drifts from minute to minute, so each case runs `--repeat` times, interleaved, and
the table gives the median with the slowest and fastest run.
It measures whichever engine is there (`capsim compile` builds the compiled one, `capsim compile
--clean` removes it) and says which. `--loop simpy` drives the run with SimPy's own `env.run()` (one
`Environment.step` call per entry) instead of the engine's loop, `Calendar.run` (engine/calendar.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MIXES = {
    "1-gpu": {"gpus": 1, "mean_gpus": 1.0},
    "mixed-gang": {"gpus": {"choice": [1, 2, 4, 8, 16, 32, 64], "weights": [0.55, 0.1, 0.1, 0.13, 0.07, 0.03, 0.02]},
                   "mean_gpus": 0.55 + 0.2 + 0.4 + 1.04 + 1.12 + 0.96 + 1.28},
}


def scenario(jobs: int, mix: str, load: float = 0.9, policy: str = "fifo") -> dict:
    mean_duration = 3600.0
    rate = load * 1024 / (MIXES[mix]["mean_gpus"] * mean_duration) * 3600.0
    return {
        "name": f"bench-{mix}-{jobs}", "seed": 1,
        "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 128, "devices_per_node": 8}]},
        "workload": [{"kind": "synthetic", "jobs": jobs, "arrival": {"process": "poisson", "rate_per_hour": rate},
                      "gpus": MIXES[mix]["gpus"], "duration": {"dist": "exponential", "mean": mean_duration}}],
        "scheduler": {"policy": policy},
    }


def measure(jobs: int, mix: str, loop: str = "engine", load: float = 0.9, policy: str = "fifo") -> dict:
    import simulator

    start = time.perf_counter()
    if loop == "engine":
        res = simulator.run(scenario(jobs, mix, load, policy), progress=False)
    else:
        sim = simulator.build(scenario(jobs, mix, load, policy), progress=False)
        sim.run(until=0.0)  # starts it
        sim.env.run()  # SimPy's loop: Environment.step per entry
        sim.run()
        res = simulator.collect(sim)
    elapsed = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mix": mix, "jobs": jobs, "seconds": round(elapsed, 2), "jobs_per_s": round(jobs / elapsed),
            "peak_rss_mib": round(peak_mib), "utilization": round(res.summary["gpu_utilization"], 3)}


def calendar_floor(jobs: int = 100_000) -> float:
    """Jobs/s of SimPy alone with the engine's event pattern (one arrival and one completion timeout
    per job, ~900 jobs in flight) and empty handlers: the ceiling any SimPy-calendar engine can reach."""
    import numpy as np
    import simpy
    from simpy.events import Timeout

    env = simpy.Environment()
    rng = np.random.default_rng(1)
    gaps = rng.exponential(3600.0 / (0.9 * 1024), jobs).tolist()
    durations = rng.exponential(3600.0, jobs).tolist()
    state = {"i": 0}

    def complete(_event):
        pass

    def arrive(_event):
        i = state["i"]
        Timeout(env, durations[i]).callbacks.append(complete)
        state["i"] = i + 1
        if i + 1 < jobs:
            Timeout(env, gaps[i + 1]).callbacks.append(arrive)

    Timeout(env, gaps[0]).callbacks.append(arrive)
    start = time.perf_counter()
    env.run()
    return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (median reported)")
    parser.add_argument("--loop", choices=["engine", "simpy"], default="engine",
                        help="the engine's loop (Calendar.run) or SimPy's env.run()")
    parser.add_argument("--load", type=float, default=0.9, help="offered load, a fraction of the cluster's GPUs")
    parser.add_argument("--policy", default="fifo", help="the scheduling policy (tiresias, easy-backfill, ...)")
    parser.add_argument("--one", nargs=2, metavar=("JOBS", "MIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.loop, args.load, args.policy)))
        return
    from simulator import compiled

    engine = "compiled (capsim compile)" if set(compiled.status().values()) == {"compiled"} else "pure Python"
    print(f"engine: {engine}; loop: {args.loop}; policy: {args.policy}; offered load {args.load:.0%}")
    print(f"SimPy calendar floor (empty handlers): {calendar_floor():,.0f} jobs/s")
    cases = [(mix, n) for mix in MIXES for n in args.sizes]
    runs = {case: [] for case in cases}
    for _ in range(args.repeat):  # interleaved: a slow minute of the machine hits every case alike
        for mix, n in cases:
            command = [sys.executable, __file__, "--one", str(n), mix, "--loop", args.loop, "--load", str(args.load),
                       "--policy", args.policy]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[mix, n].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'mix':<11} {'jobs':>9} {'seconds':>8} {'jobs/s':>9} {'slowest':>9} {'fastest':>9} "
          f"{'peak MiB':>9} {'util':>6}")
    for mix, n in cases:
        rs = sorted(runs[mix, n], key=lambda r: r["jobs_per_s"])
        mid = rs[len(rs) // 2]  # the median run (upper median for an even count)
        print(f"{mix:<11} {n:>9,} {mid['seconds']:>8} {mid['jobs_per_s']:>9,} {rs[0]['jobs_per_s']:>9,} "
              f"{rs[-1]['jobs_per_s']:>9,} {max(r['peak_rss_mib'] for r in rs):>9,} {mid['utilization']:>6}")


if __name__ == "__main__":
    main()
