"""Metrics collected during the run in preallocated lists; DataFrames are built once at the end.

The job table the run was given is already in submission order and holds every input column, so
per job the recorder keeps only what the run decided: when it started and ended, where, and how
often it was preempted. A finished Job record is then free to go.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from simulator.job import COMPLETED, QUEUED, REJECTED, RUNNING, Job

_STRING = pd.StringDtype("pyarrow")
# A job's final state is kept as a small code (turning a million strings into a column costs more
# than a dict lookup per job).
_STATES = [QUEUED, RUNNING, COMPLETED, REJECTED]
_STATE_CODE = {state: code for code, state in enumerate(_STATES)}
_DTYPES = {"pool": np.int64, "held": np.int64, "status": np.int64}


class Recorder:
    def __init__(self, n_jobs: int):
        nan = float("nan")
        self.start = [nan] * n_jobs  # first start
        self.end = [nan] * n_jobs
        self.pool = [-1] * n_jobs  # index of the pool it last ran in
        # Jobs interrupted at least once (few): index -> (preemptions, failures, device-seconds lost).
        self.interruptions: dict[int, tuple[int, int, float]] = {}
        self.status = [_STATE_CODE[QUEUED]] * n_jobs
        # The last run of each job (start, devices), and every run a preemption cut short: enough to
        # rebuild the timeline after the run, so the event loop records nothing per instant.
        self.last_start = [nan] * n_jobs
        self.held = [0] * n_jobs
        self.interrupted: list[tuple[float, float, int, int]] = []  # (start, end, devices, pool index)
        self.busy_device_seconds = 0.0
        self.shared = False  # a run held a share of a GPU: `held` and the runs' devices are fractional
        self._arrays: dict[str, np.ndarray] = {}

    def job_done(self, job: Job) -> None:
        """A job left the system (completed or rejected), or the run ended with it still there.
        Called while the job still holds its allocation, if it ran."""
        i = job.index
        if job.first_start is not None:
            self.start[i] = job.first_start
            self.pool[i] = job.pool
            alloc = job.alloc
            if alloc is not None:
                self.last_start[i] = job.start
                if alloc.milli:
                    self.held[i] = alloc.milli / 1000.0
                    self.shared = True
                else:
                    self.held[i] = alloc.devices
        if job.end is not None:
            self.end[i] = job.end
        if job.preemptions:
            self.interruptions[i] = (job.preemptions, job.failures, job.lost_work)
        self.status[i] = _STATE_CODE[job.state]

    def reject(self, index: int) -> None:
        """A job refused at load time: it never reaches the queue."""
        self.status[index] = _STATE_CODE[REJECTED]

    def _array(self, name: str) -> np.ndarray:
        """A per-job list as an array, converted once (the jobs frame and the timeline share them)."""
        cached = self._arrays.get(name)
        if cached is None:
            values = getattr(self, name)
            dtype = float if name == "held" and self.shared else _DTYPES.get(name, float)
            cached = self._arrays[name] = np.fromiter(values, dtype, count=len(values))
        return cached

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every run of every job: (start, end, devices, pool index); end is NaN for a run still going
        when the simulation stopped."""
        last_start = self._array("last_start")
        ran = np.isfinite(last_start)
        cut = np.array(self.interrupted, dtype=float).reshape(-1, 4)
        return (np.concatenate([last_start[ran], cut[:, 0]]),
                np.concatenate([self._array("end")[ran], cut[:, 1]]),
                np.concatenate([self._array("held")[ran], cut[:, 2] if self.shared else cut[:, 2].astype(np.int64)]),
                np.concatenate([self._array("pool")[ran], cut[:, 3].astype(np.int64)]))

    def run_interrupted(self, start: float, end: float, devices, pool: int) -> None:
        if type(devices) is float:  # a share of one GPU
            self.shared = True
        self.interrupted.append((start, end, devices, pool))

    def admitted(self) -> np.ndarray:
        """Whether each job reached the queue (every job but those rejected)."""
        return self._array("status") != _STATE_CODE[REJECTED]

    def device_seconds_by_pool(self, pools: int) -> np.ndarray:
        """Device-seconds every pool was held, from the runs (a run still going counts none)."""
        start, end, devices, pool = self.runs()
        ended = np.isfinite(end)
        return np.bincount(pool[ended], weights=devices[ended] * (end[ended] - start[ended]), minlength=pools)

    def jobs_frame(self, jobs: pd.DataFrame, pools: list) -> pd.DataFrame:
        """One row per job of `jobs` (the table the run was given), in its order."""
        submit = jobs["submit_time"].to_numpy(dtype=float)
        start, end, pool_index = self._array("start"), self._array("end"), self._array("pool")
        n = len(jobs)
        preemptions, failures, lost = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
        if self.interruptions:
            index = np.fromiter(self.interruptions, np.int64, count=len(self.interruptions))
            counts = np.array(list(self.interruptions.values()), dtype=float)
            preemptions[index], failures[index], lost[index] = counts[:, 0], counts[:, 1], counts[:, 2]
        names = [None] + [p.name for p in pools]
        devices = [None] + [p.device for p in pools]
        if "device" in jobs.columns:  # a job that never ran shows the device type it asked for
            device = _text(np.where(pool_index >= 0, np.array(devices, dtype=object)[pool_index + 1],
                                    jobs["device"].to_numpy(dtype=object)))
        else:
            device = _labels(pool_index + 1, devices)
        return pd.DataFrame({
            "job_id": jobs["job_id"].astype(_STRING).reset_index(drop=True),
            "user": _column_text(jobs, "user"),
            "vc": _column_text(jobs, "vc"),
            "submit_time": submit,
            "gpus": jobs["gpus"].to_numpy(dtype=np.int64),
            "duration": jobs["duration"].to_numpy(dtype=float),
            "start_time": start,
            "end_time": end,
            "wait_s": start - submit,
            "jct_s": end - submit,
            "pool": _labels(pool_index + 1, names),
            "device": device,
            "preemptions": preemptions,
            "failures": failures,
            "lost_gpu_s": lost,
            "status": _labels(self._array("status"), _STATES),
        }, copy=False)


# Text columns are few distinct labels over many rows: encode once per label, not once per row.
def _labels(codes: np.ndarray, labels: list) -> pd.Series:
    """Strings (missing where the label is None) for integer codes into `labels`."""
    dictionary = pa.array(labels, type=pa.string())
    encoded = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary)
    return pd.Series(pd.arrays.ArrowStringArray(encoded.cast(pa.string())), dtype=_STRING)


def _text(values) -> pd.Series:
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    labels = [None if pd.isna(u) else str(u) for u in uniques] + [None]
    return _labels(np.where(codes < 0, len(labels) - 1, codes), labels)


def _column_text(jobs: pd.DataFrame, column: str) -> pd.Series:
    if column not in jobs.columns:
        return _labels(np.zeros(len(jobs), dtype=np.int32), [None])
    return _text(jobs[column].to_numpy(dtype=object))
