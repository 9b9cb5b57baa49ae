"""Capacity in the units planners and vendors quote: a pool's aggregate dense peak FLOP/s by precision,
its HBM and its power, from the device profiles (hardware_profiles/*.yaml: spec.peak_tflops,
spec.memory_gib, spec.power).

Peaks are the spec sheets' dense figures (no 2:4 sparsity), the numbers behind "a 4,096-chip TPU v4
pod is 1.1 EFLOP/s BF16" (4,096 x 275 TFLOP/s). FP8 counts only devices whose profile has an FP8
peak; a cluster's FP8 figure adds the others at their 16-bit peak (what they run FP8 work at,
Profile.peak), and exists only when at least one device has FP8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.models.power import pool_power
from simulator.perf.profile import load_profile

PRECISIONS = ("bf16", "fp8")


@dataclass(frozen=True)
class PoolCapacity:
    """One pool's devices and their aggregate figures."""

    name: str
    device: str
    devices: int
    peak_pflops: dict  # precision -> aggregate dense PFLOP/s; fp8 only when the device has it
    memory_gib: float  # HBM, all devices
    idle_kw: float  # every device idle (plus the nodes' platform power; x PUE)
    busy_kw: float  # every device at TDP
    available_from: float  # seconds after the first submission (0: at the start)
    available_until: float | None
    burst: bool  # rented on demand: not owned, not in the cluster's totals

    @property
    def at_start(self) -> bool:
        """Owned and in service when the run starts."""
        return not self.burst and self.available_from <= 0


def pool_capacity(pool, idle_fraction: float = 0.15, pue: float = 1.0) -> PoolCapacity:
    """`pool`: a scenario PoolSpec (name, device, nodes, devices_per_node, available_from, ...)."""
    profile = load_profile(pool.device)
    devices = pool.nodes * pool.devices_per_node
    peaks = {p: devices * profile.peak_tflops[p] / 1000.0 for p in PRECISIONS if profile.peak_tflops.get(p)}
    power = pool_power(pool.device, pool.nodes, pool.devices_per_node, idle_fraction, pue)
    return PoolCapacity(pool.name, pool.device, devices, peaks, devices * profile.memory_gib,
                        power.base_w / 1000.0, (power.base_w + devices * power.per_busy_w) / 1000.0,
                        float(pool.available_from), pool.available_until, pool.burst_after is not None)


def scenario_capacity(scenario) -> list[PoolCapacity]:
    """Every pool of a validated scenario, in its order."""
    return [pool_capacity(p, scenario.power.idle_fraction, scenario.power.pue) for p in scenario.cluster.pools]


def total(pools: list[PoolCapacity]) -> dict:
    """The aggregate of some pools: devices, peak_pflops by precision, memory_gib, idle_kw, busy_kw.
    FP8 is there when any pool has it (the others count at their BF16 peak)."""
    peaks = {"bf16": sum(p.peak_pflops["bf16"] for p in pools)}
    if any("fp8" in p.peak_pflops for p in pools):
        peaks["fp8"] = sum(p.peak_pflops.get("fp8", p.peak_pflops["bf16"]) for p in pools)
    return {"devices": sum(p.devices for p in pools), "peak_pflops": peaks,
            "memory_gib": sum(p.memory_gib for p in pools), "idle_kw": sum(p.idle_kw for p in pools),
            "busy_kw": sum(p.busy_kw for p in pools)}


def summary_keys(pools: list[PoolCapacity]) -> dict:
    """summary.json's `peak_pflops_bf16` (and `peak_pflops_fp8`): the owned devices in service at the
    start of the run."""
    at_start = total([p for p in pools if p.at_start])
    return {f"peak_pflops_{precision}": round(value, 6) for precision, value in at_start["peak_pflops"].items()
            if not math.isnan(value)}
