"""What the simulated period costs: purchased devices amortised over the period, rented devices by the
hour, burst (on-demand) devices by the hour they were used, and the energy the cluster drew. Device
prices only: servers, network and buildings are not counted (the profiles' list prices are per
device, and low-confidence; override them per pool)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.errors import CapsimError
from simulator.perf.profile import load_profile

SECONDS_PER_YEAR = 365.25 * 86400


@dataclass(frozen=True)
class CostRates:
    """Per pool, in scenario order: USD per second of the pool's time in service."""

    capex_usd_per_s: list[float]  # bought devices, amortised straight-line
    rental_usd_per_s: list[float]  # rented devices, paid whether busy or not
    usd_per_kwh: float
    burst_usd_per_device_s: list[float]  # burst pools: paid per device-second used (0 elsewhere)


def cost_rates(scenario) -> CostRates:
    """The scenario's cost per second of each pool's service; checked before the run so a missing
    price does not surface after hours of simulation."""
    spec = scenario.cost
    capex, rental, burst = [], [], []
    for i, pool in enumerate(scenario.cluster.pools):
        if pool.burst:
            if pool.usd_per_device_hour is None:
                raise CapsimError("a burst pool needs usd_per_device_hour (its on-demand price)",
                                  source=scenario.source, where=f"cluster.pools[{i}]")
            capex.append(0.0)
            rental.append(0.0)
            burst.append(pool.usd_per_device_hour / 3600.0)
            continue
        burst.append(0.0)
        if pool.usd_per_device_hour is not None:
            capex.append(0.0)
            rental.append(pool.devices * pool.usd_per_device_hour / 3600.0)
            continue
        price = pool.price_usd if pool.price_usd is not None else load_profile(pool.device).price_usd
        if price is None:
            raise CapsimError(f"device {pool.device!r} has no list price in its profile; give price_usd "
                              f"(to buy) or usd_per_device_hour (to rent)", source=scenario.source,
                              where=f"cluster.pools[{i}]")
        capex.append(pool.devices * price / (spec.amortization_years * SECONDS_PER_YEAR))
        rental.append(0.0)
    return CostRates(capex, rental, spec.usd_per_kwh, burst)


def pool_spans(timeline, install_at: np.ndarray, retire_at: np.ndarray) -> list[float]:
    """Seconds each pool was in service within the timeline's span: from its installation (or the
    start) to its retirement (or the end)."""
    if not len(timeline):
        return [0.0] * len(install_at)
    start, end = float(timeline["time_s"].iloc[0]), float(timeline["time_s"].iloc[-1])
    return [max(0.0, min(end, until) - max(start, since))
            for since, until in zip(install_at.tolist(), retire_at.tolist(), strict=True)]


def spend_rate_usd_per_h(rates: CostRates, time: np.ndarray, power_kw: np.ndarray,
                         install_at: np.ndarray, retire_at: np.ndarray, runs=None) -> np.ndarray:
    """The cost rate after each timeline instant: the devices of the pools in service (amortised or
    rented), the busy devices of burst pools (from `runs`: start, end, devices, pool arrays) and the
    energy drawn. Its integral over the timeline is the summary's cost_usd."""
    per_pool = np.asarray(rates.capex_usd_per_s) + np.asarray(rates.rental_usd_per_s)
    in_service = (time[:, None] >= install_at[None, :]) & (time[:, None] < retire_at[None, :])
    rate = 3600.0 * (in_service @ per_pool) + power_kw * rates.usd_per_kwh
    if runs is not None and any(rates.burst_usd_per_device_s):
        start, end, devices, pool = runs
        ended = np.isfinite(end)
        usd_per_s = devices[ended] * np.asarray(rates.burst_usd_per_device_s)[pool[ended]]
        change_at = np.concatenate([start[ended], end[ended]])
        order = np.argsort(change_at, kind="stable")
        spend = np.concatenate([[0.0], np.cumsum(np.concatenate([usd_per_s, -usd_per_s])[order])])
        rate = rate + 3600.0 * spend[np.searchsorted(change_at[order], time, side="right")]
    return rate


def period_cost(rates: CostRates, spans_s: list[float], energy_kwh: float,
                used_device_s: np.ndarray | None = None) -> dict:
    """cost_usd and its parts for pools in service `spans_s` seconds each, drawing `energy_kwh`, with
    `used_device_s` device-seconds used on each pool (what burst pools bill)."""
    capex = sum(r * s for r, s in zip(rates.capex_usd_per_s, spans_s, strict=True))
    rental = sum(r * s for r, s in zip(rates.rental_usd_per_s, spans_s, strict=True))
    burst = (float(np.dot(rates.burst_usd_per_device_s, used_device_s))
             if used_device_s is not None and any(rates.burst_usd_per_device_s) else 0.0)
    energy = energy_kwh * rates.usd_per_kwh
    cost = {"cost_usd": capex + rental + burst + energy, "capex_usd": capex, "rental_usd": rental,
            "energy_usd": energy}
    if any(rates.burst_usd_per_device_s):
        cost["burst_usd"] = burst
    return cost
