"""A pool's scale-out fabric as a shared resource: flow-level, max-min fair bandwidth sharing.

A job spread over several nodes moves data between them: `comm_fraction` of its uncontended run time
is communication at its full injection bandwidth (devices x the device's scale-out GB/s), so on average
it asks the fabric for demand = comm_fraction x devices x scale-out GB/s. A fabric oversubscribed k:1
above the nodes carries (the pool's injection bandwidth) / k. While the demands of the jobs on it sum
to more than that, the capacity is shared max-min fairly (water-filling: no job gets more than it
asks, and no job can get more without taking from one that has less), and a job granted a share a of
its demand d moves its data, and so does its work, at rate a / d: the data a job must move per second
of work is fixed, so its progress is bounded by the bandwidth it gets.

This is the fluid model of flow-level simulators: average demands, no packet-level effects and no
collisions between the bursts of synchronised collectives, so it is optimistic where bursts of
different jobs coincide and exact where the fabric is uncontended.

A scale-up domain larger than a node (a GB200 NVL72 rack: 18 trays of 4 GPUs on one NVLink switch
fabric) is `domain_nodes` consecutive nodes: a job whose nodes all sit in one domain moves its data
over NVLink, which the performance model prices (perf/collectives.py, up to the profile's domain),
and puts nothing on the scale-out fabric. A job spanning domains uses the fabric as any other.
"""

from __future__ import annotations

import numpy as np

from simulator.network import fill
from simulator.network.maxmin import EPS, filling


class Flow:
    """A job's traffic on a fabric, and its progress through its current run at the rates it got.

    The work starts at `start`, after the run's restore, which reads from storage, not over this
    fabric: the job's demand counts from its launch, its progress from `start`."""

    __slots__ = ("demand", "rate", "since", "progressed", "length", "delay")

    def __init__(self, demand: float, length: float, start: float):
        self.demand = demand  # GB/s asked for, averaged over the run
        self.length = length  # seconds of work at full speed (checkpoint writes included)
        self.rate = 1.0  # work seconds per wall second
        self.since = start  # when the rate last changed, or the work starts
        self.progressed = 0.0  # work seconds done up to `since`
        self.delay = 0.0  # wall seconds lost to contention up to `since`

    def progress_at(self, now: float) -> float:
        return self.progressed + max(0.0, now - self.since) * self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """Account the time since the last change at the old rate, then run at `rate`."""
        elapsed = max(0.0, now - self.since)
        self.progressed += elapsed * self.rate
        self.delay += elapsed * (1.0 - self.rate)
        self.since = max(now, self.since)
        self.rate = rate

    def end_at(self) -> float:
        """When the run ends if the rate does not change again."""
        return self.since + (self.length - self.progressed) / self.rate


def in_one_domain(nodes: list[tuple[int, int]], domain_nodes: int) -> bool:
    """Whether (node, devices) pairs all sit in one scale-up domain of `domain_nodes` nodes."""
    if domain_nodes < 2:
        return False
    first = nodes[0][0] // domain_nodes
    return all(node // domain_nodes == first for node, _ in nodes)


def all_to_all(tree, nodes: list, demand: float) -> tuple[int, dict]:
    """`tree.hops` and `tree.job_loads` (all-to-all) of a job spread over `nodes` ((node, devices) pairs,
    two or more, under two or more leaves) injecting `demand` GB/s in all, split by devices: the same
    floats, summed by the same `sum` calls in the same order, and the same links in the same order, as
    FatTree's methods (network/topology.py, not compiled) give; one pass over the nodes per tier."""
    per_leaf, per_pod = tree.nodes_per_leaf, tree.leaves_per_pod
    n = len(nodes)
    devices = 0
    for _, count in nodes:
        devices += count
    leaf_members: dict = {}
    injection = []
    for node, count in nodes:
        inj = demand * count / devices
        injection.append(inj)
        leaf = node // per_leaf
        group = leaf_members.get(leaf)
        if group is None:
            leaf_members[leaf] = [inj]
        else:
            group.append(inj)
    total = sum(injection)
    loads: dict = {}
    hops = 4
    for g, injs in leaf_members.items():  # two or more leaves (the caller checked)
        inside, sent = len(injs), sum(injs)
        loads[2 * g] = sent * (n - inside) / (n - 1)
        loads[2 * g + 1] = (total - sent) * inside / (n - 1)
    if per_pod:
        pod_members: dict = {}
        for (node, _), inj in zip(nodes, injection, strict=True):
            pod = node // per_leaf // per_pod
            group = pod_members.get(pod)
            if group is None:
                pod_members[pod] = [inj]
            else:
                group.append(inj)
        if len(pod_members) > 1:
            hops = 6
            leaves = tree.leaves
            for g, injs in pod_members.items():
                inside, sent = len(injs), sum(injs)
                loads[2 * (leaves + g)] = sent * (n - inside) / (n - 1)
                loads[2 * (leaves + g) + 1] = (total - sent) * inside / (n - 1)
    return hops, loads


def link_load(on: dict, shares) -> float:
    """A link's load: over the flows crossing it (`on`: job -> GB/s at full demand, in the order they
    joined), each one's GB/s times its granted fraction (`shares`: job -> fraction, 1 where absent; all
    1 when None), added in that order from 0.0 as IEEE doubles (load x 1.0 is load). Not Python's
    `sum`, which from Python 3.12 compensates its rounding."""
    total = 0.0
    if shares:
        for job, load in on.items():
            share = shares.get(job, 1.0)
            total += load * share
    else:
        for load in on.values():
            total += load
    return total


class Fabric:
    """The fabric of one pool: `capacity_gbs` shared by the flows of the multi-node jobs on it, whose
    devices each inject at most `per_device_gbs`; nodes form scale-up domains of `domain_nodes`."""

    def __init__(self, capacity_gbs: float, per_device_gbs: float, domain_nodes: int = 1):
        if capacity_gbs <= 0 or per_device_gbs <= 0:
            raise ValueError(f"fabric bandwidths must be positive, got {capacity_gbs} and {per_device_gbs}")
        self.capacity = capacity_gbs
        self.per_device_gbs = per_device_gbs
        self.domain_nodes = domain_nodes
        self.flows: dict[object, Flow] = {}  # job -> its flow, in the order they joined

    def join(self, job, flow: Flow, nodes: list[tuple[int, int]]) -> bool:
        """A job spread over `nodes` ((node, devices) pairs) starts its traffic here (all of it crosses
        the one fabric), unless they sit in one scale-up domain (False: no traffic here)."""
        if in_one_domain(nodes, self.domain_nodes):
            return False
        self.flows[job] = flow
        return True

    def leave(self, job) -> None:
        del self.flows[job]

    def fair_rates(self, around=None) -> list[tuple[object, Flow, float]]:
        """(job, flow, rate) for every flow under max-min fair sharing of the capacity (one link that
        every flow crosses: `around` changes nothing)."""
        flows = list(self.flows.items())
        left, waiting = self.capacity, len(flows)
        granted = {}
        for job, flow in sorted(flows, key=lambda item: item[1].demand):  # smallest demands first
            share = left / waiting
            grant = min(flow.demand, share)
            granted[job] = grant
            left -= grant
            waiting -= 1
        return [(job, flow, min(1.0, granted[job] / flow.demand)) for job, flow in flows]


class TreeFabric:
    """A pool's fat-tree (network/topology.py): a job's traffic loads the leaf and pod links between its
    nodes, and every link is shared max-min fairly among the jobs crossing it (network/maxmin.py). A job
    whose nodes all sit under one leaf, or in one scale-up domain of `domain_nodes`, crosses no shared
    link and is never slowed.

    A link's load is a plain sum in a fixed order: over the flows crossing it, in the order they joined,
    each flow's GB/s on the link at its full demand times the fraction of its demand it is granted,
    added left to right from 0.0 as IEEE doubles (`link_load`). The same at full demand (every fraction 1)
    decides whether a link is contended. No matrix product is involved: BLAS's summation order depends
    on the CPU's kernel and on where zero rows fall, this one on nothing but the flows, so the recorded
    loads are the same bytes on any machine, pure or compiled."""

    def __init__(self, tree, per_device_gbs: float, traffic: str = "all-to-all", domain_nodes: int = 1):
        self.tree = tree
        self.domain_nodes = domain_nodes
        self.per_device_gbs = per_device_gbs
        self.traffic = traffic
        self.capacity = tree.capacities()
        self._links = list(self.capacity)  # column order of the arrays below
        self._column = {link: j for j, link in enumerate(self._links)}
        self._cap = np.array([self.capacity[link] for link in self._links])
        self._cap_list = self._cap.tolist()
        from simulator.network.topology import FatTree

        kind = type(tree)  # all_to_all repeats FatTree's hops and all-to-all loads: only for its own methods
        self._a2a = traffic == "all-to-all" and all(
            getattr(kind, name) is getattr(FatTree, name) for name in ("hops", "job_loads", "leaf_of", "pod_of"))
        self.flows: dict[object, Flow] = {}
        self.loads: dict[object, dict[int, float]] = {}  # job -> GB/s per link at its full demand
        # Per column, the flows crossing it in the order they joined: job -> GB/s at its full demand.
        self._crossing: list[dict] = [{} for _ in self._links]
        self._full = [0.0] * len(self._links)  # each column's load with every flow at its demand (`link_load`)
        self._over = 0  # the columns whose `_full` exceeds their capacity, as the bits of an int
        self._shares: dict[object, float] = {}  # the flows granted less than their demand: job -> fraction
        self._joined: list = []  # the jobs joined since the last re-share
        # For the filling only (contended re-shares): job -> (demand, its columns, GB/s it puts on each per
        # GB/s granted), written the first time the job's component is contended.
        self._entries: dict[object, tuple] = {}
        self._filling = fill.Filling(self._cap_list)
        # job -> its columns as the bits of an int (bit j: column j), in the order they joined, for the
        # component search
        self._bits: dict[object, int] = {}
        self.hops: dict[object, int] = {}
        self._link_gb = [0.0] * len(self._links)  # GB moved per column (GB/s x s)
        self._used_list = [0.0] * len(self._links)  # GB/s each column carries at the rates in force
        self._carrying: set[int] = set()  # the columns whose `_used_list` is not 0
        self._since = 0.0
        # Every change of a link's carried GB/s, (time, link, GB/s): recorded on re-shares only, so the
        # busiest links' utilisation over time costs nothing between a job's start and its end.
        self.usage_changes: list[tuple[float, int, float]] = []

    @property
    def link_seconds(self) -> dict[int, float]:
        """GB moved per link (GB/s x s) so far."""
        return dict(zip(self._links, self._link_gb, strict=True))

    def join(self, job, flow: Flow, nodes: list[tuple[int, int]]) -> bool:
        # One pass for both checks: nodes in one scale-up domain (in_one_domain, inlined) move their data
        # over NVLink; nodes under one leaf (most, with rack placement) cross no shared link.
        per_domain, per_leaf = self.domain_nodes, self.tree.nodes_per_leaf
        first = nodes[0][0] if nodes else 0
        same_domain, same_leaf = per_domain > 1 and len(nodes) > 0, len(nodes) > 1
        domain = first // per_domain if same_domain else 0
        leaf = first // per_leaf  # FatTree.leaf_of, inlined
        for node, _ in nodes:
            if same_domain and node // per_domain != domain:
                same_domain = False
            if same_leaf and node // per_leaf != leaf:
                same_leaf = False
            if not (same_domain or same_leaf):
                break
        if same_domain:
            self.hops[job] = 0  # over NVLink: no scale-out switch crossed
            return False
        if same_leaf:
            self.hops[job] = 2  # up to the leaf and down (FatTree.hops)
            return False
        if self._a2a and len(nodes) > 1:  # (the leaf check above found two leaves or more)
            self.hops[job], loads = all_to_all(self.tree, nodes, flow.demand)
        else:
            self.hops[job], loads = self._tree_loads(nodes, flow.demand)
        if not loads:
            return False
        self.flows[job], self.loads[job] = flow, loads
        column, crossing, full, cap = self._column, self._crossing, self._full, self._cap_list
        bits = 0
        for link, load in loads.items():
            j = column[link]
            bits |= 1 << j
            on = crossing[j]
            on[job] = load
            full[j] = total = link_load(on, None)
            if total > cap[j]:
                self._over |= 1 << j
        self._bits[job] = bits
        self._joined.append(job)
        return True

    def _tree_loads(self, nodes: list[tuple[int, int]], demand: float) -> tuple[int, dict]:
        """The tree's own hops and job loads for a job over `nodes` (join's general case)."""
        node_ids = [n for n, _ in nodes]
        hops = self.tree.hops(node_ids)
        devices = sum(c for _, c in nodes)  # once: summing per node made a large job's join quadratic
        injection = [demand * count / devices for _, count in nodes]
        return hops, self.tree.job_loads(node_ids, injection, self.traffic)

    def leave(self, job) -> list[int]:
        """The job's traffic ends; returns the links it crossed (where the shares may change)."""
        links = list(self.loads[job])
        column, crossing, full, cap = self._column, self._crossing, self._full, self._cap_list
        for link in links:
            j = column[link]
            on = crossing[j]
            del on[job]
            full[j] = total = link_load(on, None)
            if not total > cap[j]:
                self._over &= ~(1 << j)
        del self.flows[job], self.loads[job], self._bits[job]
        self._entries.pop(job, None)
        self._shares.pop(job, None)
        if job in self._joined:
            self._joined.remove(job)
        return links

    def links_of(self, job) -> list[int]:
        return list(self.loads[job])

    def _component(self, columns) -> tuple[list, int]:
        """The flows sharing a link with `columns`, directly or through other flows (only their shares
        can change: max-min fairness separates over the link graph's connected parts), in the order
        they joined, and the columns they and `columns` cover, as the bits of an int."""
        covered = 0
        for j in columns:
            covered |= 1 << j
        bits = self._bits
        left, rest = bits, []
        while left:  # a pass over the flows not yet found, in order, taking in each one that touches them
            rest = []
            for job in left:
                mask = bits[job]
                if mask & covered:
                    covered |= mask
                else:
                    rest.append(job)
            if len(rest) == len(left):
                break
            left = rest
        if not rest:  # all found (often: a fabric's flows are mostly one connected group)
            return list(bits), covered
        outside = set(rest)
        return [job for job in bits if job not in outside], covered

    def account(self, now: float) -> None:
        """Add the traffic each link carried since the last change (at the rates then in force)."""
        elapsed = now - self._since
        if elapsed > 0:  # each column's GB + GB/s x elapsed, as numpy's whole-array sum was; + 0.0 changes none
            gb, used = self._link_gb, self._used_list
            for j in self._carrying:
                moved, gbs = gb[j], used[j]
                gb[j] = moved + gbs * elapsed
        self._since = max(self._since, now)

    def fair_rates(self, around=None) -> list[tuple[object, Flow, float]]:
        """(job, flow, rate) for the flows whose shares may have changed, max-min fair over the links
        they cross: those connected to the links `around` (every flow when None), or, while no link of
        the fabric is over its capacity at full demand and no flow is slowed, only the jobs that joined
        since the last re-share (everyone keeps its whole demand; only the loads on `around` change)."""
        joined, self._joined = self._joined, []
        flows = self.flows
        if around is not None and not self._over and not self._shares:
            # Uncontended (the common case): rates stay 1, and the loads at the rates in force are the
            # loads at full demand, already summed by join and leave.
            column = self._column
            self._record(sorted({column[link] for link in around}))
            return [(job, flows[job], 1.0) for job in joined]
        if around is None:
            jobs = list(flows)
            contended = self._over != 0
            affected = range(len(self._links))
        else:
            columns = [self._column[link] for link in around]
            jobs, covered = self._component(columns)
            contended = (covered & self._over) != 0
            affected = 0  # the links around, and those of every flow whose share changes
            for j in columns:
                affected |= 1 << j
        shares = self._fill(jobs) if contended else [1.0] * len(jobs)  # uncontended: all get their demand
        now_shares, bits = self._shares, self._bits
        for i in range(len(jobs)):
            job, share = jobs[i], shares[i]
            if share != now_shares.get(job, 1.0):
                if around is not None:
                    affected |= bits[job]
                if share == 1.0:
                    del now_shares[job]
                else:
                    now_shares[job] = share
        if around is not None:  # the set bits, lowest first (read off the binary digits, last first)
            digits = bin(affected)
            top = len(digits) - 1
            affected = []
            for k in range(top - 1):
                if digits[top - k] == "1":
                    affected.append(k)
        self._record(affected)
        return [(jobs[i], flows[jobs[i]], shares[i]) for i in range(len(jobs))]

    def _fill(self, jobs: list) -> list[float]:
        """maxmin.filling's shares for `jobs`. Compiled, fill.Filling.rows takes each flow's nonzero entries
        (no matrix to build each time; the same floats); otherwise the numpy filling takes the dense rows."""
        entries, column = self._entries, self._column
        demand, cols, vals = [], [], []
        for job in jobs:
            entry = entries.get(job)
            if entry is None:
                loads = self.loads[job]
                d = self.flows[job].demand
                entry = (d, [column[link] for link in loads], [load / d for load in loads.values()])  # IEEE division
                entries[job] = entry
            demand.append(entry[0])
            cols.append(entry[1])
            vals.append(entry[2])
        if fill.IS_COMPILED and len(self._links) > 1:
            return self._filling.rows(demand, cols, vals, 1.0 - EPS)
        per_grant = np.zeros((len(jobs), len(self._links)))
        for f in range(len(jobs)):
            per_grant[f, cols[f]] = vals[f]
        return filling(demand, per_grant, self._cap)

    def _record(self, columns) -> None:
        """Recompute the loads at the rates in force on `columns` (ascending) and record those that
        changed; the other links' flows and shares are unchanged, so are their sums."""
        shares, full, crossing = self._shares, self._full, self._crossing
        before, carrying = self._used_list, self._carrying
        links, changes, now = self._links, self.usage_changes, self._since  # account(now) ran first
        for j in columns:
            gbs = link_load(crossing[j], shares) if shares else full[j]
            was = before[j]
            if gbs != was:
                before[j] = gbs
                if not gbs:
                    carrying.discard(j)
                elif not was:  # (`carrying` holds the columns whose `was` is not 0)
                    carrying.add(j)
                changes.append((now, links[j], gbs))

    def link_name(self, link: int) -> str:
        return self.tree.link_name(link)


def link_column(pool: str, link: str) -> str:
    """The timeline column of a fat-tree link's utilisation (0-1), kept for the busiest links."""
    return f"link_utilization:{pool}/{link}"


def pool_fabrics(pool_specs) -> list[Fabric | TreeFabric | None]:
    """The fabric of each pool of a scenario (`cluster.pools`), None where its network is not modelled."""
    from simulator.network.topology import FatTree, RailTree
    from simulator.perf.profile import load_profile

    fabrics = []
    for spec in pool_specs:
        net = spec.network
        if net is None:
            fabrics.append(None)
            continue
        per_device = load_profile(spec.device).scale_out_bw_gbs
        domain = spec.scale_up_domain_nodes
        node_gbs = spec.devices_per_node * per_device
        if net.topology == "fat-tree":
            tree = FatTree(spec.nodes, net.nodes_per_leaf, node_gbs, net.oversubscription, net.leaves_per_pod,
                           net.pod_oversubscription)
            fabrics.append(TreeFabric(tree, per_device, net.traffic, domain))
        elif net.topology == "rail":
            tree = RailTree(spec.nodes, net.nodes_per_leaf, node_gbs, net.oversubscription, net.leaves_per_pod,
                            net.pod_oversubscription, rails=spec.devices_per_node)
            fabrics.append(TreeFabric(tree, per_device, net.traffic, domain))
        else:
            fabrics.append(Fabric(spec.devices * per_device / net.oversubscription, per_device, domain))
    return fabrics
