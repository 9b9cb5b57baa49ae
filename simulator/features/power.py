"""Power: devices draw their busy power while a run holds them, the rest idle power, from installation."""

from __future__ import annotations

import numpy as np

from simulator.engine.features import Meter
from simulator.features.sites import site_pue
from simulator.models.power import PoolPower, pool_power


class PowerMeter(Meter):
    def __init__(self, power: list[PoolPower]):
        self.power = power

    def timeline(self, builder, outcome) -> None:
        _, _, devices, pools = builder.runs
        builder.column("power_kw", float, divisor=1000.0)  # summed in watts
        builder.per_run("power_kw", devices * np.array([p.per_busy_w for p in self.power], dtype=float)[pools])
        builder.per_pool("power_kw", np.array([p.base_w for p in self.power], dtype=float))


def build(setup) -> list:
    spec = setup.scenario.power
    pue = site_pue(setup.scenario)  # a site's own PUE for its pools (features/sites.py)
    # Burst pools are the provider's: not installed here, no power on site (it is in their price).
    return [PowerMeter([PoolPower(0.0, 0.0) if p.burst else
                        pool_power(p.device, p.nodes, p.devices_per_node, spec.idle_fraction, pue.get(p.name, spec.pue))
                        for p in setup.scenario.cluster.pools])]
