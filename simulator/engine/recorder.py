"""Metrics collected during the run in preallocated lists; DataFrames are built once at the end.

The job table the run was given is already in submission order and holds every input column, so
per job the recorder keeps only what the run decided: when it started and ended, where, and how
often it was preempted. A finished Job record is then free to go.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.engine.job import QUEUED, Job

_STRING = pd.StringDtype("pyarrow")


class Recorder:
    def __init__(self, n_jobs: int, record_timeline: bool = True):
        nan = float("nan")
        self.start = [nan] * n_jobs  # first start
        self.end = [nan] * n_jobs
        self.pool = [-1] * n_jobs  # index of the pool it last ran in
        self.preemptions = [0] * n_jobs
        self.lost_work = [0.0] * n_jobs
        self.status = [QUEUED] * n_jobs
        self.record_timeline = record_timeline
        self.timeline: list[tuple[float, int, int, int]] = []  # (time, busy, queued, running)
        self.busy_device_seconds = 0.0

    def job_done(self, job: Job) -> None:
        """A job left the system (completed or rejected), or the run ended with it still there."""
        i = job.index
        if job.first_start is not None:
            self.start[i] = job.first_start
            self.pool[i] = job.pool
        if job.end is not None:
            self.end[i] = job.end
        self.preemptions[i] = job.preemptions
        self.lost_work[i] = job.lost_work
        self.status[i] = job.state

    def sample(self, now: float, busy: int, queued: int, running: int) -> None:
        """One row per instant at which the state changed (the state at the end of the instant)."""
        timeline = self.timeline
        if timeline and timeline[-1][0] == now:
            timeline[-1] = (now, busy, queued, running)
        elif self.record_timeline:
            timeline.append((now, busy, queued, running))

    def jobs_frame(self, jobs: pd.DataFrame, pools: list) -> pd.DataFrame:
        """One row per job of `jobs` (the table the run was given), in its order."""
        submit = jobs["submit_time"].to_numpy(dtype=float)
        start = np.array(self.start, dtype=float)
        end = np.array(self.end, dtype=float)
        pool_index = np.array(self.pool, dtype=np.int64)
        names = np.array([None] + [p.name for p in pools], dtype=object)
        devices = np.array([None] + [p.device for p in pools], dtype=object)
        requested = jobs["device"] if "device" in jobs.columns else pd.Series([None] * len(jobs))
        device = np.where(pool_index >= 0, devices[pool_index + 1], requested.to_numpy(dtype=object))

        def text(values) -> pd.Series:
            return pd.Series(values, dtype=_STRING)

        none = [None] * len(jobs)
        return pd.DataFrame({
            "job_id": text(jobs["job_id"].to_numpy(dtype=object)),
            "user": text(jobs["user"].to_numpy(dtype=object) if "user" in jobs.columns else none),
            "vc": text(jobs["vc"].to_numpy(dtype=object) if "vc" in jobs.columns else none),
            "submit_time": submit,
            "gpus": jobs["gpus"].to_numpy(dtype=np.int64),
            "duration": jobs["duration"].to_numpy(dtype=float),
            "start_time": start,
            "end_time": end,
            "wait_s": start - submit,
            "jct_s": end - submit,
            "pool": text(names[pool_index + 1]),
            "device": text(device),
            "preemptions": np.array(self.preemptions, dtype=np.int64),
            "lost_gpu_s": np.array(self.lost_work, dtype=float),
            "status": text(self.status),
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
