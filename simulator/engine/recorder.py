"""Metrics collected during the run in plain lists; DataFrames are built once at the end."""

from __future__ import annotations

from operator import attrgetter

import numpy as np
import pandas as pd
import pyarrow as pa

from simulator.engine.job import Job

_STRING = pd.StringDtype("pyarrow")


class Recorder:
    def __init__(self, record_timeline: bool = True):
        # Finished jobs are kept as records (one append per job on the hot path); their columns are
        # pulled out once, in jobs_frame().
        self.finished: list[Job] = []
        self.record_timeline = record_timeline
        self.timeline: list[tuple[float, int, int, int]] = []  # (time, busy, queued, running)
        self.busy_device_seconds = 0.0

    def sample(self, now: float, busy: int, queued: int, running: int) -> None:
        """One row per instant at which the state changed (the state at the end of the instant)."""
        timeline = self.timeline
        if timeline and timeline[-1][0] == now:
            timeline[-1] = (now, busy, queued, running)
        elif self.record_timeline:
            timeline.append((now, busy, queued, running))

    def jobs_frame(self) -> pd.DataFrame:
        """One row per job, in submission (trace) order."""
        fields = ("id", "user", "vc", "submit", "gpus", "duration", "first_start", "end", "pool",
                  "placed_device", "device", "preemptions", "lost_work", "state", "index")
        # One pass pulls all fields of every record; zip(*) turns the rows into columns.
        rows = map(attrgetter(*fields), self.finished)
        col = dict(zip(fields, zip(*rows, strict=True), strict=True)) if self.finished else {f: () for f in fields}
        submit = np.array(col["submit"], dtype=float)
        order = np.lexsort((np.array(col["index"], dtype=np.int64), submit))
        taker = pa.array(order)

        def numbers(name, dtype=float):  # None (never started / never ended) becomes NaN
            return np.array(col[name], dtype=dtype)[order]

        def strings(values):
            return pd.Series(pa.array(values, pa.string()).take(taker), dtype=_STRING)

        submit, start, end = submit[order], numbers("first_start"), numbers("end")
        device = [p or d for p, d in zip(col["placed_device"], col["device"], strict=True)]
        return pd.DataFrame({
            "job_id": strings(col["id"]),
            "user": strings(col["user"]),
            "vc": strings(col["vc"]),
            "submit_time": submit,
            "gpus": numbers("gpus", np.int64),
            "duration": numbers("duration"),
            "start_time": start,
            "end_time": end,
            "wait_s": start - submit,
            "jct_s": end - submit,
            "pool": strings(col["pool"]),
            "device": strings(device),
            "preemptions": numbers("preemptions", np.int64),
            "lost_gpu_s": numbers("lost_work"),
            "status": strings(col["state"]),
        })

    def timeline_frame(self, capacity: int) -> pd.DataFrame:
        rows = np.array(self.timeline, dtype=float).reshape(-1, 4)
        busy = rows[:, 1].astype(np.int64)
        return pd.DataFrame({
            "time_s": rows[:, 0],
            "busy_gpus": busy,
            "utilization": busy / capacity if capacity else np.zeros(len(busy)),
            "queued_jobs": rows[:, 2].astype(np.int64),
            "running_jobs": rows[:, 3].astype(np.int64),
        })
