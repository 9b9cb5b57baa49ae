"""A pool of identical nodes with an index of free capacity.

The index keeps, for every possible free-device count k, a bitmask of the nodes that have exactly k
devices free. Best fit is then "the lowest set bit of the first non-empty mask at k >= need", which
costs a few integer operations however many nodes the pool has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Allocation:
    """Devices held by one job: (node index, device count) pairs within one pool. A share of one GPU on
    a sharing pool (cluster/shared_pool.py) holds one device slot with `milli` the thousandths of it
    the job uses; 0 for whole devices."""

    pool: Pool
    nodes: list[tuple[int, int]]
    devices: int
    milli: int = 0

    @property
    def gpus(self) -> float:
        """The GPUs held, counting a share as its fraction: what GPU-hours are summed from."""
        return self.devices if not self.milli else self.milli / 1000.0


class Pool:
    __slots__ = ("name", "device", "index", "nodes", "per_node", "capacity", "free", "installed", "burst_after",
                 "in_service_from", "in_service_until", "_free_on", "_masks", "_holds", "leaf_size", "domain_size",
                 "guard")

    def __init__(self, name: str, device: str, nodes: int, per_node: int, index: int = 0, installed: bool = True,
                 burst_after: float | None = None, leaf_size: int = 0, domain_size: int = 0):
        """A pool not yet `installed` (an expansion) has every node filed as full until `install()`.
        A pool with `burst_after` is rented on demand (cloud burst): only a job that has waited that
        long is placed on it, and only after the owned pools (see Cluster). With `leaf_size` (nodes per
        leaf switch), a job of several whole nodes is placed rack-aware, and with `domain_size` (nodes
        per scale-up domain, above 1) a multi-node job inside one domain when one has room (see
        `allocate`)."""
        self.name = name
        self.leaf_size = leaf_size
        self.domain_size = domain_size
        self.burst_after = burst_after
        self.device = device
        self.index = index
        self.nodes = nodes
        self.per_node = per_node
        self.capacity = nodes * per_node
        self.installed = installed
        # When the pool enters and leaves service, in the run's time (-inf: from the start; inf: never);
        # a pool-service source sets them when the run starts.
        self.in_service_from, self.in_service_until = -math.inf, math.inf
        # Reasons each node is out of service (a failure under repair, a maintenance window): it comes
        # back when the last one ends.
        self._holds = [0] * nodes
        free_per_node = per_node if installed else 0
        self.free = nodes * free_per_node
        self._free_on = [free_per_node] * nodes
        self._masks = [0] * (per_node + 1)
        self._masks[free_per_node] = (1 << nodes) - 1
        # A feature that may veto placements here (PlacementGuard below: a site's power cap); None: none.
        self.guard = None

    def _move(self, node: int, new_free: int) -> None:
        bit = 1 << node
        self._masks[self._free_on[node]] ^= bit
        self._masks[new_free] |= bit
        self._free_on[node] = new_free

    def whole_free_nodes(self) -> int:
        return self._masks[self.per_node].bit_count()

    def can_ever_fit(self, devices: int) -> bool:
        return devices <= self.capacity

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        """Whether `allocate(devices, 'pack')` would succeed now (no side effects). `gpu_milli`, a job's
        share of one GPU, only counts on a sharing pool: here a fractional job takes a whole device."""
        if devices > self.free:
            return False
        if self.guard is not None and not self.guard.admits(self, devices, 0):
            return False
        whole, rest = divmod(devices, self.per_node)
        if whole == 0:
            return any(self._masks[k] for k in range(rest, self.per_node + 1))
        free_whole = self._masks[self.per_node].bit_count()
        if free_whole < whole:
            return False
        if rest == 0:
            return True
        # The remainder may share a partly free node or take one more whole node.
        return free_whole > whole or any(self._masks[k] for k in range(rest, self.per_node))

    def free_counts(self) -> list[int]:
        """How many nodes have exactly k devices free, for k = 0 .. per_node (see `fits_counts`)."""
        return [mask.bit_count() for mask in self._masks]

    def allocate(self, devices: int, spread: bool = False, gpu_milli: int = 0) -> Allocation | None:
        """Best fit (`pack`): a job within one node goes to the node with the fewest free devices
        that still fits it (lowest index on ties); a larger job takes whole free nodes, and any
        remainder is best-fitted like a small job. `spread` picks the emptiest node instead. With
        racks (`leaf_size`), the whole nodes come from one leaf when one has enough (the leaf with the
        fewest that do, best fit), else from the leaves with the most free nodes first, so the job
        crosses as few leaf uplinks as it can. With scale-up domains (`domain_size`), a job of more
        than one node goes first inside one domain (the one with the fewest free whole nodes that has
        room, lowest on ties), so its traffic stays on NVLink; only when none has room do the rules
        above apply. Returns None, changing nothing, when the devices are not there."""
        if devices > self.free:
            return None
        guard = self.guard
        if guard is not None and not guard.admits(self, devices, 0):
            return None
        per_node = self.per_node
        masks = self._masks
        if devices < per_node:  # the common case: one node, best fit (the index update inlined)
            order = range(per_node, devices - 1, -1) if spread else range(devices, per_node + 1)
            for k in order:
                mask = masks[k]
                if mask:
                    bit = mask & -mask
                    node = bit.bit_length() - 1
                    masks[k] = mask ^ bit
                    masks[k - devices] |= bit
                    self._free_on[node] = k - devices
                    self.free -= devices
                    if guard is not None:
                        guard.taken(self, devices)
                    return Allocation(self, [(node, devices)], devices)
            return None
        if not self.fits(devices):
            return None
        whole, rest = divmod(devices, per_node)
        if self.domain_size > 1 and devices > per_node:
            taken = self._domain_nodes(whole, rest)
            if taken is not None:
                for node, count in taken:
                    self._move(node, self._free_on[node] - count)
                self.free -= devices
                if guard is not None:
                    guard.taken(self, devices)
                return Allocation(self, taken, devices)
        mask = masks[per_node]
        taken = []
        if self.leaf_size and whole > 1:
            taken = [(node, per_node) for node in self._rack_nodes(mask, whole)]
        else:
            for _ in range(whole):
                low = mask & -mask
                mask ^= low
                taken.append((low.bit_length() - 1, per_node))
        for node, _ in taken:
            self._move(node, 0)
        if rest:
            for k in range(rest, per_node + 1):
                if masks[k]:
                    node = (masks[k] & -masks[k]).bit_length() - 1
                    self._move(node, k - rest)
                    taken.append((node, rest))
                    break
        self.free -= devices
        if guard is not None:
            guard.taken(self, devices)
        return Allocation(self, taken, devices)

    def _rack_nodes(self, mask: int, whole: int) -> list[int]:
        """`whole` nodes among the free ones (`mask`) from as few leaves as possible (see allocate)."""
        size = self.leaf_size
        leaf_bits = (1 << size) - 1
        free = []  # (free nodes in the leaf, leaf)
        for leaf in range(-(-self.nodes // size)):
            n = ((mask >> (leaf * size)) & leaf_bits).bit_count()
            if n:
                free.append((n, leaf))
        enough = [item for item in free if item[0] >= whole]
        order = [min(enough)] if enough else sorted(free, key=lambda item: (-item[0], item[1]))
        nodes = []
        for _, leaf in order:
            bits = (mask >> (leaf * size)) & leaf_bits
            while bits and len(nodes) < whole:
                low = bits & -bits
                bits ^= low
                nodes.append(leaf * size + low.bit_length() - 1)
        return nodes

    def _domain_nodes(self, whole: int, rest: int) -> list[tuple[int, int]] | None:
        """`whole` free nodes and a node with `rest` free devices (best fit, else one more whole node)
        inside one scale-up domain: the domain with the fewest free whole nodes that has room (lowest
        on ties); None when no domain has room."""
        size, per_node, masks = self.domain_size, self.per_node, self._masks
        span = (1 << size) - 1
        full = masks[per_node]
        best = None  # (free whole nodes, domain, the remainder's node or -1)
        for domain in range(-(-self.nodes // size)):
            have = ((full >> (domain * size)) & span).bit_count()
            if have < whole or (best is not None and have >= best[0]):
                continue
            part = -1
            if rest:
                for k in range(rest, per_node):
                    bits = (masks[k] >> (domain * size)) & span
                    if bits:
                        part = domain * size + (bits & -bits).bit_length() - 1
                        break
                if part < 0 and have == whole:
                    continue  # the remainder needs one more whole node
            best = (have, domain, part)
        if best is None:
            return None
        _, domain, part = best
        bits = (full >> (domain * size)) & span
        taken = []
        while len(taken) < whole + (rest > 0 and part < 0):
            low = bits & -bits
            bits ^= low
            taken.append(domain * size + low.bit_length() - 1)
        nodes = [(node, per_node) for node in taken[:whole]]
        if rest:
            nodes.append((part if part >= 0 else taken[whole], rest))
        return nodes

    def release(self, alloc: Allocation) -> None:
        free_on, masks = self._free_on, self._masks
        for node, count in alloc.nodes:
            bit = 1 << node
            was = free_on[node]
            masks[was] ^= bit
            masks[was + count] |= bit
            free_on[node] = was + count
        self.free += alloc.devices
        if self.guard is not None:
            self.guard.given_back(self, alloc.devices)

    def is_down(self, node: int) -> bool:
        return self._holds[node] > 0

    def take_down(self, node: int) -> None:
        """A node leaves service (failed, or in maintenance): filed as a node with no free device, so
        nothing is placed on it. Its jobs must have released it first."""
        if self._holds[node] == 0 and self.installed:
            if self._free_on[node] != self.per_node:
                raise RuntimeError(f"node {node} of pool {self.name!r} still holds devices")
            self._move(node, 0)
            self.free -= self.per_node
        self._holds[node] += 1

    def bring_up(self, node: int) -> None:
        """One reason for the node to be down has ended; it serves again when none is left (and the
        pool is in service)."""
        self._holds[node] -= 1
        if self._holds[node] == 0 and self.installed:
            self._move(node, self.per_node)
            self.free += self.per_node

    def install(self) -> None:
        """The pool enters service: every node not down becomes free."""
        if self.installed:
            raise RuntimeError(f"pool {self.name!r} is already installed")
        self.installed = True
        for node in range(self.nodes):
            if self._holds[node] == 0:
                self._move(node, self.per_node)
                self.free += self.per_node

    def retire(self) -> None:
        """The pool leaves service; its jobs must have released it. Nodes down stay down."""
        if not self.installed:
            raise RuntimeError(f"pool {self.name!r} is not in service")
        self.installed = False
        for node in range(self.nodes):
            if self._holds[node] == 0:
                self._move(node, 0)
                self.free -= self.per_node

    def free_devices_on(self, node: int) -> int:
        return self._free_on[node]

    def room(self) -> NodeRoom:
        """This pool as it would be once some running jobs were released, for a preempting policy to ask
        whether a job would then fit (the pool itself is not changed)."""
        return NodeRoom(self)


class NodeRoom:
    """`Pool.room`: free devices per node after releasing allocations, counted, not applied."""

    __slots__ = ("pool", "counts", "free_on", "freed")

    def __init__(self, pool: Pool):
        self.pool = pool
        self.counts = pool.free_counts()
        self.free_on: dict[int, int] = {}
        self.freed = 0  # devices released so far (a guard counts what they would give back)

    def release(self, alloc: Allocation) -> None:
        pool, counts, free_on = self.pool, self.counts, self.free_on
        for node, count in alloc.nodes:
            was = free_on.get(node)
            if was is None:
                was = pool.free_devices_on(node)
            counts[was] -= 1
            counts[was + count] += 1
            free_on[node] = was + count
        self.freed += alloc.devices

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        guard = self.pool.guard
        if guard is not None and not guard.admits(self.pool, devices, self.freed):
            return False
        return fits_counts(self.counts, self.pool.per_node, devices)


def fits_counts(counts: list[int], per_node: int, devices: int) -> bool:
    """`Pool.fits` on a pool whose nodes with exactly k devices free number `counts[k]`: what a policy
    uses to ask whether a job would fit once some running jobs were released, without releasing them."""
    whole, rest = divmod(devices, per_node)
    if whole == 0:
        return any(counts[k] for k in range(rest, per_node + 1))
    free_whole = counts[per_node]
    if free_whole < whole:
        return False
    if rest == 0:
        return True
    return free_whole > whole or any(counts[k] for k in range(rest, per_node))


class Cluster:
    """All pools. Placement tries the owned pools in scenario order, then the burst pools (rented on
    demand) in scenario order for a job that has waited long enough; a job that names a device type
    tries only that type's pools, in the same order, and a job held to a site (`set_sites`) only that
    site's."""

    def __init__(self, pools: list[Pool]):
        self.pools = pools
        self.capacity = sum(p.capacity for p in pools)
        self._placement_order = [p for p in pools if p.burst_after is None] + [p for p in pools
                                                                                if p.burst_after is not None]
        self.by_device: dict[str, list[Pool]] = {}
        for p in self._placement_order:
            self.by_device.setdefault(p.device, []).append(p)
        # The waits after which burst pools take a job: the engine calls a pass at each.
        self.burst_waits = sorted({p.burst_after for p in pools if p.burst_after is not None})
        # (site, device type or None) -> that site's pools in placement order (set_sites; none without sites)
        self.by_site: dict[tuple, list[Pool]] = {}

    @classmethod
    def from_spec(cls, spec) -> Cluster:
        return cls([_torus_pool(p, i) if getattr(p, "topology", "nodes") == "torus" else
                    _shared_pool(p, i) if getattr(p, "sharing", None) is not None else
                    Pool(p.name, p.device, p.nodes, p.devices_per_node, i, installed=p.available_from == 0,
                         burst_after=p.burst_after, leaf_size=_leaf_size(p),
                         domain_size=_domain_size(p))
                    for i, p in enumerate(spec.pools)])

    @property
    def free(self) -> int:
        return sum(p.free for p in self.pools)

    def installed_capacity(self, device: str | None = None) -> int:
        """Owned devices in service now (expansions not yet installed and burst pools excluded, failed
        nodes included): what fair shares are sized on."""
        return sum(p.capacity for p in self.candidate_pools(device) if p.installed and p.burst_after is None)

    def stop_placing(self, pool: Pool) -> None:
        """A draining pool: the jobs on it run on, but nothing new is placed there."""
        self._placement_order = [p for p in self._placement_order if p is not pool]
        self.by_device = {device: [p for p in pools if p is not pool] for device, pools in self.by_device.items()}
        self.by_site = {key: [p for p in pools if p is not pool] for key, pools in self.by_site.items()}

    def set_sites(self, site_of: dict[int, str], first: frozenset = frozenset()) -> None:
        """Group the pools by site (`site_of`: pool index -> site name) for jobs held to a site; at each
        site, the burst pools whose index is in `first` are tried before its other burst pools."""
        self.by_site = {}
        order = sorted(self._placement_order, key=lambda p: p.burst_after is not None and p.index not in first)
        for p in order:
            site = site_of.get(p.index)
            if site is not None:
                self.by_site.setdefault((site, None), []).append(p)
                self.by_site.setdefault((site, p.device), []).append(p)

    def candidate_pools(self, device: str | None, site=None) -> list[Pool]:
        """The pools a job may use, in placement order (burst pools last): of its device type if it names
        one, at its site if it is held to one (a site key with no pools: none)."""
        if site is not None:
            return self.by_site.get((site, device), [])
        return self._placement_order if device is None else self.by_device.get(device, [])

    def largest_pool(self, device: str | None = None) -> int:
        return max((p.capacity for p in self.candidate_pools(device)), default=0)

    def allocate(self, devices: int, device: str | None = None, spread: bool = False,
                 queued_since: float = -math.inf, now: float = 0.0, site=None, gpu_milli: int = 0) -> Allocation | None:
        """Place `devices` on the first pool in placement order that has them; a burst pool only for a
        job queued since `queued_since` that has waited its `burst_after` by `now`. `gpu_milli`: the job's
        share of one GPU (0: whole devices), which sharing pools place on a partly used GPU."""
        for pool in self.candidate_pools(device, site):
            # a share may fit on a partly used GPU where no whole device is free
            if (pool.free >= devices or gpu_milli) and (pool.burst_after is None
                                                        or now >= queued_since + pool.burst_after):
                alloc = pool.allocate(devices, spread, gpu_milli)
                if alloc is not None:
                    return alloc
        return None

    def fits(self, devices: int, device: str | None = None, queued_since: float = -math.inf,
             now: float = 0.0, site=None, gpu_milli: int = 0) -> bool:
        return any(p.fits(devices, gpu_milli) for p in self.candidate_pools(device, site)
                   if p.burst_after is None or now >= queued_since + p.burst_after)

    def release(self, alloc: Allocation) -> None:
        alloc.pool.release(alloc)


class PlacementGuard:
    """A veto on placements, set on the pools it watches (`Pool.guard`): `admits` whether `devices` more
    may start on `pool` (with `freed` of its devices counted as given back: a preempting policy's
    what-if), and `taken` / `given_back` as devices are allocated and released there. Every allocation
    and release of a pool goes through it, whoever makes it (policies, the engine, serving)."""

    def admits(self, pool: Pool, devices: int, freed: int) -> bool:
        return True

    def taken(self, pool: Pool, devices: int) -> None:
        """`devices` were allocated on `pool`."""

    def given_back(self, pool: Pool, devices: int) -> None:
        """`devices` were released on `pool`."""


def _torus_pool(spec, index: int) -> Pool:
    """A TPU pool whose jobs take contiguous slices of a torus (cluster/torus.py)."""
    from simulator.cluster.torus import TorusPool  # torus.py builds on this module

    return TorusPool(spec.name, spec.device, spec.nodes, spec.devices_per_node, spec.torus_dims, spec.slice_shape_map,
                     index, installed=spec.available_from == 0, burst_after=spec.burst_after)


def _shared_pool(spec, index: int) -> Pool:
    """A pool whose GPUs jobs may share (cluster/shared_pool.py)."""
    from simulator.cluster.shared_pool import SharedPool  # shared_pool.py builds on this module

    return SharedPool(spec.name, spec.device, spec.nodes, spec.devices_per_node, spec.sharing.policy, index,
                      installed=spec.available_from == 0, burst_after=spec.burst_after, leaf_size=_leaf_size(spec),
                      domain_size=_domain_size(spec))


def _leaf_size(spec) -> int:
    """Nodes per leaf for rack-aware placement (a fat-tree pool with `placement: rack`), else 0."""
    net = getattr(spec, "network", None)
    if net is None or getattr(net, "placement", "pack") != "rack":
        return 0
    return int(net.nodes_per_leaf)


def _domain_size(spec) -> int:
    """Nodes per scale-up domain for domain-aware placement (a pool with a modelled network whose
    domain spans several nodes), else 0."""
    nodes = getattr(spec, "scale_up_domain_nodes", 1)
    return nodes if nodes > 1 else 0
