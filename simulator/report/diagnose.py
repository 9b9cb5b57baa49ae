"""Why jobs waited: one simple rule over the timeline and the job table, so a report can say whether
the wait comes from too little capacity or from something a purchase would not fix.

The rule, in order (the first that holds is the verdict):

1. **No notable wait**: p95 wait under 10 minutes.
2. **Head-of-line blocking**: while jobs were queued the cluster was less than 70% busy, and one job
   sat at the head of the queue (the earliest-submitted job still waiting) for at least a quarter of
   the queued time asking for more devices than stood idle on average meanwhile. A FIFO queue waits
   behind it with devices free: a backfilling policy, not a purchase, is the remedy.
3. **Failures**: while jobs were queued, at least 10% of the installed devices were down for repair.
4. **A burst**: a tenth of the arrival span holds at least half of all the waiting (job-seconds
   queued, by submission time) and at least twice its share of the submissions.
5. **Capacity**: while jobs were queued the cluster was at least 85% busy.
6. Otherwise **mixed**: utilisation while queued between those bounds (fragmentation, placement,
   several smaller blockers); the evidence is given without a verdict.

"Utilisation while queued" is the time-weighted busy share of installed devices over the instants at
which at least one job was queued (timeline.parquet's `queued_jobs`, `busy_gpus`, `installed_gpus`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulator.metrics.periods import step_integral_at
from simulator.units import format_duration

NOTABLE_WAIT_S = 600.0
HOL_UTILISATION = 0.70
HOL_HEAD_SHARE = 0.25
FAILURE_DOWN_SHARE = 0.10
BURST_SPAN_SHARE = 0.10
BURST_WAIT_SHARE = 0.50
CAPACITY_UTILISATION = 0.85


@dataclass
class Diagnosis:
    cause: str  # none, head-of-line, failures, burst, capacity, mixed
    headline: str
    evidence: list[str] = field(default_factory=list)


def diagnose(jobs: pd.DataFrame, timeline: pd.DataFrame, summary: dict) -> Diagnosis:
    p95 = float(summary.get("p95_wait_s", 0.0) or 0.0)
    if p95 < NOTABLE_WAIT_S or timeline.empty or jobs.empty:
        return Diagnosis("none", f"No notable wait: p95 wait is {format_duration(p95)} (under "
                         f"{format_duration(NOTABLE_WAIT_S)}).")
    time = timeline["time_s"].to_numpy(dtype=float)
    dt = np.diff(time)
    queued = timeline["queued_jobs"].to_numpy(dtype=float)[:-1] > 0
    busy = timeline["busy_gpus"].to_numpy(dtype=float)[:-1]
    installed = (timeline["installed_gpus"].to_numpy(dtype=float)[:-1] if "installed_gpus" in timeline
                 else np.full(len(dt), float(summary.get("gpus_total", 0))))
    queued_s = float(dt[queued].sum())
    if queued_s <= 0:
        return Diagnosis("none", "No job was ever queued.")
    installed_area = float((installed * dt)[queued].sum())
    util_q = float((busy * dt)[queued].sum() / installed_area) if installed_area > 0 else 0.0
    evidence = [f"While at least one job was queued ({format_duration(queued_s)} in all), the cluster was "
                f"{util_q:.0%} busy on average."]

    head = _longest_head(jobs)
    if head is not None and util_q < HOL_UTILISATION:
        job, start, end = head
        idle_full = np.concatenate([installed - busy, [0.0]])  # a step function on the timeline's instants
        idle = _mean_over(time, idle_full, start, end)
        if end - start >= HOL_HEAD_SHARE * queued_s and job["gpus"] > idle:
            evidence.append(f"Job {job['job_id']} ({int(job['gpus']):,} GPUs) was at the head of the queue for "
                            f"{format_duration(end - start)} ({(end - start) / queued_s:.0%} of the queued time), "
                            f"while {idle:,.0f} GPUs stood idle on average.")
            return Diagnosis("head-of-line", f"Head-of-line blocking, not capacity: jobs queued behind job "
                             f"{job['job_id']} ({int(job['gpus']):,} GPUs) while the cluster was only {util_q:.0%} "
                             "busy. A backfilling policy (easy-backfill) lets smaller jobs use the idle devices; "
                             "buying more would not help much.", evidence)
    if "down_gpus" in timeline:
        down = timeline["down_gpus"].to_numpy(dtype=float)[:-1]
        down_share = float((down * dt)[queued].sum() / installed_area) if installed_area > 0 else 0.0
        if down_share >= FAILURE_DOWN_SHARE:
            evidence.append(f"{down_share:.0%} of the installed devices were down for repair while jobs waited.")
            return Diagnosis("failures", f"Failures: {down_share:.0%} of the devices were down for repair while "
                             "jobs waited; faster repair or spare nodes would cut the wait.", evidence)
    burst = _burst(jobs)
    if burst is not None:
        start, wait_share, arrival_share = burst
        span = BURST_SPAN_SHARE * _arrival_span(jobs)
        evidence.append(f"Jobs submitted from {format_duration(start)} to {format_duration(start + span)} after "
                        f"the first submission carry {wait_share:.0%} of all the waiting and are "
                        f"{arrival_share:.0%} of the submissions.")
        return Diagnosis("burst", f"A burst of arrivals: {wait_share:.0%} of the waiting comes from jobs submitted "
                         f"in {format_duration(span)} starting at {format_duration(start)}. Capacity is short only "
                         "then; cloud burst or deferring that work may be cheaper than a purchase.", evidence)
    if util_q >= CAPACITY_UTILISATION:
        return Diagnosis("capacity", f"Capacity: the cluster was {util_q:.0%} busy while jobs waited; more devices "
                         "(or less demand) is what shortens the wait.", evidence)
    return Diagnosis("mixed", f"No single cause: the cluster was {util_q:.0%} busy while jobs waited, neither "
                     "full nor blocked by one job (fragmentation or placement may play a part).", evidence)


def _longest_head(jobs: pd.DataFrame):
    """(job row, start, end) of the job that was longest at the head of the queue (the earliest-submitted
    job still waiting), over the jobs that started. Job j heads the queue from when every job submitted
    before it has started, or its own submission, until its own start."""
    ran = jobs[jobs["start_time"].notna()].sort_values(["submit_time", "job_id"], kind="stable")
    if ran.empty:
        return None
    submit = ran["submit_time"].to_numpy(dtype=float)
    start = ran["start_time"].to_numpy(dtype=float)
    before = np.concatenate([[-np.inf], np.maximum.accumulate(start)[:-1]])
    head_from = np.maximum(submit, before)
    span = np.maximum(start - head_from, 0.0)
    i = int(np.argmax(span))
    if span[i] <= 0:
        return None
    return ran.iloc[i], float(head_from[i]), float(start[i])


def _mean_over(time, values, start, end) -> float:
    """Time-weighted mean of a step function (values[i] on [time[i], time[i+1])) over [start, end]."""
    area = step_integral_at(time, values, np.array([start, end]))
    return float((area[1] - area[0]) / (end - start)) if end > start else float("nan")


def _arrival_span(jobs: pd.DataFrame) -> float:
    return float(jobs["submit_time"].max() - jobs["submit_time"].min())


def _burst(jobs: pd.DataFrame):
    """(window start after the first submission, its share of the waiting, its share of submissions)
    of the window of a tenth of the arrival span that holds the most waiting, if it is a burst."""
    span = _arrival_span(jobs)
    done = jobs[jobs["wait_s"].notna()]
    total = float(done["wait_s"].sum())
    if span <= 0 or total <= 0:
        return None
    first = float(jobs["submit_time"].min())
    width = BURST_SPAN_SHARE * span
    starts = first + np.linspace(0, span - width, 91)
    submit = done["submit_time"].to_numpy(dtype=float)
    wait = done["wait_s"].to_numpy(dtype=float)
    all_submit = jobs["submit_time"].to_numpy(dtype=float)
    best = None
    for s in starts:
        inside = (submit >= s) & (submit <= s + width)
        share = float(wait[inside].sum() / total)
        if best is None or share > best[1]:
            arrivals = float(((all_submit >= s) & (all_submit <= s + width)).mean())
            best = (s - first, share, arrivals)
    if best[1] >= BURST_WAIT_SHARE and best[2] >= 2 * BURST_SPAN_SHARE:
        return best
    return None
