"""Small builders shared by the tests."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

import simulator
from simulator.cluster.pool import Cluster, Pool
from simulator.engine.checkpoint import Checkpointing
from simulator.engine.simulation import Simulation
from simulator.features.failures import Failures
from simulator.features.pool_service import PoolService
from simulator.job import duration_runtime
from simulator.models.failures import FailureProcess
from simulator.policies.base import ClusterView, PolicyContext
from simulator.policies.builtin import BUILTIN

# The built-in policies that can schedule a synthetic workload: `replay` needs the start times a trace
# recorded (tests that give it a trace run every name of BUILTIN).
SCHEDULING = tuple(name for name in BUILTIN if name != "replay")


def scenario_dict(pools, workload, policy="fifo", **scheduler) -> dict:
    return {
        "name": "test",
        "seed": 1,
        "cluster": {"pools": [
            {"name": f"p{i}", "device": "h100-sxm", "nodes": n, "devices_per_node": per}
            for i, (n, per) in enumerate(pools)
        ]},
        "workload": workload,
        "scheduler": {"policy": policy, **scheduler},
    }


def jobs(**columns) -> pd.DataFrame:
    """A job list from columns, with ids a, b, c, ... (then j26, j27, ... past the alphabet)."""
    frame = pd.DataFrame(columns)
    frame.insert(0, "job_id", [chr(ord("a") + i) if i < 26 else f"j{i}" for i in range(len(frame))])
    return frame


def run_jobs(jobs: pd.DataFrame, pools=((1, 8),), policy="fifo", pool_keys=None, extra=None, **scheduler):
    """Run an explicit job list, in memory (`simulator.run(..., jobs=)`), and return Results. `pool_keys`
    are added to every pool, `extra` to the scenario's top level."""
    scen = scenario_dict(list(pools), [], policy, **scheduler)
    for pool in scen["cluster"]["pools"]:
        pool.update(pool_keys or {})
    scen.update(extra or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # oversized jobs are rejected with a warning
        return simulator.run(scen, jobs=jobs, progress=False)


def simulate(jobs: pd.DataFrame, policy_cls, pools=((1, 8),), options=None, restore: float = 0.0,
             checkpoint_interval: float | None = None, failures: tuple[float, float] | None = None,
             retirements=(), seed: int = 1) -> pd.DataFrame:
    """Run a job table (sorted by submit time, every job fitting a pool) through the engine in memory,
    without a scenario or files, under any policy class (registered or not). `failures` is (device MTBF,
    repair) in seconds, `retirements` (pool index, seconds after the first submission) pairs. Returns
    the jobs frame, as `Results.jobs` has it."""
    cluster = Cluster([Pool(f"p{i}", "h100-sxm", n, per, i) for i, (n, per) in enumerate(pools)])
    view = ClusterView(cluster)
    policy_rng, failure_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    context = PolicyContext(rng=policy_rng, restore_s=restore, checkpoint_interval_s=checkpoint_interval,
                            runtime_of=duration_runtime)
    policy = policy_cls(policy_cls.Options.model_validate(options or {}), view, context)
    sources = []
    if failures is not None:
        sources.append(Failures(FailureProcess(cluster, failures[0], failures[1], failure_rng)))
    if retirements:
        sources.append(PoolService([(cluster.pools[i], 0.0, at, None) for i, at in retirements]))
    sim = Simulation(cluster, jobs.reset_index(drop=True), policy, view, duration_runtime,
                     Checkpointing(restore, checkpoint_interval), sources=sources)
    return sim.run().jobs_frame(jobs, cluster.pools)


def assert_timeline_conserves_work(res):
    """The timeline, rebuilt from the jobs' runs, integrates to the busy device-time the engine counted,
    never goes negative, and ends empty once every job has left."""
    tl = res.timeline
    area = float((tl["busy_gpus"].to_numpy()[:-1] * np.diff(tl["time_s"].to_numpy())).sum())
    assert np.isclose(area, res.summary["busy_gpu_hours"] * 3600, rtol=1e-9, atol=1e-6)
    assert (tl[["busy_gpus", "queued_jobs", "running_jobs"]] >= 0).all().all()
    assert tl.iloc[-1][["busy_gpus", "queued_jobs", "running_jobs"]].tolist() == [0, 0, 0]
