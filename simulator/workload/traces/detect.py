"""Guess a trace's format from its file name, then from its first line (the headers are distinctive)."""

from __future__ import annotations

from pathlib import Path

from simulator.errors import CapsimError

_BY_NAME = (
    ("cluster_log", "helios"),
    ("cluster_job_log", "philly"),
    ("pai_job_table", "pai"),
    ("openb_pod_list", "alibaba2023"),
    ("trace_seren", "acme"),
    ("trace_kalos", "acme"),
)
_BY_HEADER = (
    ("job_id,user,vc,gpu_num", "helios"),
    ("job_id,user,node_num,gpu_num", "acme"),
    ("name,cpu_milli,memory_mib,num_gpu", "alibaba2023"),
    ("jobid|", "sacct"),
    (";", "swf"),
    ("[", "philly"),
)


def guess_format(path: Path) -> str:
    name = path.name.lower()
    for stem, fmt in _BY_NAME:
        if name.startswith(stem):
            return fmt
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".swf"):
        return "swf"
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline(4096).strip().lower()
    for prefix, fmt in _BY_HEADER:
        if first.startswith(prefix):
            return fmt
    if "job_id" in first and "submit_time" in first:
        return "csv"
    raise CapsimError("cannot tell the trace format from the file name or its first line; "
                      "name it with --format", source=str(path))
