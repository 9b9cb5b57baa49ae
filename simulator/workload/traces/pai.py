"""Alibaba PAI 2020 (NSDI'22, cluster-trace-gpu-v2020): headerless `pai_job_table.csv` joined with
`pai_task_table.csv` (looked for beside it unless `task_table=` names it).

job table:  job_name,inst_id,user,status,start_time,end_time            (start_time = submission)
task table: job_name,task_name,inst_num,status,start_time,end_time,plan_cpu,plan_mem,plan_gpu,gpu_type
Times are seconds on the trace's shifted clock. A job's GPUs are sum(inst_num * plan_gpu / 100) over its
tasks (plan_gpu 50 = half a GPU); a total below one is a fractional job (gpus 1, gpu_fraction < 1) and
a larger non-whole total is rounded up. The job starts when its first task starts and ends at its end_time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import CapsimError
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, read_delimited

JOB_COLUMNS = ["job_name", "inst_id", "user", "status", "start_time", "end_time"]
TASK_COLUMNS = ["job_name", "task_name", "inst_num", "status", "start_time", "end_time",
                "plan_cpu", "plan_mem", "plan_gpu", "gpu_type"]
_STATUSES = {"TERMINATED": "completed", "FAILED": "failed"}  # Running and Waiting are "other"


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False,
         task_table: str | Path | None = None) -> TraceLoad:
    task_path = Path(task_table) if task_table is not None else path.with_name("pai_task_table.csv")
    if not task_path.is_file():
        raise CapsimError(f"needs the task table {task_path.name} beside the job table (or task_table=PATH) "
                          "for the GPUs each job asked for", source=str(path))
    task_errors = RowErrors(str(task_path), strict=strict)
    tasks = _task_demand(task_path, task_errors)
    jobs = read_delimited(path, RowErrors(str(path), strict=strict), names=JOB_COLUMNS)
    submit = jobs.times("start_time", unix=True, required=True)
    end = jobs.times("end_time", unix=True)
    name = jobs.text("job_name")
    jobs.flag(name.isna().to_numpy(), "column 'job_name': expected a value")

    demand = tasks.reindex(name.fillna("").to_numpy())
    start = demand["first_start"].to_numpy(dtype=float)
    jobs.flag(end < start, "column 'end_time': expected a time after the job's first task started")
    keep = jobs.keep

    total_gpus = demand["gpus"].to_numpy(dtype=float)[keep]
    status = jobs.text("status")[keep]
    columns = {
        "job_id": name[keep].to_numpy(),
        "submit_time": submit[keep],
        "gpus": np.ceil(total_gpus - 1e-9),  # 2 x 50% is one GPU, not two; NaN when no tasks
        "duration": end[keep] - start[keep],
        "recorded_start_time": start[keep],
        "gpu_fraction": np.where((total_gpus > 0) & (total_gpus < 1), total_gpus, np.nan),
        "user": jobs.text("user")[keep].to_numpy(),
        "status": normalise_status(status, _STATUSES).to_numpy(),
        "status_raw": status.to_numpy(),
        "gpu_type": demand["gpu_type"].to_numpy()[keep],
        "cpus": demand["cpus"].to_numpy(dtype=float)[keep],
        "memory_mib": demand["memory_mib"].to_numpy(dtype=float)[keep],
    }
    jobs.errors.reasons.update({f"{task_path.name}: {reason}": n for reason, n in task_errors.reasons.items()})
    # A job with no task rows has no known demand; Waiting jobs never started; Running ones never ended.
    unusable = {"no_tasks": np.isnan(total_gpus), "never_started": np.isnan(start[keep]),
                "unfinished": np.isnan(end[keep])}
    return assemble(columns, errors=jobs.errors, lines=jobs.lines[keep], fmt="pai", rows=jobs.records,
                    keep_cpu_only=keep_cpu_only, unusable=unusable)


def _task_demand(path: Path, errors: RowErrors) -> pd.DataFrame:
    """Per job_name: GPUs, CPUs, memory summed over tasks, first task start, GPU type of the largest task.

    Malformed task rows are reported with the task table's own line numbers.
    """
    tasks = read_delimited(path, errors, names=TASK_COLUMNS)
    inst = tasks.numbers("inst_num", minimum=0)
    # An empty plan_gpu or plan_cpu means the task asked for none of it.
    gpu = np.nan_to_num(tasks.numbers("plan_gpu", required=False, minimum=0)) * inst / 100.0
    cpu = np.nan_to_num(tasks.numbers("plan_cpu", required=False, minimum=0)) * inst / 100.0
    mem = np.nan_to_num(tasks.numbers("plan_mem", required=False, minimum=0)) * inst * 1024.0
    tasks.flag(~(np.isfinite(gpu) & np.isfinite(cpu) & np.isfinite(mem)),
               "columns 'plan_gpu', 'plan_cpu', 'plan_mem' times 'inst_num': expected finite totals")
    start = tasks.times("start_time", unix=True)
    job = tasks.text("job_name")
    tasks.flag(job.isna().to_numpy(), "column 'job_name': expected a value")
    keep = tasks.keep
    frame = pd.DataFrame({"job": job[keep].to_numpy(), "gpus": gpu[keep], "cpus": cpu[keep],
                          "memory_mib": mem[keep], "first_start": start[keep],
                          "gpu_type": tasks.text("gpu_type")[keep].to_numpy()})
    grouped = frame.groupby("job", sort=False)
    demand = grouped[["gpus", "cpus", "memory_mib"]].sum()
    demand["first_start"] = grouped["first_start"].min()
    largest = frame.sort_values("gpus", ascending=False, kind="stable").drop_duplicates("job")
    demand["gpu_type"] = largest.set_index("job")["gpu_type"]
    return demand
