"""The network model's cost: the engine's mixed-gang workload with and without fat-tree fabrics, and
how long a large fat-tree, and a large rail fabric of GB200 NVL72 racks, take to build.

    python benchmarks/network_speed.py [--jobs 100000] [--repeat 3] [--nodes 10000]

The workload is benchmarks/engine_speed.py's mixed gang mix (1 to 64 GPUs, about 90% offered load on
128 nodes of 8 H100s) with every job communicating a fifth of its time; `fat-tree` gives the pool 16
nodes per leaf at 4:1 with rack placement, so jobs of several nodes are flows on the leaf links,
shared max-min fairly, re-shared at every start and end; `contended` has 4 nodes per leaf at 16:1 with
plain packing, so many jobs span leaves and are slowed; `nvl72-rail` is the same 1,024 GPUs as GB200
trays of 4 in NVL72 racks (scale-up domains of 18 trays, placed into first) on a rail fabric of 36-tray
groups at 4:1 with rack placement. Each case runs in a fresh process, `--repeat`
times interleaved, after a 200-job run that loads the modules; the table gives the median (and the
range) of jobs per second of wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from engine_speed import scenario as engine_scenario  # noqa: E402


def scenario(jobs: int, network: str) -> dict:
    spec = engine_scenario(jobs, "mixed-gang")
    spec["workload"][0]["comm_fraction"] = 0.2
    if network == "fat-tree":
        spec["cluster"]["pools"][0]["network"] = {"topology": "fat-tree", "nodes_per_leaf": 16,
                                                  "oversubscription": 4, "placement": "rack"}
    elif network == "contended":
        spec["cluster"]["pools"][0]["network"] = {"topology": "fat-tree", "nodes_per_leaf": 4,
                                                  "oversubscription": 16, "placement": "pack"}
    elif network == "nvl72-rail":
        # the same 1,024 GPUs as GB200 trays of 4 in NVL72 racks (domains of 18 trays), rail groups of 36
        spec["cluster"]["pools"][0].update(device="gb200", nodes=256, devices_per_node=4, network={
            "topology": "rail", "nodes_per_leaf": 36, "oversubscription": 4, "placement": "rack"})
    return spec


def measure(jobs: int, network: str) -> dict:
    import simulator

    # A small run first: the package loads its modules on first use (about a second), which would
    # otherwise be timed with the run and hide the network's cost behind it.
    simulator.run(scenario(200, network), progress=False)
    start = time.perf_counter()
    res = simulator.run(scenario(jobs, network), progress=False)
    elapsed = time.perf_counter() - start
    return {"network": network, "jobs": jobs, "seconds": elapsed, "jobs_per_s": jobs / elapsed,
            "delayed_jobs": int(res.summary.get("network_delayed_jobs", 0))}


def build_seconds(nodes: int) -> float:
    from simulator.network.topology import FatTree

    start = time.perf_counter()
    tree = FatTree(nodes, 16, 400.0, oversubscription=4, leaves_per_pod=32, pod_oversubscription=2)
    tree.capacities()
    tree.job_loads(list(range(0, nodes, 7)), [50.0] * len(range(0, nodes, 7)))
    return time.perf_counter() - start


def rail_domain_build_seconds(nodes: int) -> float:
    """A GB200 pool of `nodes` 4-GPU trays (NVL72 racks of 18 as scale-up domains) on a rail fabric of
    36-tray groups, 32 groups per pod: the pool's free-capacity index and the fabric built, then one
    all-to-all job over every 7th tray joined and shared out, and one inside a rack placed and skipped."""
    from simulator.cluster.pool import Pool
    from simulator.network.fabric import Flow, TreeFabric
    from simulator.network.topology import RailTree

    start = time.perf_counter()
    pool = Pool("nvl72", "gb200", nodes, 4, leaf_size=36, domain_size=18)
    fabric = TreeFabric(RailTree(nodes, 36, 200.0, oversubscription=4, leaves_per_pod=32, pod_oversubscription=2,
                                 rails=4), 50.0, domain_nodes=18)
    spread = [(n, 4) for n in range(0, nodes, 7)]
    fabric.join("spread", Flow(50.0 * 4 * len(spread), 1.0, 0.0), spread)
    fabric.fair_rates(None)
    rack = pool.allocate(64)
    assert not fabric.join("rack", Flow(3200.0, 1.0, 0.0), rack.nodes)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1])))
        return
    from simulator.compiled import status

    engine = "compiled" if set(status().values()) == {"compiled"} else "pure Python"
    runs: dict[str, list[dict]] = {"none": [], "fat-tree": [], "contended": [], "nvl72-rail": []}
    for _ in range(args.repeat):
        for network in runs:
            out = subprocess.run([sys.executable, __file__, "--one", str(args.jobs), network], check=True,
                                 capture_output=True, text=True).stdout
            runs[network].append(json.loads(out))
    print(f"{args.jobs:,} mixed-gang jobs, {engine} engine, median of {args.repeat} (range):")
    for network, rs in runs.items():
        rates = [r["jobs_per_s"] for r in rs]
        print(f"  {network:9} {statistics.median(rates):10,.0f} jobs/s ({min(rates):,.0f}-{max(rates):,.0f}); "
              f"jobs slowed by the network: {rs[0]['delayed_jobs']:,}")
    print(f"a {args.nodes:,}-node three-tier fat-tree (16 nodes per leaf, 32 leaves per pod) built, with one "
          f"all-to-all job over every 7th node, in {build_seconds(args.nodes):.3f} s")
    print(f"a {args.nodes:,}-tray GB200 pool (NVL72 racks of 18 trays as scale-up domains) on a rail fabric of "
          f"36-tray groups built, with one all-to-all job over every 7th tray and one placed inside a rack, in "
          f"{rail_domain_build_seconds(args.nodes):.3f} s")


if __name__ == "__main__":
    main()
