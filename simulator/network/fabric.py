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

from simulator.network.maxmin import filling


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
    link and is never slowed."""

    def __init__(self, tree, per_device_gbs: float, traffic: str = "all-to-all", domain_nodes: int = 1):
        self.tree = tree
        self.domain_nodes = domain_nodes
        self.per_device_gbs = per_device_gbs
        self.traffic = traffic
        self.capacity = tree.capacities()
        self._links = list(self.capacity)  # column order of the arrays below
        self._column = {link: j for j, link in enumerate(self._links)}
        self._cap = np.array([self.capacity[link] for link in self._links])
        self.flows: dict[object, Flow] = {}
        self.loads: dict[object, dict[int, float]] = {}  # job -> GB/s per link at its full demand
        # Row `_slot[job]` of `_mat` is the GB/s the job puts on each column per GB/s granted, and of
        # `_dem` its demand: slots rise in the order jobs join (as `flows` is ordered), so a re-share
        # takes its flows' rows, in that order, with one `take`. `_next` is the next free slot; when
        # none is left the live rows move to the top (`_compact`).
        self._slot: dict[object, int] = {}
        self._mat = np.zeros((64, len(self._links)))
        self._dem = np.zeros(64)
        self._next = 0
        # job -> its columns as the bits of an int (bit j: column j), in the order they joined, for the
        # component search
        self._bits: dict[object, int] = {}
        self.hops: dict[object, int] = {}
        self._link_gb = np.zeros(len(self._links))  # GB moved per column (GB/s x s)
        self._used = np.zeros(len(self._links))  # GB/s each column carries at the rates in force
        self._used_list = [0.0] * len(self._links)  # the same, as Python floats
        self._cap_list = self._cap.tolist()
        self._since = 0.0
        # Every change of a link's carried GB/s, (time, link, GB/s): recorded on re-shares only, so the
        # busiest links' utilisation over time costs nothing between a job's start and its end.
        self.usage_changes: list[tuple[float, int, float]] = []

    @property
    def link_seconds(self) -> dict[int, float]:
        """GB moved per link (GB/s x s) so far."""
        return dict(zip(self._links, self._link_gb.tolist(), strict=True))

    def join(self, job, flow: Flow, nodes: list[tuple[int, int]]) -> bool:
        if in_one_domain(nodes, self.domain_nodes):
            self.hops[job] = 0  # over NVLink: no scale-out switch crossed
            return False
        if len(nodes) > 1:  # nodes under one leaf (most, with rack placement) cross no shared link
            per_leaf = self.tree.nodes_per_leaf
            leaf = nodes[0][0] // per_leaf  # FatTree.leaf_of, inlined
            for node, _ in nodes:
                if node // per_leaf != leaf:
                    break
            else:
                self.hops[job] = 2  # up to the leaf and down (FatTree.hops)
                return False
        node_ids = [n for n, _ in nodes]
        self.hops[job] = self.tree.hops(node_ids)
        devices = sum(c for _, c in nodes)  # once: summing per node made a large job's join quadratic
        injection = [flow.demand * count / devices for _, count in nodes]
        loads = self.tree.job_loads(node_ids, injection, self.traffic)
        if not loads:
            return False
        self.flows[job], self.loads[job] = flow, loads
        if self._next == len(self._dem):
            self._compact()
        slot = self._next
        self._next = slot + 1
        self._slot[job] = slot
        cols = [self._column[link] for link in loads]
        row = self._mat[slot]
        row[:] = 0.0
        demand = flow.demand
        row[cols] = [load / demand for load in loads.values()]  # IEEE division, as numpy's
        self._dem[slot] = flow.demand
        bits = 0
        for j in cols:
            bits |= 1 << j
        self._bits[job] = bits
        return True

    def _compact(self) -> None:
        """Move the live flows' rows to the top of `_mat` and `_dem` (in the order they joined), with
        room for as many again."""
        live = list(self.flows)  # the job joining now is last, its slot not yet set
        slots = [self._slot[job] for job in live[:-1]]
        size = max(64, 2 * len(live))
        mat, dem = np.zeros((size, len(self._links))), np.zeros(size)
        mat[: len(slots)] = self._mat[slots]
        dem[: len(slots)] = self._dem[slots]
        self._mat, self._dem = mat, dem
        for k, job in enumerate(live[:-1]):
            self._slot[job] = k
        self._next = len(slots)

    def leave(self, job) -> list[int]:
        """The job's traffic ends; returns the links it crossed (where the shares may change)."""
        links = list(self.loads[job])
        del self.flows[job], self.loads[job], self._slot[job], self._bits[job]
        return links

    def links_of(self, job) -> list[int]:
        return list(self.loads[job])

    def _component(self, columns) -> tuple[list, list[int]]:
        """The flows sharing a link with `columns`, directly or through other flows (only their shares
        can change: max-min fairness separates over the link graph's connected parts), in the order
        they joined, and the columns they and `columns` cover, ascending."""
        covered = 0
        for j in columns:
            covered |= 1 << j
        left = list(self._bits.items())
        while left:  # a pass over the flows not yet found, in order, taking in each one that touches them
            rest = []
            for item in left:
                if item[1] & covered:
                    covered |= item[1]
                else:
                    rest.append(item)
            if len(rest) == len(left):
                break
            left = rest
        cols = [j for j in range(covered.bit_length()) if covered >> j & 1]
        if not left:  # all found (often: a fabric's flows are mostly one connected group)
            return list(self._bits), cols
        outside = {job for job, _ in left}
        return [job for job in self._bits if job not in outside], cols

    def account(self, now: float) -> None:
        """Add the traffic each link carried since the last change (at the rates then in force)."""
        elapsed = now - self._since
        if elapsed > 0:
            self._link_gb += self._used * elapsed
        self._since = max(self._since, now)

    def fair_rates(self, around=None) -> list[tuple[object, Flow, float]]:
        """(job, flow, rate) for the flows whose shares may have changed: those connected to the links
        `around` (every flow when None), max-min fair over the links they cross."""
        if around is None:
            jobs = list(self.flows)
        else:
            jobs, columns = self._component([self._column[link] for link in around])
        flows = self.flows
        slot = self._slot
        rows = [slot[j] for j in jobs]
        per_grant = self._mat.take(rows, axis=0)  # a fresh C-contiguous array, as np.array of the rows
        dem = self._dem.take(rows)
        used = per_grant.T @ dem  # each link's load with every flow at its demand (maxmin.shares_of)
        # As Python floats from here (the same floats): a numpy call on these few dozen links costs
        # more than the loop it replaces.
        gbs = used.tolist()
        if all(map(float.__le__, gbs, self._cap_list)):
            shares = [1.0] * len(jobs)  # nothing is contended (the common case): everyone gets its demand
        else:
            shares = filling(dem.tolist(), per_grant, self._cap)
            gbs = (per_grant.T @ (np.array(shares) * dem)).tolist()
        now = self._since  # account(now) runs before every re-share
        before = self._used_list
        if around is None or len(jobs) == len(flows):  # links no flow crosses carry nothing, before and after
            changed = [j for j in range(len(gbs)) if gbs[j] != before[j]]
        else:
            changed = [j for j in columns if gbs[j] != before[j]]
        if changed:
            in_force, links, record = self._used, self._links, self.usage_changes.append
            for j in changed:
                in_force[j] = before[j] = gbs[j]
                record((now, links[j], gbs[j]))
        return [(job, flows[job], share) for job, share in zip(jobs, shares, strict=True)]

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
