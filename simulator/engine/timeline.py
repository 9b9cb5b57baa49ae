"""The timeline, rebuilt after the run from what the recorder kept: the state after every instant at
which something changed (timeline.parquet).

Every column is a running sum of changes. The core's changes come from the job records: a job joins
the queue at submission (unless it was rejected), leaves it at each start and rejoins it at each
preemption; each run adds its devices from its start to its end; each pool's devices are installed
from its `in_service_from` to its `in_service_until`. Meters add columns that change with the same
events (`per_run`, `per_pool`) and change sets of their own (`changes`: node outages, maintenance).
Changes after the last job change (a repair still under way when the last job left, a retirement
after it) are left out: the timeline ends with the jobs, or later where a meter's own activity
outlasts them (`extend`: serving replicas held until their last request has left).

All changes are sorted once, stably by time, so changes at one instant keep the order in which they
were added; a column's value after an instant is the sum of its changes up to the instant's last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class TimelineBuilder:
    def __init__(self, recorder, submit: np.ndarray, pools: list):
        admitted = recorder.admitted()
        run_start, run_end, devices, pool_index = recorder.runs()
        self.runs = run_start, run_end, devices, pool_index
        self._ended = np.isfinite(run_end)
        requeued = np.array([end for _, end, _, _ in recorder.interrupted], dtype=float)
        self.last_change = max(np.max(submit[admitted], initial=-np.inf), np.max(run_start, initial=-np.inf),
                               np.max(run_end[self._ended], initial=-np.inf))
        self._pools = pools
        # (times, {column: change at each time, an array or one number for all})
        self._sets: list[tuple[np.ndarray, dict]] = [
            (submit[admitted], {"queued_jobs": 1}),  # a job joins the queue
            (run_start, {"queued_jobs": -1, "running_jobs": 1}),  # a run starts
            (run_end[self._ended], {"running_jobs": -1}),  # a run ends
            (requeued, {"queued_jobs": 1}),  # a preempted job requeues
        ]
        self._columns: dict[str, tuple[type, float]] = {}  # name -> (dtype, divisor of the sum)
        self._per_pool: dict[str, np.ndarray] = {}
        # Devices busy on owned pools; rented (burst) pools count in a meter's column of their own.
        owned = np.array([p.burst_after is None for p in pools], dtype=bool)
        # GPUs held: whole numbers, fractional when jobs share GPUs (cluster/shared_pool.py)
        self.column("busy_gpus", np.float64 if devices.dtype.kind == "f" else np.int64)
        self.per_run("busy_gpus", np.where(owned[pool_index], devices, 0))
        self.column("installed_gpus", np.int64)
        self.per_pool("installed_gpus", [p.capacity if p.burst_after is None else 0 for p in pools])
        self.column("queued_jobs", np.int64)
        self.column("running_jobs", np.int64)
        self.column("down_gpus", np.int64)

    def column(self, name: str, dtype, divisor: float | None = None) -> None:
        """Declare a column (in the order columns appear); its value is the sum of its changes, divided
        by `divisor` if given (to keep a sum in watts and show kilowatts)."""
        self._columns[name] = (dtype, divisor)

    def per_run(self, name: str, values: np.ndarray) -> None:
        """`values[k]` (one per run, in `self.runs` order) is added when run k starts and taken away
        when it ends."""
        self._sets[1][1][name] = values
        self._sets[2][1][name] = -values[self._ended]

    def per_pool(self, name: str, values) -> None:
        """`values[i]` counts while pool i is in service."""
        self._per_pool[name] = np.asarray(values)

    def changes(self, times: np.ndarray, **deltas) -> None:
        """A change set of its own: at `times[k]`, each named column changes by `deltas[name][k]`
        (those after the timeline's end are left out when it is built)."""
        self._sets.append((np.asarray(times, dtype=float), {name: d if np.isscalar(d) else np.asarray(d)
                                                            for name, d in deltas.items()}))

    def extend(self, until: float) -> None:
        """Keep the timeline going to `until` at least: a meter's activity (serving) outlasts the jobs."""
        self.last_change = max(self.last_change, float(until))

    def frame(self) -> pd.DataFrame:
        last = self.last_change
        for k in range(4, len(self._sets)):  # the meters' change sets: up to the timeline's end
            times, deltas = self._sets[k]
            keep = times <= last
            if not keep.all():
                self._sets[k] = (times[keep], {name: d if np.isscalar(d) else d[keep] for name, d in deltas.items()})
        install_at = np.array([p.in_service_from for p in self._pools], dtype=float)
        retire_at = np.array([p.in_service_until for p in self._pools], dtype=float)
        later = np.isfinite(install_at) & (install_at <= self.last_change)
        retired = np.isfinite(retire_at) & (retire_at <= self.last_change)
        from_start = ~np.isfinite(install_at)
        sets = [*self._sets,
                (install_at[later], {n: v[later] for n, v in self._per_pool.items()}),  # a pool enters service
                (retire_at[retired], {n: -v[retired] for n, v in self._per_pool.items()})]  # and leaves it
        time = np.concatenate([times for times, _ in sets])
        order = np.argsort(time, kind="stable")
        time = time[order]
        last_of_instant = np.append(time[1:] != time[:-1], True) if len(time) else np.ones(0, bool)
        instants = int(last_of_instant.sum())

        def after_each_instant(name: str, dtype) -> np.ndarray:
            if all(len(times) == 0 or np.isscalar(d.get(name, 0)) and d.get(name, 0) == 0 for times, d in sets):
                return np.zeros(instants, dtype)  # nothing changes it: skip the sort
            delta = np.concatenate([np.broadcast_to(np.asarray(d.get(name, 0), dtype), (len(times),))
                                    for times, d in sets])
            return np.cumsum(delta[order])[last_of_instant]

        columns = {"time_s": time[last_of_instant]}
        for name, (dtype, divisor) in self._columns.items():
            values = after_each_instant(name, dtype)
            if name in self._per_pool:
                start = self._per_pool[name][from_start].sum()
                values = (int(start) if dtype is np.int64 else start) + values
            columns[name] = values if divisor is None else values / divisor
            if name == "installed_gpus":
                busy = columns["busy_gpus"]
                columns["utilization"] = np.divide(busy, values, out=np.zeros(len(busy)), where=values > 0)
        return pd.DataFrame(columns, copy=False)


def seconds_above(timeline: pd.DataFrame, column: str, level: float) -> float:
    """Seconds in which a timeline column stood above `level` (each value holds until the next row)."""
    time = timeline["time_s"].to_numpy(dtype=float)
    values = timeline[column].to_numpy(dtype=float)[:-1]
    return float(np.diff(time)[values > level].sum())
