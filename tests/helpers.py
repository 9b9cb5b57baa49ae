"""Small builders shared by the tests."""

from __future__ import annotations

import warnings

import pandas as pd

import simulator
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


def run_jobs(jobs: pd.DataFrame, tmp_path, pools=((1, 8),), policy="fifo", pool_keys=None, extra=None,
             **scheduler):
    """Run an explicit job list (written as the generic CSV trace) and return Results. `pool_keys` are
    added to every pool, `extra` to the scenario's top level."""
    path = tmp_path / "jobs.csv"
    jobs.to_csv(path, index=False)
    scen = scenario_dict(list(pools), [{"kind": "trace", "format": "csv", "path": str(path)}], policy, **scheduler)
    for pool in scen["cluster"]["pools"]:
        pool.update(pool_keys or {})
    scen.update(extra or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # oversized jobs are rejected with a warning
        return simulator.run(scen, progress=False)
