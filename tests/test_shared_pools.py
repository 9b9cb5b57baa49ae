"""GPU sharing in scenario runs (`sharing:` on a pool, cluster/shared_pool.py): fractional jobs share GPUs,
placed as the standalone `capsim gpu-sharing` replay places them; GPU-hours count by share; the
fragmentation meter (features/sharing.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cluster.shared_pool import SharedPool, share_milli, task_of
from simulator.cluster.sharing import FULL, SharedCluster, target_workload
from simulator.engine.features import Source
from simulator.runner import build, run

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces" / "alibaba-gpu-2023"


def scenario(nodes: int, per_node: int, policy: str = "best-fit", scheduler: str = "fifo") -> dict:
    return {"name": "share", "seed": 3,
            "cluster": {"pools": [{"name": "p", "device": "h100-sxm", "nodes": nodes, "devices_per_node": per_node,
                                   "sharing": {"policy": policy}}]},
            "scheduler": {"policy": scheduler}}


def table(rows) -> pd.DataFrame:
    """(submit, gpus, duration, fraction or None) rows as a job table."""
    return pd.DataFrame({"job_id": [f"j{i}" for i in range(len(rows))],
                         "submit_time": [float(r[0]) for r in rows], "gpus": [r[1] for r in rows],
                         "duration": [float(r[2]) for r in rows],
                         "gpu_fraction": [np.nan if r[3] is None else r[3] for r in rows]})


class Placements(Source):
    """Records where every launch went and checks that no GPU is over-allocated at any time."""

    def __init__(self):
        self.placed = []

    def on_launch(self, job, alloc, work: float) -> bool:
        pool = alloc.pool
        self.placed.append((job.id, pool.placement(alloc)))
        free = pool.sharing.gpu_free
        assert free.min() >= 0 and free.max() <= FULL  # allocated shares never exceed one GPU
        return False


def test_four_quarter_jobs_share_one_gpu_and_a_fifth_waits():
    """One GPU: four 0.25-GPU jobs start at once; the fifth starts when the first (100 s) ends."""
    jobs = table([(0, 1, 100, 0.25), (0, 1, 200, 0.25), (0, 1, 300, 0.25), (0, 1, 400, 0.25), (0, 1, 50, 0.25)])
    res = run(scenario(1, 1), jobs=jobs)
    assert res.jobs["start_time"].tolist() == [0, 0, 0, 0, 100]
    assert res.jobs["end_time"].tolist() == [100, 200, 300, 400, 150]
    assert res.timeline["busy_gpus"].tolist() == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    # 0.25 GPU each for 100 + 200 + 300 + 400 + 50 s
    assert res.summary["busy_gpu_hours"] == pytest.approx(0.25 * 1050 / 3600)
    assert res.summary["offered_gpu_hours"] == pytest.approx(0.25 * 1050 / 3600)
    assert res.summary["gpu_utilization"] == pytest.approx(0.25 * 1050 / 400)
    assert res.jobs["gpu_fraction"].tolist() == [0.25] * 5


def test_hand_worked_schedule_with_whole_and_shared_jobs():
    """One node of two GPUs, FIFO, best fit. a and b (0.5 each) fill GPU 0; c (whole) takes GPU 1; d
    (0.25, at 20 s) waits for c to end (60 s) and takes a quarter of GPU 1; e (whole, at 30 s) waits
    behind it until d leaves GPU 1 whole again (160 s): GPU 0 is half free from 100 s, which e cannot use.
    While e waits the free share it cannot use is fragmented: 0.75 GPU (60-100 s), then 1.25 (100-160 s)."""
    jobs = table([(0, 1, 100, 0.5), (0, 1, 300, 0.5), (10, 1, 50, None), (20, 1, 100, 0.25), (30, 1, 10, None)])
    spy = Placements()
    res = run(scenario(1, 2), jobs=jobs, features=[spy])
    assert res.jobs["start_time"].tolist() == [0, 0, 10, 60, 160]
    assert res.jobs["end_time"].tolist() == [100, 300, 60, 160, 170]
    assert spy.placed == [("j0", [(0, [0])]), ("j1", [(0, [0])]), ("j2", [(0, [1])]), ("j3", [(0, [1])]),
                          ("j4", [(0, [1])])]
    tl = res.timeline.set_index("time_s")
    assert tl.loc[60.0, "fragmented_gpus"] == 0.75 and tl.loc[100.0, "fragmented_gpus"] == 1.25
    assert tl.loc[160.0, "fragmented_gpus"] == 0.0 and tl["fragmented_shared_gpus"].equals(tl["fragmented_gpus"])
    assert res.summary["fragmented_gpu_hours"] == pytest.approx((0.75 * 40 + 1.25 * 60) / 3600)
    assert res.summary["fragmented_gpus_mean"] == pytest.approx((0.75 * 40 + 1.25 * 60) / 300)
    assert res.summary["busy_gpu_hours"] == pytest.approx((0.5 * 100 + 0.5 * 300 + 50 + 0.25 * 100 + 10) / 3600)


def test_stranded_whole_gpus_count_as_fragmented_not_shared():
    """Two nodes of two GPUs with one GPU each taken whole: a waiting 2-GPU job can use neither free GPU."""
    jobs = table([(0, 1, 100, None), (0, 1, 100, None), (1, 2, 10, None)])
    res = run(scenario(2, 2, "spread"), jobs=jobs)
    assert res.jobs["start_time"].tolist() == [0, 0, 100]
    tl = res.timeline.set_index("time_s")
    assert tl.loc[1.0, "fragmented_gpus"] == 2.0 and tl.loc[1.0, "fragmented_shared_gpus"] == 0.0


def _mix(rng, n: int) -> list:
    """A trace-like mix of requests: mostly shares (as in Alibaba's pod list), some whole GPUs."""
    milli = rng.choice([0, 0, 100, 250, 300, 460, 500, 500, 750], n)
    whole = rng.choice([1, 1, 1, 2, 4], n)
    return [(1, int(m)) if m else (int(w), 0) for m, w in zip(milli, whole, strict=True)]


def _standalone(requests, nodes: int, per_node: int, policy: str) -> list:
    """sharing.py's standalone placement of the same requests in order, nothing ending, up to the first
    that finds no room (the standalone turns it away; a FIFO scenario waits there)."""
    cluster = SharedCluster(np.ones(nodes), np.ones(nodes), np.full(nodes, per_node))
    tasks = [task_of(g, m) for g, m in requests]
    workload = target_workload(tasks)
    out = []
    for t in tasks:
        found = cluster.choose(t, policy, workload)
        if found is None:
            break
        cluster.take(t, *found)
        out.append([(found[0], found[1])])
    return out


def _engine_placements(requests, nodes: int, per_node: int, policy: str, duration: float) -> list:
    """The placements a scenario run makes of `requests` ((gpus, milli) each, never ending in the run)."""
    jobs = table([(i, g, duration, m / FULL if m else None) for i, (g, m) in enumerate(requests)])
    spy = Placements()
    build(scenario(nodes, per_node, policy), jobs=jobs, features=[spy]).run()
    return [p for _, p in spy.placed]


@pytest.mark.parametrize("policy", ["best-fit", "spread", "pack", "fgd"])
def test_engine_places_as_the_standalone_replay(policy):
    """Requests arriving one at a time and never ending get the same node and GPUs as sharing.py's
    standalone placement gives them."""
    requests = _mix(np.random.default_rng(5), 36)
    expected = _standalone(requests, 10, 4, policy)
    assert len(expected) >= 12
    assert _engine_placements(requests, 10, 4, policy, 1e6)[:len(expected)] == expected


@pytest.mark.skipif(not (TRACES / "openb_pod_list_default.csv").is_file(), reason="the Alibaba GPU 2023 trace is absent")
@pytest.mark.parametrize("policy", ["best-fit", "pack"])
def test_trace_slice_placed_as_the_standalone_replay(policy):
    """The first pods of the Alibaba GPU 2023 pod list (those within an 8-GPU node), nothing ending."""
    from simulator.workload.traces.alibaba2023 import load

    pods = load(TRACES / "openb_pod_list_default.csv").jobs
    pods = pods[pods["gpus"] <= 8].head(120)
    requests = [(int(g), int(m)) for g, m in zip(pods["gpus"], share_milli(pods["gpus"], pods["gpu_fraction"]),
                                                 strict=True)]
    expected = _standalone(requests, 16, 8, policy)
    assert len(expected) >= 100
    assert _engine_placements(requests, 16, 8, policy, 1e7)[:len(expected)] == expected


@pytest.mark.parametrize("policy", ["best-fit", "pack"])
def test_conservation_of_shares_and_gpu_hours(policy):
    """Under load with departures: no GPU is ever over-allocated (checked at every launch), the GPU-hours
    by share are the sum over jobs of share x run time, and busy GPUs never exceed the installed ones."""
    rng = np.random.default_rng(11)
    requests = _mix(rng, 400)
    submit = np.cumsum(rng.exponential(20.0, len(requests)))
    duration = rng.exponential(600.0, len(requests))
    jobs = table([(s, g, d, m / FULL if m else None) for s, (g, m), d in zip(submit, requests, duration, strict=True)])
    spy = Placements()
    res = run(scenario(3, 4, policy, "easy-backfill"), jobs=jobs, features=[spy])
    done = res.jobs[res.jobs["status"] == "completed"]
    assert len(done) == len(jobs)
    share = done["gpu_fraction"].fillna(done["gpus"]).to_numpy()
    ran = (done["end_time"] - done["start_time"]).to_numpy()
    assert res.summary["busy_gpu_hours"] == pytest.approx((share * ran).sum() / 3600, rel=1e-12)
    tl = res.timeline
    assert (tl["busy_gpus"] <= tl["installed_gpus"] + 1e-9).all()
    # the pool's GPUs are all free again at the end
    assert any(m for _, m in requests) and res.timeline["busy_gpus"].iloc[-1] == pytest.approx(0.0, abs=1e-9)


def test_power_and_cost_count_a_share():
    """A shared GPU draws its idle power plus the busy part in proportion to the shares on it; a burst
    pool bills the GPU-hours by share."""
    base = scenario(1, 1)
    base["cluster"]["pools"][0].update(burst_after=0, usd_per_device_hour=2.0)
    base["cluster"]["pools"].insert(0, {"name": "own", "device": "h100-sxm", "nodes": 1, "devices_per_node": 1})
    base["cost"] = {}
    jobs = table([(0, 1, 3600, None), (0, 1, 3600, 0.25), (0, 1, 3600, 0.25)])
    res = run(base, jobs=jobs)
    assert res.jobs["pool"].tolist() == ["own", "p", "p"]
    assert res.summary["burst_usd"] == pytest.approx(2.0 * 0.5)
    whole = run(base, jobs=table([(0, 1, 3600, None), (0, 1, 3600, 0.5)]))
    assert whole.summary["energy_kwh"] == pytest.approx(res.summary["energy_kwh"])


def test_fractional_jobs_take_whole_gpus_without_sharing():
    jobs = table([(0, 1, 100, 0.25), (0, 1, 100, 0.25)])
    spec = scenario(1, 1)
    del spec["cluster"]["pools"][0]["sharing"]
    res = run(spec, jobs=jobs)
    assert res.jobs["start_time"].tolist() == [0, 100]
    assert res.timeline["busy_gpus"].dtype == np.int64 and "fragmented_gpus" not in res.timeline


def test_whole_gpu_jobs_on_a_best_fit_sharing_pool_run_as_on_a_plain_pool():
    """Best fit on whole GPUs is the plain pool's best fit (fewest free devices, lowest node on ties)."""
    rng = np.random.default_rng(2)
    n = 300
    jobs = table([(s, int(g), d, None) for s, g, d in zip(np.cumsum(rng.exponential(30.0, n)),
                                                           rng.choice([1, 2, 4, 8, 16], n), rng.exponential(900.0, n),
                                                           strict=True)])
    plain = scenario(4, 8)
    del plain["cluster"]["pools"][0]["sharing"]
    a, b = run(plain, jobs=jobs), run(scenario(4, 8), jobs=jobs)
    assert a.jobs.equals(b.jobs.drop(columns="gpu_fraction"))
    assert a.timeline.equals(b.timeline.drop(columns=["fragmented_gpus", "fragmented_shared_gpus"]))


def test_a_gpu_fraction_column_changes_nothing_without_a_sharing_pool():
    """A non-fractional scenario is byte-identical whether or not the table has the column."""
    from simulator.runner import _as_scenario
    from simulator.workload.build import build_jobs

    spec = scenario(4, 8)
    del spec["cluster"]["pools"][0]["sharing"]
    spec["workload"] = [{"kind": "synthetic", "jobs": 500, "arrival": {"process": "poisson", "rate_per_hour": 40},
                         "gpus": {"choice": [1, 2, 8], "weights": [0.6, 0.2, 0.2]},
                         "duration": {"dist": "exponential", "mean": "1h"}}]
    jobs = build_jobs(_as_scenario(spec), [np.random.default_rng(1)])
    a = run(spec, jobs=jobs)
    b = run(spec, jobs=jobs.assign(gpu_fraction=0.5))
    assert a.jobs.equals(b.jobs) and a.timeline.equals(b.timeline)


def test_preemption_room_sees_shares():
    """A preempting policy's what-if (`room`) frees a share only on its own GPU."""
    pool = SharedPool("p", "h100-sxm", 1, 2, "best-fit")
    a = pool.allocate(1, gpu_milli=600)
    b = pool.allocate(1, gpu_milli=600)
    assert pool.placement(a) == [(0, [0])] and pool.placement(b) == [(0, [1])]
    assert not pool.fits(1, 500) and pool.fits(1, 400) and not pool.fits(1)
    room = pool.room()
    room.release(a)
    assert room.fits(1) and not room.fits(2) and room.fits(1, 1000 - 1)
    room.release(b)
    assert room.fits(2)
    pool.release(a)
    pool.release(b)
    assert pool.free == 2 and pool.free_counts() == [0, 0, 1]


def test_down_node_blocks_its_gpus():
    pool = SharedPool("p", "h100-sxm", 2, 2, "pack")
    pool.take_down(0)
    alloc = pool.allocate(1, gpu_milli=300)
    assert pool.placement(alloc) == [(1, [0])]
    with pytest.raises(RuntimeError):
        pool.take_down(1)  # it holds a share
    pool.release(alloc)
    pool.bring_up(0)
    assert pool.free == 4 and (pool.sharing.gpu_free == FULL).all()


def test_a_job_larger_than_a_node_takes_whole_nodes():
    pool = SharedPool("p", "h100-sxm", 3, 2, "best-fit")
    share = pool.allocate(1, gpu_milli=500)
    big = pool.allocate(4)
    assert pool.placement(share) == [(0, [0])] and [n for n, _ in pool.placement(big)] == [1, 2]
    assert pool.allocate(2) is None and pool.allocate(1) is not None
    pool.release(big)
    assert (pool.sharing.gpu_free[1:] == FULL).all() and pool.free_counts()[2] == 2


@pytest.mark.skipif(not (TRACES / "openb_pod_list_default.csv").is_file(), reason="the Alibaba GPU 2023 trace is absent")
def test_alibaba_slice_through_a_scenario():
    """A bounded replay of the trace's first pods through a scenario: shares held, GPU-hours by share."""
    spec = scenario(40, 8, "pack", "fifo")
    spec["workload"] = [{"kind": "trace", "format": "alibaba2023",
                         "path": str((TRACES / "openb_pod_list_default.csv").resolve())}]
    sim = build(spec)
    jobs = sim.context.jobs
    assert jobs["gpu_milli"].gt(0).any()
    sim.run(until=float(jobs["submit_time"].iloc[0]) + 30 * 86400.0)
    assert sim.recorder.busy_device_seconds >= 0
    # GPUs are never over-allocated, and what the pool holds is what the running jobs hold
    pool = sim.cluster.pools[0]
    held = sum(j.alloc.gpus for j in sim.running.values())
    assert pool.allocated_milli().sum() == pytest.approx(held * FULL)
    assert pool.sharing.gpu_free.min() >= 0
