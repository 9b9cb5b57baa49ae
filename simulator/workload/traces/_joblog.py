"""Slurm-derived job logs with a header: Helios `cluster_log.csv` and Acme `trace_seren/kalos.csv` share
the columns job_id, user, gpu_num, cpu_num, node_num, state, submit_time, start_time, end_time, duration
(seconds run), queue (seconds waited); times are datetimes, Acme's with a '+00:00' offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.workload.traces._assemble import TraceLoad, assemble, normalise_status
from simulator.workload.traces._rows import RowErrors, read_delimited
from simulator.workload.traces._times import has_utc_offset, iso_origin

SLURM_STATES = {
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "FAILED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed", "DEADLINE": "failed",
}
_REQUIRED = ("job_id", "gpu_num", "state", "submit_time", "start_time")


def load_job_log(path: Path, *, fmt: str, strict: bool, keep_cpu_only: bool,
                 text_columns: dict[str, str]) -> TraceLoad:
    """Map one job log; `text_columns` names the trace's own string columns to keep (trace → schema)."""
    table = read_delimited(path, RowErrors(str(path), strict=strict))
    table.require(*_REQUIRED)
    if not table.has("duration"):
        table.require("end_time")
    submit = table.times("submit_time", required=True)
    start = table.times("start_time")
    end = table.times("end_time") if table.has("end_time") else np.full(len(table), np.nan)
    ran = table.numbers("duration", required=False, minimum=0) if table.has("duration") else end - start
    duration = np.where(np.isnan(ran), end - start, ran)
    table.flag(duration < 0, "column 'end_time': expected a time after start_time")
    gpus = table.numbers("gpu_num", minimum=0, whole=True)
    job_id = table.text("job_id")
    table.flag(job_id.isna().to_numpy(), "column 'job_id': expected a value")

    counts = {schema: table.numbers(trace, required=False, minimum=0)
              for trace, schema in (("cpu_num", "cpus"), ("node_num", "nodes")) if table.has(trace)}

    keep = table.keep

    state = table.text("state")
    columns: dict[str, object] = {
        "job_id": job_id[keep].to_numpy(),
        "submit_time": submit[keep],
        "gpus": gpus[keep],
        "duration": duration[keep],
        "recorded_start_time": start[keep],
        "status": normalise_status(state[keep], SLURM_STATES).to_numpy(),
        "status_raw": state[keep].to_numpy(),
    }
    for trace_name, schema_name in text_columns.items():
        if table.has(trace_name):
            columns[schema_name] = table.text(trace_name)[keep].to_numpy()
    columns |= {name: values[keep] for name, values in counts.items()}

    # Well-formed rows with no run time cannot be replayed: they are counted, not kept.
    no_run_time = np.isnan(duration[keep])
    unusable = {"never_started": no_run_time & np.isnan(start[keep]), "unfinished": no_run_time}
    with_offset = has_utc_offset(table.frame["submit_time"])
    return assemble(columns, errors=table.errors, lines=table.lines[keep], fmt=fmt, rows=table.records,
                    keep_cpu_only=keep_cpu_only, unusable=unusable,
                    origin_label=lambda first: iso_origin(first, with_offset=with_offset))
