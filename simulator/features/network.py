"""Contended fabrics: a job spread over several nodes of a pool with a modelled fabric progresses at the
rate its max-min fair share of the bandwidth allows (network/fabric.py: one shared fabric, or a
fat-tree or rail fabric whose leaf and pod links are each shared, network/topology.py; a job inside
one scale-up domain of several nodes is not on it). Whenever a job joins or leaves
that fabric, the rates are shared out again and each job whose rate changed gets a new completion."""

from __future__ import annotations

from itertools import chain

import numpy as np

from simulator.engine.features import Meter, Source
from simulator.engine.timeline import seconds_above
from simulator.network.fabric import Fabric, Flow, TreeFabric, link_column, pool_fabrics
from simulator.perf.jobs import make_comm_fraction


class NetworkDelays(Meter):
    """jobs.parquet's network_delay_s (zero where the network is not modelled) and, where it is, the
    summary's network_delay_gpu_hours and network_delayed_jobs."""

    def __init__(self, modelled: bool):
        self.modelled = modelled
        self.delays: dict[int, list[float]] = {}  # job index -> [wall seconds lost, device-seconds lost]

    def add(self, index: int, seconds: float, device_seconds: float) -> None:
        if seconds > 0:
            delay = self.delays.setdefault(index, [0.0, 0.0])
            delay[0] += seconds
            delay[1] += device_seconds

    def job_columns(self, outcome) -> None:
        delay = np.zeros(len(outcome.jobs))
        if self.delays:
            index = np.fromiter(self.delays, np.int64, count=len(self.delays))
            delay[index] = [d[0] for d in self.delays.values()]
        outcome.jobs.insert(outcome.jobs.columns.get_loc("status"), "network_delay_s", delay)

    def finish(self, outcome) -> None:
        if self.modelled:
            outcome.summary.update(network_delay_gpu_hours=sum(d[1] for d in self.delays.values()) / 3600.0,
                                   network_delayed_jobs=len(self.delays))


class Fabrics(Source):
    """`fabrics[i]` is pool i's fabric or None; `comm_fraction_of(job, devices, device)` gives a job's
    traffic there (None: every job's own `comm_fraction`)."""

    def __init__(self, fabrics: list[Fabric | None], comm_fraction_of, delays: NetworkDelays):
        self.fabrics = fabrics
        self.comm_fraction_of = comm_fraction_of
        self.delays = delays
        self.sim = None

    def start(self, sim, t0: float) -> None:
        self.sim = sim

    def on_launch(self, job, alloc, work: float) -> bool:
        """A job spread over several nodes of a pool with a fabric starts its traffic there."""
        fabric = self.fabrics[alloc.pool.index]
        if fabric is None or len(alloc.nodes) < 2:
            return False
        fraction = (job.comm_fraction if self.comm_fraction_of is None
                    else self.comm_fraction_of(job, alloc.devices, alloc.pool.device))
        if not fraction:
            return False
        flow = Flow(fraction * alloc.devices * fabric.per_device_gbs, work, job.run_start)
        if not fabric.join(job, flow, alloc.nodes):
            return False
        job.flow = flow
        self._share(fabric, job.start, job, fabric.links_of(job) if isinstance(fabric, TreeFabric) else None)
        return True

    def on_release(self, job, alloc, now: float) -> None:
        flow = job.flow
        if flow is None:
            return
        flow.set_rate(flow.rate, now)  # close its account up to now
        self.delays.add(job.index, flow.delay, flow.delay * alloc.devices)
        fabric = self.fabrics[alloc.pool.index]
        # (a fat-tree's traffic so far, with the job still in it, is accounted by _share: leaving changes
        # no load in force until the re-share records the new ones)
        links = fabric.leave(job)
        job.flow = None
        self._share(fabric, now, None, links)

    def _share(self, fabric: Fabric, now: float, joined, around=None) -> None:
        """Re-share the fabric (on a fat-tree, the part connected to the links `around`); every job
        whose rate changed (and one that just `joined`) gets the completion its new rate gives, and its
        older one goes stale."""
        if isinstance(fabric, TreeFabric):
            fabric.account(now)
        reschedule(self.sim.calendar, fabric.fair_rates(around), now, joined)


def reschedule(calendar, rates: list, now: float, joined) -> None:
    """Each (job, flow, rate) of a re-share whose rate changed (or that just `joined`) runs at its new
    rate from `now`, with the completion that gives; its older one goes stale."""
    for job, flow, rate in rates:
        if rate != flow.rate or job is joined:
            flow.set_rate(rate, now)
            job.version += 1
            calendar.completion_at(flow.end_at(), job)


class FabricLinks(Meter):
    """Where pools have fat-trees or rail fabrics: jobs.parquet's network_hops (switch hops across the
    job's nodes in its last run: 0 one node or one scale-up domain, 2 one leaf or rail group, 4 through
    the spine or a pod, 6 through the core), the summary's network_busiest_links (the links that moved
    the most data: their tier, mean utilisation over the run, peak, and hours above 90%) and, for those
    links, a timeline column of their utilisation (`link_column`)."""

    TOP = 5
    HOT = 0.9  # a link above this share of its capacity is a hot spot

    def __init__(self, pools, fabrics: list):
        self.trees = [(pool.name, f) for pool, f in zip(pools, fabrics, strict=True) if isinstance(f, TreeFabric)]
        self.busiest: list[tuple[float, str, TreeFabric, int]] = []

    def job_columns(self, outcome) -> None:
        hops = np.zeros(len(outcome.jobs), dtype=np.int64)
        for _, fabric in self.trees:
            for job, h in fabric.hops.items():
                hops[job.index] = h
        outcome.jobs.insert(outcome.jobs.columns.get_loc("status"), "network_hops", hops)

    def timeline(self, builder, outcome) -> None:
        """The busiest links (every flow has left: their traffic is all counted) and their utilisation,
        changing where their shares changed."""
        links = [(gb, pool, fabric, link) for pool, fabric in self.trees for link, gb in fabric.link_seconds.items()
                 if gb > 0]
        links.sort(key=lambda item: (-item[0], item[1], item[3]))
        self.busiest = links[: self.TOP]
        # (the same floats as np.array(changes, dtype=float), without building a row per tuple)
        changes = {id(f): np.fromiter(chain.from_iterable(f.usage_changes), float, count=3 * len(f.usage_changes))
                   .reshape(-1, 3) for _, f in self.trees}
        for _, pool, fabric, link in self.busiest:
            mine = changes[id(fabric)]
            mine = mine[mine[:, 1] == link]
            times, share = mine[:, 0], mine[:, 2] / fabric.capacity[link]
            column = link_column(pool, fabric.link_name(link))
            builder.column(column, float)
            builder.changes(times, **{column: np.diff(share, prepend=0.0)})

    def finish(self, outcome) -> None:
        span = float(outcome.summary.get("makespan_s") or 0.0)
        timeline = outcome.timeline
        rows = []
        for gb, pool, fabric, link in self.busiest:
            name = fabric.link_name(link)
            column = link_column(pool, name)
            rows.append({"pool": pool, "link": name, "tier": name.split()[0], "capacity_gbs": fabric.capacity[link],
                         "tb_moved": gb / 1e3,
                         "mean_utilisation": gb / (fabric.capacity[link] * span) if span > 0 else 0.0,
                         "peak_utilisation": float(timeline[column].max()) if len(timeline) else 0.0,
                         "hours_above_90pct": seconds_above(timeline, column, self.HOT) / 3600.0})
        outcome.summary["network_busiest_links"] = rows


def build(setup) -> list:
    pools = setup.scenario.cluster.pools
    if not any(p.network for p in pools):
        return [NetworkDelays(modelled=False)]
    delays = NetworkDelays(modelled=True)
    fabrics = pool_fabrics(pools)
    meters = [delays, Fabrics(fabrics, make_comm_fraction(setup.jobs), delays)]
    if any(isinstance(f, TreeFabric) for f in fabrics):
        meters.append(FabricLinks(pools, fabrics))
    return meters
