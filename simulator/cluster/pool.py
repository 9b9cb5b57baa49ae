"""A pool of identical nodes with an index of free capacity.

The index keeps, for every possible free-device count k, a bitmask of the nodes that have exactly k
devices free. Best fit is then "the lowest set bit of the first non-empty mask at k >= need", which
costs a few integer operations however many nodes the pool has.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Allocation:
    """Devices held by one job: (node index, device count) pairs within one pool."""

    pool: Pool
    nodes: list[tuple[int, int]]
    devices: int


class Pool:
    __slots__ = ("name", "device", "index", "nodes", "per_node", "capacity", "free", "installed", "_free_on",
                 "_masks")

    def __init__(self, name: str, device: str, nodes: int, per_node: int, index: int = 0, installed: bool = True):
        """A pool not yet `installed` (an expansion) has every node filed as full until `install()`."""
        self.name = name
        self.device = device
        self.index = index
        self.nodes = nodes
        self.per_node = per_node
        self.capacity = nodes * per_node
        self.installed = installed
        free_per_node = per_node if installed else 0
        self.free = nodes * free_per_node
        self._free_on = [free_per_node] * nodes
        self._masks = [0] * (per_node + 1)
        self._masks[free_per_node] = (1 << nodes) - 1

    def _move(self, node: int, new_free: int) -> None:
        bit = 1 << node
        self._masks[self._free_on[node]] ^= bit
        self._masks[new_free] |= bit
        self._free_on[node] = new_free

    def whole_free_nodes(self) -> int:
        return self._masks[self.per_node].bit_count()

    def can_ever_fit(self, devices: int) -> bool:
        return devices <= self.capacity

    def fits(self, devices: int) -> bool:
        """Whether `allocate(devices, 'pack')` would succeed now (no side effects)."""
        if devices > self.free:
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

    def allocate(self, devices: int, spread: bool = False) -> Allocation | None:
        """Best fit (`pack`): a job within one node goes to the node with the fewest free devices
        that still fits it (lowest index on ties); a larger job takes whole free nodes, and any
        remainder is best-fitted like a small job. `spread` picks the emptiest node instead.
        Returns None, changing nothing, when the devices are not there."""
        if devices > self.free:
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
                    return Allocation(self, [(node, devices)], devices)
            return None
        if not self.fits(devices):
            return None
        whole, rest = divmod(devices, per_node)
        mask = masks[per_node]
        taken = []
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
        return Allocation(self, taken, devices)

    def release(self, alloc: Allocation) -> None:
        free_on, masks = self._free_on, self._masks
        for node, count in alloc.nodes:
            bit = 1 << node
            was = free_on[node]
            masks[was] ^= bit
            masks[was + count] |= bit
            free_on[node] = was + count
        self.free += alloc.devices

    def take_down(self, node: int) -> None:
        """A failed node leaves service: filed as a node with no free device, so nothing is placed on
        it. Its jobs must have released it first."""
        if self._free_on[node] != self.per_node:
            raise RuntimeError(f"node {node} of pool {self.name!r} still holds devices")
        self._move(node, 0)
        self.free -= self.per_node

    def bring_up(self, node: int) -> None:
        self._move(node, self.per_node)
        self.free += self.per_node

    def install(self) -> None:
        """The expansion enters service: every node becomes free."""
        if self.installed:
            raise RuntimeError(f"pool {self.name!r} is already installed")
        self.installed = True
        for node in range(self.nodes):
            self.bring_up(node)

    def retire(self) -> None:
        """The pool leaves service; its jobs must have released it. Nodes under repair stay down."""
        if not self.installed:
            raise RuntimeError(f"pool {self.name!r} is not in service")
        self.installed = False
        for node in range(self.nodes):
            if self._free_on[node] == self.per_node:
                self.take_down(node)

    def free_devices_on(self, node: int) -> int:
        return self._free_on[node]


class Cluster:
    """All pools; placement tries pools in scenario order unless a job names its device type."""

    def __init__(self, pools: list[Pool]):
        self.pools = pools
        self.capacity = sum(p.capacity for p in pools)
        self.by_device: dict[str, list[Pool]] = {}
        for p in pools:
            self.by_device.setdefault(p.device, []).append(p)

    @classmethod
    def from_spec(cls, spec) -> Cluster:
        return cls([Pool(p.name, p.device, p.nodes, p.devices_per_node, i, installed=p.available_from == 0)
                    for i, p in enumerate(spec.pools)])

    @property
    def free(self) -> int:
        return sum(p.free for p in self.pools)

    def installed_capacity(self, device: str | None = None) -> int:
        """Devices in service now (expansions not yet installed excluded, failed nodes included)."""
        return sum(p.capacity for p in self.candidate_pools(device) if p.installed)

    def candidate_pools(self, device: str | None) -> list[Pool]:
        return self.pools if device is None else self.by_device.get(device, [])

    def largest_pool(self, device: str | None = None) -> int:
        return max((p.capacity for p in self.candidate_pools(device)), default=0)

    def allocate(self, devices: int, device: str | None = None, spread: bool = False) -> Allocation | None:
        for pool in self.pools if device is None else self.by_device.get(device, ()):
            if pool.free >= devices:
                alloc = pool.allocate(devices, spread)
                if alloc is not None:
                    return alloc
        return None

    def fits(self, devices: int, device: str | None = None) -> bool:
        return any(p.fits(devices) for p in self.candidate_pools(device))

    def release(self, alloc: Allocation) -> None:
        alloc.pool.release(alloc)
