"""Alibaba GPU 2023 (ATC'23, cluster-trace-gpu-v2023) pod lists `openb_pod_list_*.csv`.

name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
Times are seconds on the trace's clock; an empty scheduled_time means the pod never got a node (Pending).
gpu_milli < 1000 on a one-GPU pod is a share of that GPU (gpu_fraction = gpu_milli / 1000). A pod runs
from scheduled_time to deletion_time. Some released pod lists (e.g. openb_pod_list_multigpu50.csv) have
no time columns: they describe a demand mix, not arrivals, and cannot be replayed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.errors import CapsimError
from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, read_delimited

_STATUSES = {"SUCCEEDED": "completed", "FAILED": "failed"}  # Running and Pending are "other"
_TIMES = ("creation_time", "deletion_time", "scheduled_time")


def load(path: Path, *, strict: bool = True, keep_cpu_only: bool = False) -> TraceLoad:
    pods = read_delimited(path, RowErrors(str(path), strict=strict))
    if pods.has("sn") and pods.has("model"):
        raise CapsimError("this is a node list (sn,cpu_milli,memory_mib,gpu,model), not a pod list",
                          source=str(path))
    pods.require("name", "num_gpu", "gpu_milli")
    if not all(pods.has(c) for c in _TIMES):
        raise CapsimError(f"this pod list has no {', '.join(c for c in _TIMES if not pods.has(c))} column(s), "
                          "so it has no arrivals or run times to replay (use openb_pod_list_default.csv "
                          "or another list with times)", source=str(path))
    created = pods.times("creation_time", unix=True, required=True)
    deleted = pods.times("deletion_time", unix=True, required=True)
    scheduled = pods.times("scheduled_time", unix=True)
    gpus = pods.numbers("num_gpu", minimum=0, whole=True)
    milli = pods.numbers("gpu_milli", minimum=0, whole=True)
    pods.flag((milli > 1000) | ((gpus == 0) & (milli > 0)),
              "column 'gpu_milli': expected 0 to 1000 thousandths of a GPU, and 0 when num_gpu is 0", milli)
    pods.flag(deleted < np.fmax(created, np.nan_to_num(scheduled, nan=-np.inf)),
              "column 'deletion_time': expected a time after creation_time and scheduled_time")
    cpu_milli = pods.numbers("cpu_milli", required=False, minimum=0) if pods.has("cpu_milli") else None
    memory = pods.numbers("memory_mib", required=False, minimum=0) if pods.has("memory_mib") else None
    name = pods.text("name")
    pods.flag(name.isna().to_numpy(), "column 'name': expected a value")

    keep = pods.keep

    phase = pods.text("pod_phase")[keep] if pods.has("pod_phase") else None
    columns: dict[str, object] = {
        "job_id": name[keep].to_numpy(),
        "submit_time": created[keep],
        "gpus": gpus[keep],
        "duration": deleted[keep] - scheduled[keep],
        "recorded_start_time": scheduled[keep],
        "gpu_fraction": np.where((gpus[keep] == 1) & (milli[keep] < 1000), milli[keep] / 1000.0, np.nan),
    }
    if phase is not None:
        columns["status"] = normalise_status(phase, _STATUSES).to_numpy()
        columns["status_raw"] = phase.to_numpy()
    if cpu_milli is not None:
        columns["cpus"] = cpu_milli[keep] / 1000.0
    if memory is not None:
        columns["memory_mib"] = memory[keep]
    for trace_name, schema_name in (("gpu_spec", "gpu_type"), ("qos", "qos")):
        if pods.has(trace_name):
            columns[schema_name] = pods.text(trace_name)[keep].to_numpy()
    return assemble(columns, errors=pods.errors, lines=pods.lines[keep], fmt="alibaba2023", rows=pods.records,
                    keep_cpu_only=keep_cpu_only,
                    unusable={"never_started": np.isnan(scheduled[keep])})
