"""How big a scenario is before anything is built: its jobs, the random draws that generate them, its
devices and nodes, its node failures and its timeline rows, and the memory they take. A scenario that
would not fit is refused up front, naming its estimated size and the limit, rather than failing with
a MemoryError half-way, or generating arrivals for ever.

The estimate follows what the generators do (workload/arrivals.py): `until` sources draw candidate
arrivals at their peak rate over the horizon; `jobs` sources draw in windows sized to the jobs still
needed, at least a week long. Serving requests (`requests:`) count as many as they ask for (or their
rate times their span; with sessions, times the mean turns), maintenance windows one per `every` while the work lasts. Expected values,
not bounds: a run may use somewhat more or less. Sizes of trace sources (job traces, request lists)
are known only once they are read; build_jobs and the serving feature check them then.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.errors import CapsimError
from simulator.units import MAX_DURATION_S, MAX_DURATION_TEXT, format_span
from simulator.workload.arrivals import WEEK_S, PoissonArrivals
from simulator.workload.spec import PresetWorkload, SyntheticWorkload

# Bytes per item, measured on runs of 10^5-3x10^5 jobs (about 1 KB per job all told) and rounded up.
JOB_BYTES = 1_000  # the job table, Job records, the recorder's lists, jobs.parquet's frame
TIMELINE_ROW_BYTES = 100  # one timeline row (plus 9 bytes per pool while costing it)
DRAW_BYTES = 48  # one candidate arrival while generating (times, uniforms, rates)
NODE_BYTES = 150  # a node's free count, its failure-process entry
# Measured on the docs' chat service (docs/serving.md): 10^6 requests took 523 MB more than 1 (peak RSS).
REQUEST_BYTES = 600  # a request's row, the fleet's per-request lists, requests.parquet's frame
REPLICA_BYTES = 2_000  # a serving replica: its object, batch and queues
# Measured: 720,000 windows of a 1 s maintenance cycle took 700 MB (peak RSS) all told.
WINDOW_BYTES = 800  # one maintenance window: its calendar entries and record, beside its two timeline rows

MAX_POOLS = 1_000
MAX_NODES = 1_000_000  # nodes in the whole cluster
MAX_DEVICES_PER_NODE = 65_536
MAX_FAILURES = 1_000_000  # expected node failures in one run (a realistic year on 10^5 devices: ~2x10^4)
MAX_WINDOWS = 10_000  # arrival windows of a `jobs:` source (each at least a week)


@dataclass(frozen=True)
class SizeEstimate:
    jobs: float  # expected jobs, all sources
    draws: float  # random candidate arrivals drawn to generate them
    horizon_s: float  # from the workload clock's 0 to the last expected arrival
    devices: int
    nodes: int
    failures: float  # expected node failures (0 without `failures:`)
    timeline_rows: float
    bytes: float
    requests: float = 0.0  # serving requests, all sources
    windows: float = 0.0  # maintenance windows, all pools
    replicas: float = 0.0  # serving replicas, all services


    def describe(self) -> str:
        parts = [f"{_count(self.jobs)} jobs"]
        if self.draws > 1.5 * self.jobs:
            parts.append(f"{_count(self.draws)} candidate arrivals drawn")
        if self.requests:
            parts.append(f"{_count(self.requests)} serving requests")
        if self.replicas:
            parts.append(f"{_count(self.replicas)} serving replicas")
        if self.windows:
            parts.append(f"{_count(self.windows)} maintenance windows")
        parts.append(f"{_count(self.timeline_rows)} timeline rows")
        parts.append(f"{self.devices:,} devices on {self.nodes:,} nodes")
        if self.failures:
            parts.append(f"{_count(self.failures)} node failures")
        return ", ".join(parts)


def _count(x: float) -> str:
    return f"{x:,.0f}" if x < 1e7 else f"{x:.2g}"


def _gb(n: float) -> str:
    if not n < 1e15:
        return f"{n / 1e9:.2g} GB"
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def memory_limit() -> tuple[float, str]:
    """The memory a run may plan to use, and where that figure comes from: CAPSIM_MEMORY_LIMIT (bytes,
    or with a unit: 512MB, 8GB), else 80% of this machine's memory (or of the container's limit)."""
    given = os.environ.get("CAPSIM_MEMORY_LIMIT")
    if given:
        text = given.strip().upper().removesuffix("B")
        scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1:], 1.0)
        try:
            value = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise CapsimError(f"CAPSIM_MEMORY_LIMIT must be a size such as 8GB, got {given!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise CapsimError(f"CAPSIM_MEMORY_LIMIT must be a positive size such as 8GB, got {given!r}")
        return value, "CAPSIM_MEMORY_LIMIT"
    total = _physical_memory()
    return 0.8 * total, f"80% of this machine's {_gb(total)}; CAPSIM_MEMORY_LIMIT sets another"


def _physical_memory() -> float:
    try:
        total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = 8e9
    try:  # a container's own limit (cgroup v2), when it has one
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cgroup.isdigit():
            total = min(total, float(cgroup))
    except OSError:
        pass
    return total


def check_size(scenario, jobs=None, requests=None) -> SizeEstimate:
    """Refuse a scenario that would not fit: CapsimError naming its estimated size and the limit.
    `jobs`: the job table once it is built (trace sources read), replacing the estimate of its jobs;
    `requests`: the number of serving requests once the request lists are read, likewise."""
    estimate = estimate_size(scenario, jobs, requests)
    limit, why = memory_limit()
    if not estimate.bytes <= limit:
        where = "workload" if scenario.workload else "cluster"
        if estimate.requests * REQUEST_BYTES > estimate.bytes / 2:
            where = "requests"
        elif estimate.windows * WINDOW_BYTES > estimate.bytes / 2:
            where = "maintenance"
        elif estimate.replicas * REPLICA_BYTES > estimate.bytes / 2:
            where = "services"
        raise CapsimError(f"too big for this machine: about {_gb(estimate.bytes)} of memory "
                          f"({estimate.describe()}), over the limit of {_gb(limit)} ({why})",
                          source=scenario.source, where=where)
    return estimate


def estimate_size(scenario, jobs=None, requests=None) -> SizeEstimate:
    """The size of a validated scenario (see the module's docstring); a source that would never finish
    generating (its jobs would not all arrive within MAX_DURATION_S) is refused here."""
    pools = scenario.cluster.pools
    nodes = sum(p.nodes for p in pools)
    devices = sum(p.devices for p in pools)
    largest_pool = max(p.devices for p in pools)  # a larger job is rejected: it never runs
    total_jobs, draws, horizon, work, longest = 0.0, 0.0, 0.0, 0.0, 0.0
    for i, spec in enumerate(scenario.workload):
        if isinstance(spec, PresetWorkload):
            from simulator.workload.presets import resolve_preset

            try:
                spec = resolve_preset(spec, scenario.base_dir)
            except CapsimError as exc:
                if exc.source or exc.where:
                    raise
                raise CapsimError(exc.detail, source=scenario.source, where=f"workload[{i}]") from None
        if not isinstance(spec, SyntheticWorkload):
            continue  # a trace: counted once read
        n, d, end = source_size(spec, scenario.source, f"workload[{i}]")
        total_jobs, draws, horizon = total_jobs + n, draws + d, max(horizon, end)
        for gpus, duration in _job_shapes(spec):
            if gpus <= largest_pool:
                work += n * gpus * duration
                longest = max(longest, float(_run_time(scenario, gpus, duration)))
    if jobs is not None:  # the job table itself
        total_jobs = float(len(jobs))
        gpus, duration = jobs["gpus"].to_numpy(dtype=float), jobs["duration"].to_numpy(dtype=float)
        runs = (gpus <= largest_pool) & np.isfinite(duration)
        gpus, duration = gpus[runs], duration[runs]
        work = float(np.sum(gpus * duration))
        longest = float(np.max(_run_time(scenario, gpus, duration), initial=0.0))
        submit = jobs["submit_time"].to_numpy(dtype=float)
        horizon = max(horizon, float(submit.max() - submit.min()) if len(jobs) else 0.0)
    # The run lasts at least until the arrivals end or the work is done at full use, and then until the
    # longest jobs finish (under failures, restarting from their last checkpoint at every failure).
    with np.errstate(over="ignore", invalid="ignore"):
        span = max(horizon, work / max(devices, 1)) + longest
    failures = 0.0
    if scenario.failures is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            failures = devices * span / scenario.failures.device_mtbf
        if not failures <= MAX_FAILURES:
            raise CapsimError(
                f"about {_count(failures)} node failures expected ({devices:,} devices over about "
                f"{format_span(span)}, one failure per device every "
                f"{format_span(scenario.failures.device_mtbf)}; the run lasts until the last arrival or the "
                f"work is done, then as long as its longest jobs take between failures, "
                f"{format_span(longest)}), over the limit of {MAX_FAILURES:,}",
                source=scenario.source, where="failures.device_mtbf")
    n_requests, replicas = _serving_size(scenario) if requests is None else (float(requests), _replicas(scenario))
    windows = _maintenance_windows(scenario, span)
    # a request: up to 3 rows (arrival, first token, end; measured ~240 B a request all told)
    rows = 2.0 * total_jobs + 2.0 * failures + 2.0 * windows + 2.0 * len(pools) + 3.0 * n_requests + 1.0
    per_node_masks = sum(p.nodes * (p.devices_per_node + 1) / 8.0 for p in pools)
    size = (total_jobs * JOB_BYTES + rows * (TIMELINE_ROW_BYTES + 9 * len(pools)) + draws * DRAW_BYTES
            + nodes * NODE_BYTES + per_node_masks + failures * TIMELINE_ROW_BYTES
            + n_requests * REQUEST_BYTES + replicas * REPLICA_BYTES + windows * WINDOW_BYTES)
    return SizeEstimate(total_jobs, draws, horizon, devices, nodes, failures, rows, size, n_requests, windows,
                        replicas)


def _serving_size(scenario) -> tuple[float, float]:
    """(serving requests, replicas): as many requests as a synthetic source asks for, or its rate over
    its span; request lists are counted once read (features/serving.py)."""
    total = 0.0
    for spec in getattr(scenario, "requests", None) or []:
        if spec.kind != "synthetic":
            continue
        if spec.requests is not None:
            n = float(spec.requests)
        else:
            n = spec.arrival.rate_per_s * max(0.0, spec.until - spec.start)
        total += n * _mean_turns(spec)
    return total, _replicas(scenario)


def _mean_turns(spec) -> float:
    """Requests per arrival: 1, or with sessions the mean of `turns` (a lognormal's before its clip)."""
    turns = getattr(spec, "sessions", None)
    turns = None if turns is None else turns.turns
    if turns is None or isinstance(turns, int):
        return float(turns or 1)
    if turns.dist == "lognormal":
        mean = turns.median * float(np.exp(min(turns.sigma**2 / 2, 700.0)))
    elif turns.dist == "exponential":
        mean = turns.mean
    else:
        mean = (turns.low + turns.high) / 2
    return max(1.0, min(mean, float(turns.max or mean)))


def _replicas(scenario) -> float:
    """Serving replicas, at most one per device (more is refused naming the service, features/serving.py)."""
    devices = sum(p.devices for p in scenario.cluster.pools)
    return float(sum(min(s.most_replicas, devices) for s in getattr(scenario, "services", None) or []))


def _maintenance_windows(scenario, span: float) -> float:
    """Maintenance windows: one per `every` from `first` while the work lasts, the run stretched by the
    time the pool is down (windows recur only while work is running or still to arrive)."""
    total = 0.0
    for window in getattr(scenario, "maintenance", None) or []:
        up = 1.0 - window.duration / window.every
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            total += 1.0 + max(0.0, span / up - window.first) / window.every
    return total


def _job_shapes(spec: SyntheticWorkload) -> list[tuple[float, float]]:
    """(GPUs, mean run time) of a source's jobs: its largest size with its mean run time (or a bound of
    it: a truncated lognormal's own mean would import scipy), per class (model jobs' run times are not
    known before the cluster is: 0)."""
    if spec.classes is not None:
        return [(_largest(c.gpus), c.duration.mean_bound()) for c in spec.classes]
    return [(_largest(spec.gpus), spec.duration.mean_bound() if spec.duration is not None else 0.0)]


def _largest(gpus) -> float:
    return float(gpus if isinstance(gpus, int) else gpus.max())


def _run_time(scenario, gpus, duration):
    """Jobs' expected wall time (arrays or numbers): their run time, plus their checkpoints, and under
    failures the work lost to each one (segments of tau of work plus a checkpoint C, at the job's
    failure rate 1/M, take M (e^((tau + C)/M) - 1) each: Young/Daly); infinite when that overflows."""
    preemption = scenario.scheduler.preemption
    gpus, duration = np.asarray(gpus, dtype=float), np.asarray(duration, dtype=float)
    interval = preemption.checkpoint_interval
    tau = duration if interval is None else np.minimum(interval, duration)
    cost = preemption.checkpoint_cost if interval is not None else 0.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        segments = np.where(tau > 0, duration / tau, 0.0)
        if scenario.failures is None:
            return duration + segments * cost
        m = scenario.failures.device_mtbf / gpus
        return np.where(tau > 0, segments * m * np.expm1((tau + cost) / m), 0.0)


def source_size(spec: SyntheticWorkload, source: str, where: str) -> tuple[float, float, float]:
    """(expected jobs, candidate arrivals drawn, time of the last arrival) of one synthetic source."""
    arrival, growth = spec.arrival, spec.growth if spec.growth is not None and spec.growth.changes_rate else None
    base = arrival.rate_per_hour / 3600.0
    peak = arrival.peak_relative_rate()

    def refuse(msg: str):
        raise CapsimError(msg, source=source, where=where)

    if spec.until is not None:
        n = _expected(spec, base, growth, spec.start, spec.until)
        d = n if _plain(spec, growth) else peak * base * _max_mult(growth, spec.start, spec.until) * (
            spec.until - spec.start) + _bursts(spec, growth, spec.start, spec.until)
        if not (math.isfinite(n) and math.isfinite(d)):
            refuse(f"the arrival rate grows without bound before 'until' ({format_span(spec.until)})")
        return n, d, spec.until
    jobs = float(spec.jobs)
    if _plain(spec, growth):
        end = spec.start + jobs / base
        if not end - spec.start <= MAX_DURATION_S:
            refuse(f"{spec.jobs:,} jobs at {arrival.rate_per_hour:g} per hour take about "
                   f"{format_span(end - spec.start)} to arrive, longer than the limit of "
                   f"{MAX_DURATION_TEXT}")
        return jobs, jobs, end
    # Windows as arrival_times draws them: sized to the jobs still needed at the current rate, a week at least.
    count, draws, t0 = 0.0, 0.0, spec.start
    for _ in range(MAX_WINDOWS):
        if count >= jobs:
            return jobs, draws, t0
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            rate = base * (float(growth.multiplier(t0)) if growth else 1.0)
            t1 = t0 + max((jobs - count) / rate * 1.2, WEEK_S) if rate > 0 else math.inf
        if not t1 - spec.start <= MAX_DURATION_S:
            break
        count += _expected(spec, base, growth, t0, t1)
        draws += peak * base * _max_mult(growth, t0, t1) * (t1 - t0) + _bursts(spec, growth, t0, t1)
        if not math.isfinite(count + draws):
            refuse("the arrival rate grows without bound")
        t0 = t1
    refuse(f"{spec.jobs:,} jobs would not all arrive within {MAX_DURATION_TEXT} at this rate "
           f"({arrival.rate_per_hour:g} per hour{' with its growth' if growth else ''})")


def _plain(spec: SyntheticWorkload, growth) -> bool:
    return isinstance(spec.arrival, PoissonArrivals) and growth is None and spec.arrival.bursts is None


def _grid(growth, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(t0, t1, 257)
    if growth.curve is not None:
        t = np.union1d(t, [k for k, _ in growth.curve if t0 < k < t1])
    with np.errstate(over="ignore", invalid="ignore"):
        return t, np.asarray(growth.multiplier(t), dtype=float)


def _expected(spec: SyntheticWorkload, base: float, growth, t0: float, t1: float) -> float:
    """Expected arrivals in [t0, t1): the rate's integral (the profiles have mean 1), plus bursts."""
    if growth is None:
        poisson = base * (t1 - t0)
    else:
        t, m = _grid(growth, t0, t1)
        with np.errstate(over="ignore", invalid="ignore"):
            poisson = base * float(np.sum((m[1:] + m[:-1]) / 2 * np.diff(t)))
    return poisson + _bursts(spec, growth, t0, t1)


def _max_mult(growth, t0: float, t1: float) -> float:
    if growth is None:
        return 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        return growth.max_multiplier(t0, t1)


def _bursts(spec: SyntheticWorkload, growth, t0: float, t1: float) -> float:
    bursts = spec.arrival.bursts
    if bursts is None:
        return 0.0
    first = max(t0, spec.start + bursts.first)
    instants = max(0.0, (t1 - first) / bursts.every + 1.0)
    return instants * bursts.size * _max_mult(growth, t0, t1)
