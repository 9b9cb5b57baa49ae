"""Metrics as column lists during the run; DataFrames are built once at the end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.engine.job import Job


class Recorder:
    JOB_COLUMNS = ("job_id", "user", "vc", "submit_time", "gpus", "duration", "start_time", "end_time",
                   "wait_s", "jct_s", "pool", "device", "preemptions", "lost_gpu_s", "status")

    def __init__(self, record_timeline: bool = True):
        self.jobs = {c: [] for c in self.JOB_COLUMNS}
        self.record_timeline = record_timeline
        self.t_time: list[float] = []
        self.t_busy: list[int] = []
        self.t_queued: list[int] = []
        self.t_running: list[int] = []
        self.busy_device_seconds = 0.0

    def job_done(self, job: Job, status: str) -> None:
        cols = self.jobs
        cols["job_id"].append(job.id)
        cols["user"].append(job.user)
        cols["vc"].append(job.vc)
        cols["submit_time"].append(job.submit)
        cols["gpus"].append(job.gpus)
        cols["duration"].append(job.duration)
        started = job.first_start is not None
        cols["start_time"].append(job.first_start if started else np.nan)
        cols["end_time"].append(job.end if job.end is not None else np.nan)
        cols["wait_s"].append(job.first_start - job.submit if started else np.nan)
        cols["jct_s"].append(job.end - job.submit if job.end is not None else np.nan)
        alloc = job.alloc
        cols["pool"].append(alloc.pool.name if alloc is not None else None)
        cols["device"].append(alloc.pool.device if alloc is not None else job.device)
        cols["preemptions"].append(job.preemptions)
        cols["lost_gpu_s"].append(job.lost_work)
        cols["status"].append(status)

    def sample(self, now: float, busy: int, queued: int, running: int) -> None:
        """One row per instant at which the scheduler ran (the state just after it)."""
        if not self.record_timeline:
            return
        if self.t_time and self.t_time[-1] == now:
            self.t_busy[-1], self.t_queued[-1], self.t_running[-1] = busy, queued, running
            return
        self.t_time.append(now)
        self.t_busy.append(busy)
        self.t_queued.append(queued)
        self.t_running.append(running)

    def jobs_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.jobs)
        df["gpus"] = df["gpus"].astype(np.int64)
        df["preemptions"] = df["preemptions"].astype(np.int64)
        for col in ("user", "vc", "pool", "device", "status", "job_id"):
            df[col] = df[col].astype("string")
        return df

    def timeline_frame(self, capacity: int) -> pd.DataFrame:
        busy = np.asarray(self.t_busy, dtype=np.int64)
        return pd.DataFrame({
            "time_s": np.asarray(self.t_time, dtype=float),
            "busy_gpus": busy,
            "utilization": busy / capacity if capacity else np.zeros(len(busy)),
            "queued_jobs": np.asarray(self.t_queued, dtype=np.int64),
            "running_jobs": np.asarray(self.t_running, dtype=np.int64),
        })
