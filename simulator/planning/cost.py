"""What the simulated period costs: purchased devices amortised over the period, rented devices by the
hour, and the energy the cluster drew. Device prices only: servers, network and buildings are not
counted (the profiles' list prices are per device, and low-confidence; override them per pool)."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import CapsimError
from simulator.perf.profile import load_profile

SECONDS_PER_YEAR = 365.25 * 86400


@dataclass(frozen=True)
class CostRates:
    capex_usd_per_s: float  # bought devices, amortised straight-line
    rental_usd_per_s: float  # rented devices, paid whether busy or not
    usd_per_kwh: float


def cost_rates(scenario) -> CostRates:
    """The scenario's cost per second of cluster time; checked before the run so a missing price
    does not surface after hours of simulation."""
    spec = scenario.cost
    capex = rental = 0.0
    for i, pool in enumerate(scenario.cluster.pools):
        if pool.usd_per_device_hour is not None:
            rental += pool.devices * pool.usd_per_device_hour / 3600.0
            continue
        price = pool.price_usd if pool.price_usd is not None else load_profile(pool.device).price_usd
        if price is None:
            raise CapsimError(f"device {pool.device!r} has no list price in its profile; give price_usd "
                              f"(to buy) or usd_per_device_hour (to rent)", source=scenario.source,
                              where=f"cluster.pools[{i}]")
        capex += pool.devices * price / (spec.amortization_years * SECONDS_PER_YEAR)
    return CostRates(capex, rental, spec.usd_per_kwh)


def period_cost(rates: CostRates, span_s: float, energy_kwh: float) -> dict:
    """cost_usd and its parts for `span_s` seconds of cluster time drawing `energy_kwh`."""
    capex, rental = rates.capex_usd_per_s * span_s, rates.rental_usd_per_s * span_s
    energy = energy_kwh * rates.usd_per_kwh
    return {"cost_usd": capex + rental + energy, "capex_usd": capex, "rental_usd": rental, "energy_usd": energy}
