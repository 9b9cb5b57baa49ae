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
"""

from __future__ import annotations


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


class Fabric:
    """The fabric of one pool: `capacity_gbs` shared by the flows of the multi-node jobs on it, whose
    devices each inject at most `per_device_gbs`."""

    def __init__(self, capacity_gbs: float, per_device_gbs: float):
        if capacity_gbs <= 0 or per_device_gbs <= 0:
            raise ValueError(f"fabric bandwidths must be positive, got {capacity_gbs} and {per_device_gbs}")
        self.capacity = capacity_gbs
        self.per_device_gbs = per_device_gbs
        self.flows: dict[object, Flow] = {}  # job -> its flow, in the order they joined

    def fair_rates(self) -> list[tuple[object, Flow, float]]:
        """(job, flow, rate) for every flow under max-min fair sharing of the capacity."""
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


def pool_fabrics(pool_specs) -> list[Fabric | None]:
    """The fabric of each pool of a scenario (`cluster.pools`), None where its network is not modelled."""
    from simulator.perf.profile import load_profile

    fabrics = []
    for spec in pool_specs:
        if spec.network is None:
            fabrics.append(None)
            continue
        per_device = load_profile(spec.device).scale_out_bw_gbs
        fabrics.append(Fabric(spec.devices * per_device / spec.network.oversubscription, per_device))
    return fabrics
