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
from simulator.models.power import PoolPower

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
        # Jobs slowed by a contended fabric (few): index -> [wall seconds lost, device-seconds lost].
        self.network_delay: dict[int, list[float]] = {}
        self.status = [_STATE_CODE[QUEUED]] * n_jobs
        # The last run of each job (start, devices), and every run a preemption cut short: enough to
        # rebuild the timeline after the run, so the event loop records nothing per instant.
        self.last_start = [nan] * n_jobs
        self.held = [0] * n_jobs
        self.interrupted: list[tuple[float, float, int, int]] = []  # (start, end, devices, pool index)
        self.busy_device_seconds = 0.0
        self._arrays: dict[str, np.ndarray] = {}

    def job_done(self, job: Job) -> None:
        """A job left the system (completed or rejected), or the run ended with it still there.
        Called while the job still holds its allocation, if it ran."""
        i = job.index
        if job.first_start is not None:
            self.start[i] = job.first_start
            self.pool[i] = job.pool
            if job.alloc is not None:
                self.last_start[i] = job.start
                self.held[i] = job.alloc.devices
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
            cached = self._arrays[name] = np.fromiter(values, _DTYPES.get(name, float), count=len(values))
        return cached

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every run of every job: (start, end, devices, pool index); end is NaN for a run still going
        when the simulation stopped."""
        last_start = self._array("last_start")
        ran = np.isfinite(last_start)
        cut = np.array(self.interrupted, dtype=float).reshape(-1, 4)
        return (np.concatenate([last_start[ran], cut[:, 0]]),
                np.concatenate([self._array("end")[ran], cut[:, 1]]),
                np.concatenate([self._array("held")[ran], cut[:, 2].astype(np.int64)]),
                np.concatenate([self._array("pool")[ran], cut[:, 3].astype(np.int64)]))

    def run_interrupted(self, start: float, end: float, devices: int, pool: int) -> None:
        self.interrupted.append((start, end, devices, pool))

    def network_delayed(self, index: int, seconds: float, device_seconds: float) -> None:
        """A run on a contended fabric ended: it took `seconds` longer than at full speed."""
        if seconds > 0:
            delay = self.network_delay.setdefault(index, [0.0, 0.0])
            delay[0] += seconds
            delay[1] += device_seconds

    @property
    def network_delay_device_seconds(self) -> float:
        return sum(d[1] for d in self.network_delay.values())

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
        network_delay = np.zeros(n)
        if self.network_delay:
            index = np.fromiter(self.network_delay, np.int64, count=len(self.network_delay))
            network_delay[index] = [d[0] for d in self.network_delay.values()]
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
            "network_delay_s": network_delay,
            "status": _labels(self._array("status"), _STATES),
        }, copy=False)

    def timeline_frame(self, submit: np.ndarray, pool_capacity: list[int], power: list[PoolPower],
                       outages: np.ndarray | None = None, install_at: np.ndarray | None = None,
                       retire_at: np.ndarray | None = None, burst: np.ndarray | None = None) -> pd.DataFrame:
        """Busy devices, queued and running jobs, devices installed and down, and power after every
        instant at which one of them changed.

        Rebuilt from the job records: a job joins the queue at submission (unless it was rejected),
        leaves it at each start and rejoins it at each preemption; each run adds its devices (and their
        power, by pool) from its start to its end. `outages` rows (down, up, devices) take devices out
        of service; a repair still under way when the last job left ends with the timeline. A pool with
        an `install_at` time (-inf: there from the start) adds its devices and its idle power then, and
        one with a `retire_at` time (inf: never) takes them away, each if before the last job left. Runs
        on `burst` pools (rented on demand, not installed) count in a column of their own, burst_gpus.
        The state after an instant is the running sum of every change up to it.
        """
        admitted = self._array("status") != _STATE_CODE[REJECTED]
        run_start, run_end, devices, pools = self.runs()
        requeued = np.array([end for _, end, _, _ in self.interrupted], dtype=float)
        on_burst = np.zeros(len(pools), bool) if burst is None else np.asarray(burst, bool)[pools]
        owned = np.where(on_burst, 0, devices)
        rented = devices - owned
        watts = devices * np.array([p.per_busy_w for p in power], dtype=float)[pools]
        ended = np.isfinite(run_end)  # a run still going when the simulation stopped has no end
        outages = np.zeros((0, 3)) if outages is None else outages
        last_job_change = max(np.max(submit[admitted], initial=-np.inf), np.max(run_start, initial=-np.inf),
                              np.max(run_end[ended], initial=-np.inf))
        repaired = outages[:, 1] <= last_job_change
        install_at = np.full(len(power), -np.inf) if install_at is None else np.asarray(install_at, float)
        retire_at = np.full(len(power), np.inf) if retire_at is None else np.asarray(retire_at, float)
        capacity = np.asarray(pool_capacity, dtype=np.int64)
        base_w = np.array([p.base_w for p in power], dtype=float)
        later = np.isfinite(install_at) & (install_at <= last_job_change)
        retired = np.isfinite(retire_at) & (retire_at <= last_job_change)
        from_start = ~np.isfinite(install_at)

        # (when, and the change of busy owned devices, queued jobs, running jobs, watts, devices down,
        # devices installed, busy burst devices)
        kinds = [
            (submit[admitted], 0, 1, 0, 0.0, 0, 0, 0),  # a job joins the queue
            (run_start, owned, -1, 1, watts, 0, 0, rented),  # a run starts
            (run_end[ended], -owned[ended], 0, -1, -watts[ended], 0, 0, -rented[ended]),  # a run ends
            (requeued, 0, 1, 0, 0.0, 0, 0, 0),  # a preempted job requeues
            (outages[:, 0], 0, 0, 0, 0.0, outages[:, 2], 0, 0),  # a node goes down
            (outages[repaired, 1], 0, 0, 0, 0.0, -outages[repaired, 2], 0, 0),  # and comes back
            (install_at[later], 0, 0, 0, base_w[later], 0, capacity[later], 0),  # an expansion enters service
            (retire_at[retired], 0, 0, 0, -base_w[retired], 0, -capacity[retired], 0),  # a pool leaves it
        ]
        time = np.concatenate([k[0] for k in kinds])
        order = np.argsort(time, kind="stable")
        time = time[order]
        last_of_instant = np.append(time[1:] != time[:-1], True) if len(time) else np.ones(0, bool)

        instants = int(last_of_instant.sum())

        def after_each_instant(column: int, dtype) -> np.ndarray:
            if all(len(k[0]) == 0 or np.isscalar(k[column]) and k[column] == 0 for k in kinds):
                return np.zeros(instants, dtype)  # nothing changes it (no failures, no expansion): skip the sort
            delta = np.concatenate([np.broadcast_to(np.asarray(k[column], dtype), (len(k[0]),)) for k in kinds])
            return np.cumsum(delta[order])[last_of_instant]

        busy = after_each_instant(1, np.int64)
        installed = int(capacity[from_start].sum()) + after_each_instant(6, np.int64)
        columns = {
            "time_s": time[last_of_instant],
            "busy_gpus": busy,
            "installed_gpus": installed,
            "utilization": np.divide(busy, installed, out=np.zeros(len(busy)), where=installed > 0),
            "queued_jobs": after_each_instant(2, np.int64),
            "running_jobs": after_each_instant(3, np.int64),
            "down_gpus": after_each_instant(5, np.int64),
            "power_kw": (base_w[from_start].sum() + after_each_instant(4, float)) / 1000.0,
        }
        if burst is not None and np.any(burst):
            columns["burst_gpus"] = after_each_instant(7, np.int64)
        return pd.DataFrame(columns, copy=False)


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
