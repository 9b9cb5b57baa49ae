"""Where a job's traffic goes in a pool's scale-out fabric: a two- or three-tier fat-tree.

Nodes hang off leaf (rack) switches, `nodes_per_leaf` each; leaves connect up to a spine, directly
(two tiers) or through pods of `leaves_per_pod` leaves whose aggregation switches connect to a core
(three tiers). Every leaf has one uplink and one downlink to the tier above, each carrying its nodes'
injection bandwidth divided by the leaf's `oversubscription`; every pod likewise, divided by
`pod_oversubscription`. Node links and the switches themselves are not contended (one node's share of
a job never exceeds its own injection bandwidth, and switches are non-blocking), so the links a job
can be slowed on are those uplinks and downlinks.

A job's traffic between its nodes follows a pattern:

- `all-to-all`: every node spreads its injection evenly over the job's other nodes (the MoE expert
  all-to-all; an upper bound for ring collectives);
- `ring`: every node sends its injection to the next node in index order, the last to the first
  (NCCL's ring all-reduce, all-gather and reduce-scatter over nodes ordered by rack), so only the
  ring's edges between racks leave a leaf.

Link ids: leaf l's uplink is 2l and its downlink 2l + 1; pod p's uplink is 2 (leaves + p) and its
downlink 2 (leaves + p) + 1.

A rail-optimised fabric (`RailTree`) groups nodes instead: rail k of a group is a leaf that connects
device k of each of the group's nodes, so traffic between two nodes of a group crosses one rail leaf
and traffic between groups leaves by the rail leaves' uplinks to the spine. A node's traffic leaves
on its rails evenly (NCCL's rings and trees pair equal ranks, and PXN forwards the rest over NVLink
to the device on the destination's rail), so every flow loads the group's rail uplinks equally; and
max-min sharing of r equal parallel links, each carrying 1/r of every flow's load, grants exactly what
one link of r times the capacity grants. A rail group's rails are therefore one link pair here, and at
flow level a rail fabric is the fat-tree whose leaf is the rail group.
"""

from __future__ import annotations

from dataclasses import dataclass

PATTERNS = ("all-to-all", "ring")


@dataclass(frozen=True)
class FatTree:
    nodes: int
    nodes_per_leaf: int
    node_gbs: float  # a node's injection bandwidth (devices x the profile's scale-out GB/s)
    oversubscription: float = 1.0  # leaf: its nodes' injection / its uplink
    leaves_per_pod: int | None = None  # None: two tiers (leaves straight to the spine)
    pod_oversubscription: float = 1.0  # pod: its leaves' uplinks / its uplink

    def __post_init__(self):
        if self.nodes < 1 or self.nodes_per_leaf < 1 or (self.leaves_per_pod is not None and self.leaves_per_pod < 1):
            raise ValueError("a fat-tree needs at least one node per leaf and one leaf per pod")
        if not (self.node_gbs > 0 and self.oversubscription >= 1 and self.pod_oversubscription >= 1):
            raise ValueError("bandwidths must be positive and oversubscriptions at least 1")

    @property
    def leaves(self) -> int:
        return -(-self.nodes // self.nodes_per_leaf)

    @property
    def pods(self) -> int:
        return 0 if self.leaves_per_pod is None else -(-self.leaves // self.leaves_per_pod)

    def leaf_of(self, node: int) -> int:
        return node // self.nodes_per_leaf

    def pod_of(self, node: int) -> int:
        return self.leaf_of(node) // self.leaves_per_pod if self.leaves_per_pod else 0

    def capacities(self) -> dict[int, float]:
        """GB/s of every uplink and downlink."""
        caps = {}
        for leaf in range(self.leaves):
            nodes = min(self.nodes_per_leaf, self.nodes - leaf * self.nodes_per_leaf)
            caps[2 * leaf] = caps[2 * leaf + 1] = nodes * self.node_gbs / self.oversubscription
        for pod in range(self.pods):
            first = pod * self.leaves_per_pod
            below = sum(caps[2 * leaf] for leaf in range(first, min(first + self.leaves_per_pod, self.leaves)))
            link = 2 * (self.leaves + pod)
            caps[link] = caps[link + 1] = below / self.pod_oversubscription
        return caps

    def path(self, a: int, b: int) -> list[int]:
        """The contended links from node a to node b."""
        la, lb = self.leaf_of(a), self.leaf_of(b)
        if la == lb:
            return []
        links = [2 * la, 2 * lb + 1]
        if self.leaves_per_pod:
            pa, pb = la // self.leaves_per_pod, lb // self.leaves_per_pod
            if pa != pb:
                links += [2 * (self.leaves + pa), 2 * (self.leaves + pb) + 1]
        return links

    def hops(self, nodes: list[int]) -> int:
        """Switch hops on the longest path between two of these nodes: 0 on one node, 2 within a leaf
        (up to the leaf, down), 4 through the spine or a pod, 6 through the core."""
        if len(nodes) < 2:
            return 0
        if len({self.leaf_of(n) for n in nodes}) == 1:
            return 2
        if self.leaves_per_pod and len({self.pod_of(n) for n in nodes}) > 1:
            return 6
        return 4

    def link_name(self, link: int) -> str:
        pair, direction = link // 2, "down" if link % 2 else "up"
        if pair < self.leaves:
            return f"leaf {pair} {direction}"
        return f"pod {pair - self.leaves} {direction}"

    def job_loads(self, nodes: list[int], injection: list[float], pattern: str = "all-to-all") -> dict[int, float]:
        """GB/s the job puts on each contended link when node nodes[i] injects injection[i]."""
        if pattern not in PATTERNS:
            raise ValueError(f"traffic pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        loads: dict[int, float] = {}
        n = len(nodes)
        if n < 2:
            return loads

        if pattern == "ring":
            order = sorted(range(n), key=lambda i: nodes[i])
            for k, i in enumerate(order):
                for link in self.path(nodes[i], nodes[order[(k + 1) % n]]):
                    loads[link] = loads.get(link, 0.0) + injection[i]
            return loads
        # all-to-all, summed per group in O(n): a group (a leaf, or a pod) sends each member's injection
        # times the share of the job outside it up, and receives its share of everyone else's down
        total = sum(injection)
        groups = [(self.leaf_of, lambda g: 2 * g)]
        if self.leaves_per_pod:
            groups.append((self.pod_of, lambda g: 2 * (self.leaves + g)))
        for group_of, uplink in groups:
            members: dict[int, list[float]] = {}
            for node, inj in zip(nodes, injection, strict=True):
                members.setdefault(group_of(node), []).append(inj)
            if len(members) < 2:
                continue
            for g, injs in members.items():
                inside, sent = len(injs), sum(injs)
                loads[uplink(g)] = sent * (n - inside) / (n - 1)
                loads[uplink(g) + 1] = (total - sent) * inside / (n - 1)
        return loads


@dataclass(frozen=True)
class RailTree(FatTree):
    """A rail-optimised fabric: groups of `nodes_per_leaf` nodes, each with `rails` rail leaves (one per
    device of a node); every rail leaf's uplink carries its group's nodes x one device's GB/s /
    `oversubscription`. Its links are its groups' rails taken together (exact: see the module text),
    so the sharing is FatTree's with the group as the leaf; only the names differ."""

    rails: int = 1  # devices per node: one rail leaf per device index

    def __post_init__(self):
        super().__post_init__()
        if self.rails < 1:
            raise ValueError("a rail fabric needs at least one rail")

    def link_name(self, link: int) -> str:
        pair, direction = link // 2, "down" if link % 2 else "up"
        if pair < self.leaves:
            return f"rail group {pair} {direction} ({self.rails} rails)"
        return f"pod {pair - self.leaves} {direction}"
