"""Shanghai AI Lab Acme (NSDI'24) `trace_seren.csv` / `trace_kalos.csv`.

job_id,user,node_num,gpu_num,cpu_num,type,state,submit_time,start_time,end_time,duration,queue
(the released files add mem_per_pod_GB, shared_mem_per_pod, fail_time, stop_time, gpu_time; columns
are read by name so both layouts load). Times look like '2023-05-17 11:00:58+00:00'. There is no
virtual cluster; the workload `type` (Pretrain, SFT, Evaluation, Debug, Other) is kept as `job_type`.
"""

from __future__ import annotations

from pathlib import Path

from simulator.workload.traces._assemble import TraceLoad
from simulator.workload.traces._joblog import load_job_log


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    return load_job_log(path, fmt="acme", strict=strict, keep_cpu_only=keep_cpu_only,
                        text_columns={"user": "user", "type": "job_type"})
