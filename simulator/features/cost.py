"""Cost (models/cost.py): bought devices amortised over their time in service, rented ones by the hour,
burst devices by the hour used, and the energy; the summary's cost_usd and its parts, and the
timeline's spend rate usd_per_h."""

from __future__ import annotations

import numpy as np

from simulator.engine.features import Meter
from simulator.models.cost import CostRates, cost_rates, period_cost, pool_spans, spend_rate_usd_per_h


class CostMeter(Meter):
    def __init__(self, rates: CostRates):
        self.rates = rates

    def finish(self, outcome) -> None:
        pools, timeline, recorder = outcome.cluster.pools, outcome.timeline, outcome.recorder
        install_at = np.array([p.in_service_from for p in pools], dtype=float)
        retire_at = np.array([p.in_service_until for p in pools], dtype=float)
        burst = any(p.burst_after is not None for p in pools)
        runs = recorder.runs() if burst else None  # burst pools bill the device-hours they carried
        used = recorder.device_seconds_by_pool(len(pools)) if burst else None
        outcome.summary.update(period_cost(self.rates, pool_spans(timeline, install_at, retire_at),
                                           outcome.summary["energy_kwh"], used))
        timeline["usd_per_h"] = spend_rate_usd_per_h(self.rates, timeline["time_s"].to_numpy(dtype=float),
                                                     timeline["power_kw"].to_numpy(dtype=float), install_at,
                                                     retire_at, runs)


def build(setup) -> list:
    return [CostMeter(cost_rates(setup.scenario))] if setup.scenario.cost is not None else []
