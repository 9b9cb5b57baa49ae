"""Replaying a GPU-sharing trace on its own node list: the Alibaba GPU 2023 trace's pod list inflated on
its node list under each placement policy of cluster/sharing.py, with the allocation rate and the
fragmentation it leaves (`capsim gpu-sharing`)."""

from __future__ import annotations

import click
import numpy as np

from simulator.cluster.sharing import (
    FULL,
    POLICIES,
    SharedCluster,
    TaskClass,
    inflate,
    target_workload,
    task_class,
)
from simulator.errors import CapsimError


def read_nodes(path) -> SharedCluster:
    """A node list (the trace's openb_node_list_*.csv: sn, cpu_milli, memory_mib, gpu, model)."""
    from pathlib import Path

    from simulator.workload.traces._rows import RowErrors, read_delimited

    table = read_delimited(Path(path), RowErrors(str(path), strict=True))
    table.require("cpu_milli", "memory_mib", "gpu")
    cpu = table.numbers("cpu_milli", minimum=1, whole=True)
    mem = table.numbers("memory_mib", minimum=1, whole=True)
    gpu = table.numbers("gpu", minimum=0, whole=True)
    table.flag(gpu > 64, "column 'gpu': expected at most 64 GPUs per node", gpu)
    if not gpu.sum():
        raise CapsimError("the node list has no GPU", source=str(path))
    return SharedCluster(cpu, mem, gpu)


def read_tasks(path) -> list[TaskClass]:
    """A pod list (openb_pod_list_*.csv: cpu_milli, memory_mib, num_gpu, gpu_milli, ...) as tasks."""
    from pathlib import Path

    from simulator.workload.traces._rows import RowErrors, read_delimited

    table = read_delimited(Path(path), RowErrors(str(path), strict=True))
    table.require("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
    cpu = table.numbers("cpu_milli", minimum=0, whole=True)
    mem = table.numbers("memory_mib", minimum=0, whole=True)
    num = table.numbers("num_gpu", minimum=0, whole=True)
    milli = table.numbers("gpu_milli", minimum=0, whole=True)
    table.flag((milli > FULL) | ((num == 0) & (milli > 0)),
               "column 'gpu_milli': expected 0 to 1000 thousandths of a GPU, and 0 when num_gpu is 0", milli)
    return [task_class(c, m, n, g) for c, m, n, g in zip(cpu, mem, num, milli, strict=True)]


def replay(nodes_csv, pods_csv, policies=("best-fit", "spread", "pack"), seed: int = 0, until: float = 1.3):
    """Workload inflation of a pod list on a node list under each placement policy: a DataFrame with one
    row per policy (GPUs, unallocated and fragmented GPUs and the allocation rate when the arrived GPU
    demand reaches the capacity, and the allocation rate at `until` x capacity), and the curves."""
    import pandas as pd

    tasks = read_tasks(pods_csv)
    if not any(t.gpu_milli or t.num_gpu for t in tasks):
        raise CapsimError("the pod list asks for no GPU", source=str(pods_csv))
    workload = target_workload(tasks)
    rows, curves = [], {}
    for policy in policies:
        if policy not in POLICIES:
            raise CapsimError(f"unknown placement policy {policy!r}; expected one of {', '.join(POLICIES)}",
                              where="--policy")
        cluster = read_nodes(nodes_csv)
        result = inflate(cluster, tasks, policy, np.random.default_rng(seed), until, workload)
        full = result["at_full"] or {}
        rows.append({"policy": policy, "gpus": cluster.gpu_capacity_milli // FULL,
                     "unallocated_gpus_at_100pct": full.get("unallocated_gpus"),
                     "fragmented_gpus_at_100pct": full.get("fragmented_gpus"),
                     "allocation_rate_at_100pct": full.get("allocation_rate"),
                     f"allocation_rate_at_{round(until * 100)}pct": result["final_allocation_rate"]})
        curves[policy] = pd.DataFrame({"arrived": result["arrived"], "allocated": result["allocated"]})
    return pd.DataFrame(rows), curves


@click.command("gpu-sharing")
@click.argument("nodes_csv", type=click.Path(exists=True, dir_okay=False))
@click.argument("pods_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policies", multiple=True, type=click.Choice(POLICIES),
              help="Placement policies to compare (repeat; default best-fit, spread, pack). fgd is slow: "
                   "minutes on the full trace.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--until", type=float, default=1.3, show_default=True,
              help="Stop when the arrived GPU demand reaches this multiple of the cluster's GPUs.")
@click.option("--curves", type=click.Path(dir_okay=False), default=None,
              help="Write each policy's allocation curve (arrived vs allocated share) to this CSV.")
def gpu_sharing_command(nodes_csv, pods_csv, policies, seed, until, curves):
    """Inflate a pod list that shares GPUs (Alibaba GPU 2023: openb_pod_list_*.csv) on its node list
    (openb_node_list_*.csv) under each placement policy: unallocated and fragmented GPUs when the
    arrived demand reaches the capacity, and the allocation rate."""
    from pathlib import Path

    import pandas as pd

    from simulator.files import atomic_write

    if not 1.0 <= until <= 10.0:
        raise click.UsageError("--until must be between 1 and 10 (multiples of the cluster's GPUs)")
    try:
        table, curve = replay(nodes_csv, pods_csv, policies or ("best-fit", "spread", "pack"), seed, until)
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    if curves:
        frame = pd.concat([c.assign(policy=p) for p, c in curve.items()], ignore_index=True)
        atomic_write(Path(curves), lambda tmp: frame.to_csv(tmp, index=False))
        click.echo(f"wrote {curves}")
