"""Trace adapters: each reads one public trace's real file format and maps it to the job schema.

    load = load_trace("cluster_log.csv", "helios")            # strict: the first malformed row stops it
    load = load_trace("pai_job_table.csv", "pai", strict=False, task_table="tasks.csv")
    load.jobs, load.skipped, load.skipped_reasons, load.dropped["cpu_only"]

Every adapter takes `keep_cpu_only` (default False: zero-GPU jobs are dropped and counted); some take
more (pai: task_table; swf: gpus_per_proc).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simulator.errors import CapsimError
from simulator.workload.traces import acme, alibaba2023, generic, helios, pai, philly, sacct, swf
from simulator.workload.traces._assemble import TraceLoad
from simulator.workload.traces.detect import guess_format

FORMATS: dict[str, Callable[..., TraceLoad]] = {
    "csv": generic.load_csv,
    "parquet": generic.load_parquet,
    "helios": helios.load,
    "philly": philly.load,
    "pai": pai.load,
    "alibaba2023": alibaba2023.load,
    "acme": acme.load,
    "sacct": sacct.load,
    "swf": swf.load,
}

__all__ = ["FORMATS", "TraceLoad", "guess_format", "load_trace"]


def load_trace(path: str | Path, format: str | None = None, *, strict: bool = True, **options) -> TraceLoad:
    """Load a trace file as the job schema; `format=None` guesses it from the name and first line."""
    path = Path(path)
    if not path.is_file():
        raise CapsimError("no such file", source=str(path))
    name = (format or guess_format(path)).lower()
    if name not in FORMATS:
        raise CapsimError(f"unknown trace format {name!r}; known formats: {', '.join(FORMATS)}", source=str(path))
    loader = FORMATS[name]
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("path", "strict")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise CapsimError(f"format {name!r} takes no option(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(accepted)}", source=str(path))
    # Arithmetic on a trace's numbers may overflow to inf (1e308 + 1e308); every value a job keeps is
    # checked for that afterwards, so numpy's own warning would only repeat the error less clearly.
    with np.errstate(over="ignore", invalid="ignore"):
        return loader(path, strict=strict, **options)
