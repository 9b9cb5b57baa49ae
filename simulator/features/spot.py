"""Spot capacity: burst pools (rented on demand, features/burst.py) whose nodes the provider reclaims.

Each node of a spot pool is interrupted as a Poisson process of rate 1 / `node_mtbi` (one draw for the
pool at rate nodes / node_mtbi, landing on a node chosen uniformly, as features/failures.py does for
devices). An interruption of a node that runs nothing does nothing: a burst node is rented only while
used, so the process thins to rate (busy nodes) / node_mtbi. One that lands on a busy node gives
`notice`; when it has passed, every job then on the node is evicted (sim.evict) and requeued, and
restarts with the scheduler's checkpoint model: a job that had at least `checkpoint_cost` of notice
saves a checkpoint first and loses nothing, else it keeps only its last periodic checkpoint. The node
is free again at once (the job may be placed on spot capacity again): the quota stays, the instance
is replaced.

A spot pool may also have a `capacity`: the spot nodes the provider has for you, a step function of
time (AWS reclaims Spot Instances when it needs the capacity back: interruption reason "capacity",
and refuses launches with InsufficientInstanceCapacity while there is none;
docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-reasons.html). When it falls below the nodes
usable now, nodes are withdrawn: idle ones first (an idle burst node is not rented: losing it costs
nothing), highest index first, at once; then busy ones, highest index first, which get the `notice`
and are then reclaimed as an interruption reclaims them (their jobs evicted and requeued), and stay
withdrawn. Nothing is placed on a withdrawn node. When the capacity rises, notices still running are
withdrawn first (those nodes are kept), then withdrawn nodes come back, the last withdrawn first.

The summary's `spot` figures: interruptions (nodes reclaimed with work on them), jobs' interruptions,
and what the burst pools cost, spot and on-demand apart, per site (or under "all" without sites); with
a capacity, `capacity_reclaims` (busy nodes reclaimed because the capacity fell) and the timeline's
`spot_withdrawn_gpus` (devices of spot pools withdrawn).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.units import parse_duration

SECTION = "spot"
RNG_STREAM = 2  # this feature's random stream (features/__init__.py Setup.rng): fixed forever
# AWS gives a Spot Instance interruption notice two minutes before it stops or terminates the instance
# (docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html); GCP Spot VMs get 30 s.
AWS_NOTICE_S = 120.0


class CapacityStep(BaseModel):
    """From `at` on, the provider has `nodes` spot nodes of the pool for you."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    at: float = Field(ge=0, description="when, after the first submission (a duration: 6h)")
    nodes: int = Field(ge=0, description="spot nodes available from then on (at most the pool's nodes)")

    _d = field_validator("at", mode="before")(parse_duration)


class SpotPool(BaseModel):
    """Spot capacity: a burst pool whose nodes the provider interrupts."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    pool: str = Field(description="a burst pool (cluster.pools[].name with burst_after); its usd_per_device_hour "
                      "is the spot price")
    node_mtbi: float | None = Field(default=None, gt=0, description=(
        "mean time between interruptions of one node while it is rented (or give interruptions_per_node_hour)"))
    interruptions_per_node_hour: float | None = Field(default=None, gt=0, le=1e3, description=(
        "interruptions per rented node-hour (1 / node_mtbi in hours)"))
    notice: float = Field(default=AWS_NOTICE_S, ge=0, description=(
        "warning before a node is reclaimed (default 2 min, AWS's; GCP gives 30 s): a job with at least "
        "scheduler.preemption.checkpoint_cost of it checkpoints first"))
    capacity: list[CapacityStep] | None = Field(default=None, min_length=1, max_length=100_000, description=(
        "the provider's spot capacity over time, steps [{at: 0, nodes: 8}, {at: 6h, nodes: 2}, ...] (before "
        "the first: all the pool's nodes): when it falls below the nodes in use, busy nodes beyond it get the "
        "notice and are reclaimed (highest index first), and no job starts beyond it"))

    _d = field_validator("node_mtbi", "notice", mode="before")(lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _one_rate(self):
        if self.node_mtbi is not None and self.interruptions_per_node_hour is not None:
            raise ValueError("give one of node_mtbi or interruptions_per_node_hour, not both")
        if self.node_mtbi is None and self.interruptions_per_node_hour is None and self.capacity is None:
            raise ValueError("give one of node_mtbi or interruptions_per_node_hour (or a capacity)")
        if self.capacity is not None:
            at = [step.at for step in self.capacity]
            if any(b <= a for a, b in zip(at, at[1:], strict=False)):
                raise ValueError("capacity: the steps' `at` must increase")
        return self

    @property
    def mtbi_s(self) -> float:
        """Mean seconds between a node's interruptions (infinite: only the capacity reclaims nodes)."""
        if self.node_mtbi is not None:
            return self.node_mtbi
        if self.interruptions_per_node_hour is not None:
            return 3600.0 / self.interruptions_per_node_hour
        return math.inf


Spec = list[SpotPool]


class SpotInterruptions(Source, Meter):
    def __init__(self, pools: list[tuple[object, SpotPool]], rng: np.random.Generator, site_of: dict[int, str],
                 prices: dict[int, float], jobs: int):
        self.pools = pools  # (Pool, its spot settings)
        self.rng = rng
        self.site_of = site_of  # burst pool index -> its site's name ("all" without sites)
        self.prices = prices  # burst pool index -> usd per device-hour
        self.sim = None
        self._armed = [False] * len(pools)
        self.noticed: list[tuple[float, int, int]] = []  # (time, pool index, node) of notices on busy nodes
        self.interrupted = np.zeros(jobs, dtype=np.int64)  # per job: its spot interruptions
        # The provider's capacity (spot pools with `capacity`): per pool, the nodes withdrawn (in order)
        # and those under notice (node -> when noticed); (time, devices withdrawn (+) or back (-)).
        self.capacity = any(spec.capacity is not None for _, spec in pools)
        self.withdrawn: list[list[int]] = [[] for _ in pools]
        self.reclaiming: list[dict[int, float]] = [{} for _ in pools]
        self.changes: list[tuple[float, int]] = []
        self.capacity_reclaims = 0

    def next_gap(self, k: int) -> float:
        pool, spec = self.pools[k]
        return float(self.rng.exponential(spec.mtbi_s / pool.nodes))

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for k in range(len(self.pools)):
            self._arm(k, t0)
        for k, (_, spec) in enumerate(self.pools):
            if spec.capacity is not None:
                sim.calendar.at(t0 + spec.capacity[0].at, self._on_capacity, (k, 0, t0))

    def _arm(self, k: int, now: float) -> None:
        if not self._armed[k] and math.isfinite(self.pools[k][1].mtbi_s):
            self._armed[k] = True
            self.sim.calendar.at(now + self.next_gap(k), self._on_interruption, k)

    def on_launch(self, job, alloc, work: float) -> bool:
        # Re-arm a pool's process that stopped while nothing ran (a memoryless process: no bias).
        for k, (pool, _) in enumerate(self.pools):
            if alloc.pool is pool:
                self._arm(k, self.sim.now)
        return False

    def _jobs_on(self, pool, node: int) -> list:
        return sorted((j for j in self.sim.running.values()
                       if j.alloc.pool is pool and any(n == node for n, _ in j.alloc.nodes)), key=lambda j: j.index)

    def _on_interruption(self, event) -> None:
        k, sim, now = event.value, self.sim, self.sim.now
        self._armed[k] = False
        pool, spec = self.pools[k]
        node = int(self.rng.integers(pool.nodes))
        if self._jobs_on(pool, node):  # an idle node is not rented: nothing to reclaim
            self.noticed.append((now, pool.index, node))
            sim.calendar.at(now + spec.notice, self._on_reclaim, (pool, node, now))
        if any(j.alloc.pool is pool for j in sim.running.values()):
            self._arm(k, now)  # else on_launch re-arms it when work comes back

    def _on_reclaim(self, event) -> None:
        pool, node, noticed = event.value
        self._reclaim(pool, node, noticed)
        self.sim.capacity_changed(self.sim.now)

    def _reclaim(self, pool, node: int, noticed: float) -> None:
        sim, now = self.sim, self.sim.now
        cost = sim.checkpoint_cost_s
        for job in self._jobs_on(pool, node):
            self.interrupted[job.index] += 1
            sim.evict(job, now, graceful=now - max(noticed, job.start) >= cost)

    # -- the provider's capacity ---------------------------------------------------------------------
    def _on_capacity(self, event) -> None:
        k, step, t0 = event.value
        sim, now = self.sim, self.sim.now
        pool, spec = self.pools[k]
        self._set_capacity(k, spec.capacity[step].nodes, now)
        sim.capacity_changed(now)
        if step + 1 < len(spec.capacity) and (sim.running or sim.policy.queue or not sim.arrivals_done):
            sim.calendar.at(t0 + spec.capacity[step + 1].at, self._on_capacity, (k, step + 1, t0))

    def _set_capacity(self, k: int, nodes: int, now: float) -> None:
        """Withdraw or give back nodes of spot pool k until `nodes` are usable (the module's docstring)."""
        pool, spec = self.pools[k]
        withdrawn, noticed = self.withdrawn[k], self.reclaiming[k]
        usable = pool.nodes - len(withdrawn) - len(noticed)
        if nodes < usable:
            out = set(withdrawn) | set(noticed)
            left = [n for n in range(pool.nodes - 1, -1, -1) if n not in out]
            busy = {n for n, _ in (a for j in self.sim.running.values() if j.alloc.pool is pool
                                   for a in j.alloc.nodes)}
            chosen = ([n for n in left if n not in busy] + [n for n in left if n in busy])[:usable - nodes]
            for node in chosen:
                if node in busy:
                    noticed[node] = now
                    self.sim.calendar.at(now + spec.notice, self._on_capacity_reclaim, (k, node, now))
                else:
                    self._withdraw(k, node, now)
        elif nodes > usable:
            give = nodes - usable
            for node in sorted(noticed)[:give]:  # the notice is called off: the node stays
                del noticed[node]
                give -= 1
            while give and withdrawn:
                node = withdrawn.pop()
                pool.bring_up(node)
                self.changes.append((now, -pool.per_node))
                give -= 1

    def _withdraw(self, k: int, node: int, now: float) -> None:
        pool = self.pools[k][0]
        pool.take_down(node)
        self.withdrawn[k].append(node)
        self.changes.append((now, pool.per_node))

    def _on_capacity_reclaim(self, event) -> None:
        k, node, noticed = event.value
        if self.reclaiming[k].get(node) != noticed:
            return  # called off: the capacity came back during the notice
        del self.reclaiming[k][node]
        pool = self.pools[k][0]
        self.capacity_reclaims += 1
        self._reclaim(pool, node, noticed)
        self._withdraw(k, node, self.sim.now)
        self.sim.capacity_changed(self.sim.now)

    def timeline(self, builder, outcome) -> None:
        if self.capacity:
            builder.column("spot_withdrawn_gpus", np.int64)
            changes = np.array(self.changes, dtype=float).reshape(-1, 2)
            builder.changes(changes[:, 0], spot_withdrawn_gpus=changes[:, 1].astype(np.int64))

    def job_columns(self, outcome) -> None:
        jobs = outcome.jobs
        jobs.insert(jobs.columns.get_loc("status"), "spot_interruptions", self.interrupted)

    def finish(self, outcome) -> None:
        used = outcome.recorder.device_seconds_by_pool(len(outcome.cluster.pools))
        spot = {pool.index for pool, _ in self.pools}
        cost: dict[str, dict[str, float]] = {}
        for index, price in self.prices.items():
            site = cost.setdefault(self.site_of[index], {"spot_usd": 0.0, "on_demand_usd": 0.0,
                                                         "spot_gpu_hours": 0.0, "on_demand_gpu_hours": 0.0})
            kind = "spot" if index in spot else "on_demand"
            site[f"{kind}_gpu_hours"] += float(used[index]) / 3600.0
            site[f"{kind}_usd"] += float(used[index]) / 3600.0 * price
        outcome.summary["spot"] = {"interruptions": len(self.noticed),
                                   "job_interruptions": int(self.interrupted.sum()), "cloud_cost": cost}
        if self.capacity:
            outcome.summary["spot"]["capacity_reclaims"] = self.capacity_reclaims


def build(setup) -> list:
    specs = getattr(setup.scenario, SECTION, None)
    if not specs:
        return []
    scenario = setup.scenario
    by_name = {p.name: (p, spec) for p, spec in zip(setup.cluster.pools, scenario.cluster.pools, strict=True)}
    seen, pools = set(), []
    for i, spot in enumerate(specs):
        where = f"{SECTION}[{i}].pool"
        if spot.pool not in by_name:
            raise CapsimError(f"no pool named {spot.pool!r}; pools: {', '.join(by_name)}", source=scenario.source,
                              where=where)
        if spot.pool in seen:
            raise CapsimError(f"pool {spot.pool!r} is listed twice", source=scenario.source, where=where)
        seen.add(spot.pool)
        pool, spec = by_name[spot.pool]
        if spec.burst_after is None:
            raise CapsimError(f"pool {spot.pool!r} is owned; spot capacity is rented: give the pool burst_after "
                              "(and usd_per_device_hour, the spot price)", source=scenario.source, where=where)
        if spec.usd_per_device_hour is None:
            raise CapsimError(f"pool {spot.pool!r} has no usd_per_device_hour (its spot price)",
                              source=scenario.source, where=where)
        for j, step in enumerate(spot.capacity or []):
            if step.nodes > pool.nodes:
                raise CapsimError(f"capacity of {step.nodes} nodes, but pool {spot.pool!r} has {pool.nodes}",
                                  source=scenario.source, where=f"{SECTION}[{i}].capacity[{j}].nodes")
        pools.append((pool, spot))
    _check_runs_can_end(setup, pools)
    site_of = {}
    for site in getattr(scenario, "sites", None) or []:
        for name in site.pools:
            site_of[by_name[name][0].index] = site.name
    prices = {pool.index: spec.usd_per_device_hour for pool, spec in by_name.values()
              if spec.burst_after is not None and spec.usd_per_device_hour is not None}
    return [SpotInterruptions(pools, setup.rng(RNG_STREAM), {i: site_of.get(i, "all") for i in prices}, prices,
                              len(setup.jobs))]


def _check_runs_can_end(setup, pools) -> None:
    """A job interrupted, on average, before it can run its restore and one checkpoint never finishes
    (as failures.py refuses): refused up front, naming the spot pool."""
    preemption = setup.scenario.scheduler.preemption
    if preemption.checkpoint_interval is None or not len(setup.jobs):
        return
    needed = preemption.restore + preemption.checkpoint_interval + preemption.checkpoint_cost
    nodes = max(1, math.ceil(int(setup.jobs["gpus"].max()) / min(p.per_node for p, _ in pools)))
    for i, (pool, spot) in enumerate(pools):
        if math.exp(min(700.0, nodes * needed / spot.mtbi_s)) > 1e6:
            raise CapsimError(f"a job on {nodes} node(s) of spot pool {pool.name!r} is interrupted every "
                              f"{spot.mtbi_s / nodes:,.0f} s on average but keeps work only after {needed:,.0f} s "
                              "(restore + checkpoint_interval + checkpoint_cost): it would never finish",
                              source=setup.scenario.source, where=f"{SECTION}[{i}].node_mtbi")
