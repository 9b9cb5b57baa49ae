"""Electric power of the cluster over time, from the spec power in each device's profile.

Per pool, every node draws its platform overhead (the node's maximum power less its devices' TDP:
CPUs, switches, NICs, fans), each busy device its TDP and each idle device `idle_fraction` of it;
`pue` scales IT power to facility power. Busy devices at full TDP make this an upper bound for the
busy share: training jobs often average below TDP.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.perf.profile import load_profile


@dataclass(frozen=True)
class PoolPower:
    """Watts of one pool: `base_w` with every device idle, plus `per_busy_w` for each busy device."""

    base_w: float
    per_busy_w: float


def pool_power(device: str, nodes: int, devices_per_node: int, idle_fraction: float, pue: float) -> PoolPower:
    profile = load_profile(device)
    tdp = profile.tdp_w
    idle = idle_fraction * tdp
    # The profile's node_w is for the vendor's node of profile.devices_per_node devices; a pool with
    # other node sizes gets the platform overhead in proportion.
    overhead_per_device = max(0.0, profile.node_w - profile.devices_per_node * tdp) / profile.devices_per_node
    devices = nodes * devices_per_node
    return PoolPower(base_w=pue * devices * (overhead_per_device + idle), per_busy_w=pue * (tdp - idle))
