"""LLM serving fleets in the run: services' replicas on the cluster's pools, serving requests on the
engine's calendar, beside the training jobs (docs/serving.md).

Each service's replicas take their devices (layout.tp each, within one node, best fit) from their pool
when the run starts, before the first scheduling pass, and hold them until the service's last request
has left; training jobs run on what is left. The pool's capacity is unchanged: gpu_utilization stays
the training jobs' busy device-time over the owned device-time, and the replicas' device-time is in
`services.<name>.replica_hours`. In this slice the replica count is fixed and the pool must be owned
and in service for the whole run (no expansion, retirement, burst or maintenance windows on it, and no
node failures in the scenario): nothing yet moves a replica off a node."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.cluster.pool import Pool
from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.models.cost import cost_rates
from simulator.models.power import PoolPower, pool_power
from simulator.perf.inference import kv_cache_bytes
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.zoo import load_model
from simulator.serving.cost import PerfCost, kv_capacity_tokens
from simulator.serving.fleet import Fleet, ServiceRuntime
from simulator.serving.requests import request_table
from simulator.serving.spec import ModelShape, Requests, Services
from simulator.workload.size import check_size

SECTIONS = {
    "services": (Services, "LLM services: a model, its replicas on a pool, their layout, scheduler and router."),
    "requests": (Requests, "Requests to the services: synthetic streams or request lists (needs services)."),
}
RNG_STREAM = 1  # this feature's random stream (features/__init__.py Setup.rng): fixed forever
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class ServicePrices:
    """What one device of a service's pool costs and draws: its share of the pool's power with every
    device idle (watts; node overhead and idle draw, models/power.py), the watts it adds while busy, and
    USD per device-second of the pool (amortised or rented; None without a `cost:` section) and per kWh."""

    idle_w: float
    busy_w: float
    usd_per_device_s: float | None = None
    usd_per_kwh: float = 0.0


class Serving(Source, Meter):
    def __init__(self, runtimes: list[ServiceRuntime], pools: list[Pool], tps: list[int], table: pd.DataFrame,
                 prices: list[ServicePrices] | None = None, slos: list | None = None):
        self.runtimes, self.pools, self.tps, self.table = runtimes, pools, tps, table
        self.prices = prices or [ServicePrices(0.0, 0.0)] * len(runtimes)
        self.slos = slos or [None] * len(runtimes)
        self.fleet: Fleet | None = None
        self.allocs: list[list] = []
        self.held: list[tuple[float, float]] = []  # per service: (devices taken at, released at)

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        for s, (pool, tp, rt) in enumerate(zip(self.pools, self.tps, self.runtimes, strict=True)):
            allocs = [pool.allocate(tp) for _ in range(rt.replicas)]
            if any(a is None for a in allocs):  # build() checked the pool can hold them all
                raise CapsimError(f"pool {pool.name!r} has no room left for the replicas", where=f"services[{s}].pool")
            self.allocs.append(allocs)
            self.held.append((t0, np.inf))
        t = self.table
        self.fleet = Fleet(sim.calendar, self.runtimes, t["arrival_s"].to_numpy(), t["prompt_tokens"].to_numpy(),
                           t["output_tokens"].to_numpy(), t["service_index"].to_numpy(), t0=t0)
        self.fleet.on_done = self._release
        self.fleet.start()

    def _release(self, s: int, now: float) -> None:
        """Service `s`'s last request has left: its replicas give their devices back."""
        for alloc in self.allocs[s]:
            alloc.pool.release(alloc)
        self.allocs[s] = []
        self.held[s] = (self.held[s][0], now)
        self.sim.capacity_changed(now)

    def timeline(self, builder, outcome) -> None:
        """serving_gpus: devices the replicas hold; serving_busy_replicas: replicas in an iteration, and
        serving_busy_gpus their devices, which draw busy power (power_kw). The timeline runs until the last
        service lets its devices go."""
        builder.column("serving_gpus", np.int64)
        builder.column("serving_busy_replicas", np.int64)
        builder.column("serving_busy_gpus", np.int64)
        held, times, sign, watts = [], [], [], []
        for s, (start, end) in enumerate(self.held):
            devices = self.tps[s] * self.runtimes[s].replicas
            held.append((start, devices))
            if np.isfinite(end):
                held.append((end, -devices))
                builder.extend(end)
            for rep in self.fleet.replicas[s]:
                t = np.asarray(rep.periods, dtype=float)  # start, end, start, ...: +tp, -tp, +tp, ...
                times.append(t)
                sign.append(np.where(np.arange(len(t)) % 2 == 0, self.tps[s], -self.tps[s]))
                watts.append(np.full(len(t), self.prices[s].busy_w))
        if held:
            h = np.array(held, dtype=float)
            builder.changes(h[:, 0], serving_gpus=h[:, 1].astype(np.int64))
        if times:
            devices = np.concatenate(sign).astype(np.int64)
            builder.changes(np.concatenate(times), serving_busy_replicas=np.sign(devices), serving_busy_gpus=devices,
                            power_kw=devices * np.concatenate(watts))

    def finish(self, outcome) -> None:
        fleet, t = self.fleet, self.table
        frame = pd.DataFrame({
            "request_id": t["request_id"].to_numpy(dtype=np.int64),
            "service": t["service"].astype(str).to_numpy(),
            "arrival_s": np.asarray(fleet.arrival, dtype=float),
            "first_token_s": np.asarray(fleet.first, dtype=float),
            "end_s": np.asarray(fleet.end, dtype=float),
            "prompt_tokens": t["prompt_tokens"].to_numpy(dtype=np.int64),
            "output_tokens": t["output_tokens"].to_numpy(dtype=np.int64),
            "replica": np.asarray(fleet.replica, dtype=np.int64),
            "status": fleet.status(),
            "preemptions": np.asarray(fleet.preemptions, dtype=np.int64),
        })
        outcome.tables["requests"] = frame
        services = {}
        for s, rt in enumerate(self.runtimes):
            services[rt.name] = service_summary(frame[frame["service"] == rt.name], rt, self.tps[s], self.held[s],
                                                fleet.replicas[s], self.prices[s], self.slos[s])
        outcome.summary["services"] = services


def service_summary(requests: pd.DataFrame, rt: ServiceRuntime, tp: int, held: tuple[float, float],
                    replicas: list, prices: ServicePrices | None = None, slo=None) -> dict:
    """One service's figures: latencies of its completed requests, throughput, the replicas' time, their
    KV occupancy, energy and cost, and with an SLO the share of requests meeting it and the goodput."""
    done = requests[requests["status"] == "completed"]
    ttft = (done["first_token_s"] - done["arrival_s"]).to_numpy()
    e2e = (done["end_s"] - done["arrival_s"]).to_numpy()
    multi = done[done["output_tokens"] > 1]
    tpot = ((multi["end_s"] - multi["first_token_s"]) / (multi["output_tokens"] - 1)).to_numpy()
    start, end = held
    span = (end - start) if np.isfinite(end) else 0.0
    tokens = int(done["output_tokens"].sum())
    out = {"requests": int(len(requests)), "requests_completed": int(len(done)),
           "requests_rejected": int((requests["status"] == "rejected").sum())}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)):
        out[f"{name}_mean_s"] = float(values.mean()) if len(values) else 0.0
        for q in PERCENTILES:
            out[f"{name}_p{q}_s"] = float(np.percentile(values, q)) if len(values) else 0.0
    out["tokens_per_s"] = tokens / span if span > 0 else 0.0
    out["output_tokens"] = tokens
    if slo is not None:
        met = (requests["status"] == "completed").to_numpy().copy()
        ttft_all = (requests["first_token_s"] - requests["arrival_s"]).to_numpy()
        gen = requests["output_tokens"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot_all = (requests["end_s"] - requests["first_token_s"]).to_numpy() / (gen - 1)
        if slo.ttft_s is not None:
            met &= ttft_all <= slo.ttft_s
        if slo.tpot_s is not None:
            met &= (gen == 1) | (tpot_all <= slo.tpot_s)
        if slo.e2e_s is not None:
            met &= (requests["end_s"] - requests["arrival_s"]).to_numpy() <= slo.e2e_s
        good = int(met.sum())
        out["slo_met"] = good
        out["slo_attainment"] = good / len(requests) if len(requests) else 0.0
        out["goodput_requests_per_s"] = good / span if span > 0 else 0.0
        out["goodput_tokens_per_s"] = float(gen[met].sum()) / span if span > 0 else 0.0
    devices = rt.replicas * tp
    busy = sum(_busy_time(r.periods) for r in replicas)  # replica-seconds in iterations
    out["replicas"] = rt.replicas
    out["replica_hours"] = rt.replicas * span / 3600.0
    out["gpu_hours"] = devices * span / 3600.0
    out["busy_fraction"] = busy / (rt.replicas * span) if span > 0 else 0.0
    out["kv_capacity_tokens"] = rt.kv_blocks * rt.block_size
    out["kv_peak_fraction"] = max((r.kv_peak for r in replicas), default=0) / rt.kv_blocks
    out["preemptions"] = int(requests["preemptions"].sum())
    out["kv_mean_fraction"] = (sum(r.kv_area for r in replicas) / (rt.replicas * rt.kv_blocks * span)
                               if span > 0 else 0.0)
    prices = prices or ServicePrices(0.0, 0.0)
    joules = devices * prices.idle_w * span + tp * prices.busy_w * busy
    out["energy_kwh"] = joules / 3.6e6
    out["mean_power_kw"] = joules / span / 1000.0 if span > 0 else 0.0
    out["energy_per_token_j"] = joules / tokens if tokens else 0.0
    if prices.usd_per_device_s is not None:
        cost = devices * span * prices.usd_per_device_s + out["energy_kwh"] * prices.usd_per_kwh
        out["cost_usd"] = cost
        out["usd_per_million_tokens"] = cost / tokens * 1e6 if tokens else 0.0
    return out


def _busy_time(periods: list[float]) -> float:
    """Seconds in busy periods [start, end, start, end, ...] (all closed by the end of the run)."""
    return sum(periods[1::2]) - sum(periods[0:len(periods) // 2 * 2:2])


def model_spec(model, source: str, where: str) -> ModelSpec:
    if isinstance(model, ModelShape):
        return ModelSpec.from_dict({k: v for k, v in model.model_dump().items() if v is not None})
    try:
        entry = load_model(model)
    except CapsimError as exc:
        raise CapsimError(exc.detail, source=source, where=where) from None
    if not hasattr(entry, "model_spec"):
        raise CapsimError(f"{model!r} is not a transformer (a serving model needs layers, heads, ...)",
                          source=source, where=where)
    return entry.model_spec()


def build(setup) -> list:
    scenario = setup.scenario
    services, requests = getattr(scenario, "services", None), getattr(scenario, "requests", None)
    if not services:
        if requests:
            raise CapsimError("requests need services to go to", source=scenario.source, where="requests")
        return []
    src = scenario.source
    names = [s.name for s in services]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CapsimError(f"service names must be unique; repeated: {', '.join(dup)}", source=src, where="services")
    if scenario.failures is not None:
        raise CapsimError("services with node failures are not modelled yet (nothing moves a replica off a "
                          "failed node)", source=src, where="services")
    pools = {p.name: p for p in setup.cluster.pools}
    specs = {p.name: p for p in scenario.cluster.pools}
    maintained = {w.pool for w in (getattr(scenario, "maintenance", None) or [])}
    scratch: dict[str, Pool] = {}
    runtimes, chosen, tps = [], [], []
    for i, svc in enumerate(services):
        at = f"services[{i}]"
        if svc.pool not in pools:
            raise CapsimError(f"no pool named {svc.pool!r}; pools: {', '.join(pools)}", source=src, where=f"{at}.pool")
        spec = specs[svc.pool]
        if spec.burst or spec.available_from > 0 or spec.available_until is not None or svc.pool in maintained:
            raise CapsimError(f"pool {svc.pool!r} is not owned and in service for the whole run (burst, expansion, "
                              "retirement or maintenance windows): replicas cannot run there yet",
                              source=src, where=f"{at}.pool")
        pool = pools[svc.pool]
        tp = svc.layout.tp
        if tp > pool.per_node:
            raise CapsimError(f"a replica of tp={tp} needs {tp} devices of one node; pool {svc.pool!r} has "
                              f"{pool.per_node} per node", source=src, where=f"{at}.layout.tp")
        if svc.replicas * tp > pool.capacity:  # before placing them one by one
            raise CapsimError(f"pool {svc.pool!r} ({pool.capacity} devices) cannot hold {svc.replicas} replicas of "
                              f"{tp} device(s)", source=src, where=f"{at}.replicas")
        room = scratch.setdefault(svc.pool, Pool(pool.name, pool.device, pool.nodes, pool.per_node))
        if any(room.allocate(tp) is None for _ in range(svc.replicas)):
            raise CapsimError(f"pool {svc.pool!r} ({pool.capacity} devices) cannot hold {svc.replicas} replicas of "
                              f"{tp} device(s) beside the services before it", source=src, where=f"{at}.replicas")
        model = model_spec(svc.model, src, f"{at}.model")
        sched = svc.scheduler
        kv_dtype = svc.layout.kv_dtype or svc.layout.dtype
        memory = load_profile(pool.device).memory_gib
        tokens, weights, budget = kv_capacity_tokens(memory, model, tp, svc.layout.dtype, kv_dtype,
                                                     sched.memory_utilization)
        if tokens < sched.block_size:
            raise CapsimError(f"a replica does not fit: {weights:.1f} GiB of weights per device leave no KV cache "
                              f"in {budget:.1f} GiB ({memory:g} GiB x memory_utilization {sched.memory_utilization:g}) "
                              f"of a {pool.device}; raise layout.tp or use fp8", source=src, where=f"{at}.layout")
        if sched.kv_tokens is not None:
            tokens = sched.kv_tokens
        cost = PerfCost(pool.device, model, tp, svc.layout.dtype, kv_dtype, svc.layout.stack)
        runtimes.append(ServiceRuntime(svc.name, svc.replicas, cost, sched.max_num_seqs, sched.max_batched_tokens,
                                       max(1, tokens // sched.block_size), sched.block_size, svc.router,
                                       sched.chunked_prefill, **runtime_options(svc, model, tp, kv_dtype, pool.device)))
        chosen.append(pool)
        tps.append(tp)
    for i, req in enumerate(requests or []):
        if req.service not in names:
            raise CapsimError(f"no service named {req.service!r}; services: {', '.join(names)}", source=src,
                              where=f"requests[{i}].service")
    sources = list(requests or [])
    rngs = setup.rng(RNG_STREAM).spawn(len(sources)) if sources else []
    table = request_table(sources, names, rngs, scenario.base_dir, src)
    if any(spec.kind == "trace" for spec in sources):  # request lists are counted once read
        check_size(scenario, requests=len(table))
    return [Serving(runtimes, chosen, tps, table, service_prices(scenario, chosen), [s.slo for s in services])]


def runtime_options(svc, model: ModelSpec, tp: int, kv_dtype: str, device: str) -> dict:
    """The fleet's paged-KV and disaggregation settings of a service: a swap copies a block's KV bytes
    per device over each device's host link; a disaggregated prompt's KV goes over each device's
    scale-out link."""
    sched, out = svc.scheduler, {}
    per_token = kv_cache_bytes(model, tp, 1, 1, kv_dtype)  # bytes per device
    if sched.kv_allocation == "paged":
        swap = None
        if sched.preemption == "swap":
            swap = per_token * sched.block_size / (sched.swap_bandwidth_gbs * 1e9)
        out.update(paged_kv=True, swap_s_per_block=swap)
    if svc.disaggregated is not None:
        d = svc.disaggregated
        out.update(disaggregated=(d.prefill_replicas, d.decode_replicas),
                   transfer_s_per_token=per_token / (load_profile(device).scale_out_bw_gbs * 1e9))
    return out


def service_prices(scenario, pools: list[Pool]) -> list[ServicePrices]:
    """Each service's device power (the power feature's, models/power.py) and price (the cost feature's,
    models/cost.py, when the scenario has `cost:`), from its pool."""
    specs = {p.name: (i, p) for i, p in enumerate(scenario.cluster.pools)}
    rates = cost_rates(scenario) if scenario.cost is not None else None
    out = []
    for pool in pools:
        i, spec = specs[pool.name]
        power: PoolPower = pool_power(spec.device, spec.nodes, spec.devices_per_node, scenario.power.idle_fraction,
                                      scenario.power.pue)
        devices = spec.nodes * spec.devices_per_node
        usd = None if rates is None else (rates.capex_usd_per_s[i] + rates.rental_usd_per_s[i]) / devices
        out.append(ServicePrices(power.base_w / devices, power.per_busy_w, usd,
                                 rates.usd_per_kwh if rates is not None else 0.0))
    return out
