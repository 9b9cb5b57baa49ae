"""Capacity in planners' units (models/capacity.py): the summary's peak_pflops_bf16 (and
peak_pflops_fp8 where the devices have it), the aggregate dense peak of the owned devices in service
at the start of the run, from the device profiles. Burst pools are rented, as in gpus_total, and
expansions count from their installation, so neither is in it."""

from __future__ import annotations

from simulator.engine.features import Meter
from simulator.models.capacity import scenario_capacity, summary_keys


class CapacityMeter(Meter):
    def __init__(self, keys: dict):
        self.keys = keys

    def finish(self, outcome) -> None:
        outcome.summary.update(self.keys)


def build(setup) -> list:
    return [CapacityMeter(summary_keys(scenario_capacity(setup.scenario)))]
