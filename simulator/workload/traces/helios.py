"""SenseTime Helios (SC'21) `cluster_log.csv`, one per cluster (Venus, Earth, Saturn, Uranus).

job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue
with times like '2020-04-01 00:00:05' (no zone). `vc` is the virtual cluster.
"""

from __future__ import annotations

from pathlib import Path

from simulator.workload.traces._assemble import TraceLoad
from simulator.workload.traces._joblog import load_job_log


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    return load_job_log(path, fmt="helios", strict=strict, keep_cpu_only=keep_cpu_only,
                        text_columns={"user": "user", "vc": "vc"})
