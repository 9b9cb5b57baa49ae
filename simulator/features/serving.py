"""LLM serving fleets in the run: services' replicas on the cluster's pools, serving requests on the
engine's calendar, beside the training jobs (docs/serving.md).

Each service's replicas take their devices (layout.tp each, within one node, best fit) from their pool
when the run starts, before the first scheduling pass, and hold them until the service's last request
has left; training jobs run on what is left. The pool's capacity is unchanged: gpu_utilization stays
the training jobs' busy device-time over the owned device-time, and the replicas' device-time is in
`services.<name>.replica_hours`. The pool must be owned and in service for the whole run (no
expansion, retirement, burst or maintenance windows on it, and no node failures in the scenario):
nothing moves a replica off a node. A disaggregated service's groups may each run on a pool of their
own and with a layout of their own (`decode_pools`, `decode_tps`): each group's replicas take their tp
devices from their pool, priced at that pool's rates, with that pool's device's and that layout's
iteration times and KV capacity.

An autoscaled service (`replicas: {min, max}`, `autoscale:`) starts with `initial` replicas ready and
is evaluated every interval (serving/autoscale.py). A new replica takes its devices at once, evicting
training runs from one node if the pool has no room (the engine's checkpoint and restore model, as
preemptions), and is routed to after its provisioning delay (boot time + weights over the load
bandwidth). A replica scaled down drains: routed nothing more, it gives its devices back when its last
request has left, and the engine is told capacity changed. Training never takes a replica's devices:
they are allocated from the pool as a job's are.

A disaggregated service that autoscales has two scaling units, its prefill group and its decode group,
each with its own Scaler, range and busy meter, on its own signal (the group's busy time, or its own
outstanding requests: before their first token for prefill, after it for decode), placing replicas on
and releasing them from its own pool, with its own tp and provisioning delay (its layout's weights), and
evicting training from its own pool only; a service with a fixed count, or autoscaled whole, is one unit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.cluster.pool import Pool
from simulator.engine.features import Meter, Source
from simulator.errors import CapsimError
from simulator.models.cost import cost_rates
from simulator.models.power import PoolPower, pool_power
from simulator.perf.decode import kv_dtype_of
from simulator.perf.inference import kv_cache_bytes, weight_bytes
from simulator.perf.model import ModelSpec
from simulator.perf.profile import load_profile
from simulator.perf.zoo import load_model
from simulator.serving.autoscale import BusyMeter, LatencyWindow, Scaler
from simulator.serving.cost import PerfCost, kv_capacity_tokens
from simulator.serving.fleet import UNSENT, ClosedLoopFleet, Fleet, ServiceRuntime
from simulator.serving.replica import IDLE
from simulator.serving.requests import request_table
from simulator.serving.spec import ModelShape, ReplicaRange, Requests, Services
from simulator.units import format_duration
from simulator.workload.size import check_size

SECTIONS = {
    "services": (Services, "LLM services: a model, its replicas on a pool, their layout, scheduler and router."),
    "requests": (Requests, "Requests to the services: synthetic streams or request lists (needs services)."),
}
RNG_STREAM = 1  # this feature's random stream (features/__init__.py Setup.rng): fixed forever
PERCENTILES = (50, 95, 99)
LOAD_BIN_S = 1.0  # the timeline's serving load columns are averaged per second
LOAD_QUANTUM = 2.0**30  # ... and held to multiples of 1 / LOAD_QUANTUM requests
MAX_PROVISIONING_S = 86400.0  # a replica longer than this to become ready is refused (a mistyped bandwidth)


@dataclass(frozen=True)
class ServicePrices:
    """What one device of a service's pool costs and draws: its share of the pool's power with every
    device idle (watts; node overhead and idle draw, models/power.py), the watts it adds while busy, and
    USD per device-second of the pool (amortised or rented; None without a `cost:` section) and per kWh."""

    idle_w: float
    busy_w: float
    usd_per_device_s: float | None = None
    usd_per_kwh: float = 0.0


@dataclass(eq=False)
class Held:
    """One replica's devices: taken when it is placed (provisioning starts), ready `delay` later (inf: given
    back before it was ready), released when it has drained or its service is done."""

    service: int
    replica: object
    alloc: object
    taken: float
    ready: float
    released: float = np.inf
    state: str = "provisioning"  # provisioning, ready, draining, released
    unit: int = 0  # what scales it: its service, or its group of a disaggregated service (Serving.unit_service)
    tp: int = 1  # its devices


@dataclass
class Scaling:
    """An autoscaled service: its policy, provisioning delay, and what scaling did."""

    scaler: Scaler
    delay: float  # boot time + weights over the load bandwidth
    ups: int = 0
    downs: int = 0
    blocked: int = 0  # replicas a scale-up could not place (devices held by other replicas)
    preempted: int = 0  # training runs evicted to make room
    lost_device_s: float = 0.0  # their work since the last checkpoint, and the restores they will pay
    asleep: bool = False  # at rest (least replicas, idle, nothing outstanding): no evaluations until a request
    group: str | None = None  # a disaggregated service's "prefill" or "decode" group; None: the whole service
    pool: Pool | None = None  # where its replicas take their devices
    tp: int = 1  # devices per replica
    latency: LatencyWindow | None = None  # metric ttft: the times to first token it reads


def binned_mean(enter: np.ndarray, leave: np.ndarray, t0: float, width: float,
                last: float) -> tuple[np.ndarray, np.ndarray]:
    """The number in the system (+1 at each `enter` time, -1 at each `leave` time, none after `last`)
    averaged over the bins [t0 + k width, t0 + (k + 1) width) from the first event's, the last one cut at
    `last`, after which the final count holds: (bin starts, means), for the bins whose mean can differ
    from the bin before: those with an event inside and the one after each. A bin without an event has
    the count at its start as its mean, the same as the bin before it unless an event fell in that one;
    so a long quiet stretch costs no rows (a year's run with minutes of traffic a quarter would
    otherwise fill its timeline with tens of millions of unchanged seconds). Exact up to rounding: a
    bin's mean is the count at its start plus each event inside it weighted by the share of the bin
    after it."""
    times = np.concatenate([enter, leave])
    sign = np.concatenate([np.ones(len(enter)), -np.ones(len(leave))])
    first = np.floor((times.min() - t0) / width)
    top = np.floor((last - t0) / width)  # the grid's last bin; beyond it, a bin from `last` if that is later
    cut = t0 + width * top < last

    def edge(i):  # bin i's start: t0 + width x i, as the same float operations give it for every bin
        return np.where(i > top, last, t0 + width * np.minimum(i, top))

    # Each event's bin: the last start at or before it (the grid start by division, moved by one where
    # the division rounded across a start); an event at `last` opens the final bin.
    i = np.clip(np.floor((times - t0) / width), first, top)
    i = np.where(edge(i) > times, i - 1, i)
    i = np.where((i < top) & (edge(i + 1) <= times), i + 1, i)
    if cut:
        i = np.where(times >= last, top + 1, i)
    final = top + 1 if cut else top  # the open bin, after which the final count holds
    closes = edge(np.minimum(i + 1, final))
    share = np.where(i < final, (closes - times) / (closes - edge(i) + (i == final)), 1.0)  # (+1: no 0 / 0)
    bins, k = np.unique(i, return_inverse=True)  # the bins with events, in order
    count_after = np.cumsum(np.bincount(k, weights=sign, minlength=len(bins)))
    at_start = np.concatenate([[0.0], count_after[:-1]])
    means = at_start + np.bincount(k, weights=sign * share, minlength=len(bins))
    after = bins + 1  # each one's next bin, where the count at its end holds, unless it has events too
    quiet = (after <= final) & ~np.isin(after, bins)
    starts = np.concatenate([bins, after[quiet]])
    values = np.concatenate([means, count_after[quiet]])
    order = np.argsort(starts, kind="stable")
    return edge(starts[order]), values[order]


class Serving(Source, Meter):
    def __init__(self, runtimes: list[ServiceRuntime], pools: list[Pool], tps: list[int], table: pd.DataFrame,
                 prices: list[ServicePrices] | None = None, slos: list | None = None,
                 autoscale: list | None = None, decode_pools: list | None = None,
                 decode_prices: list | None = None, decode_tps: list | None = None,
                 closed_loop: list[bool] | None = None):
        """`autoscale[s]` is (Autoscale spec, groups) of an autoscaled service, or None; groups: [(None, min,
        max, provisioning delay)], or for a disaggregated service [("prefill", min, max, delay), ("decode", min,
        max, delay)], each scaled on its own (a scaling unit). `decode_pools[s]`: a disaggregated service's
        decode group's pool when its groups are placed and priced each on its own (a pool or a layout of its
        own; else None), whose devices draw and cost `decode_prices[s]`, `decode_tps[s]` to a replica (pools[s]
        and tps[s] are then the prefill group's). `closed_loop[s]`: a source with closed-loop sessions sends
        service s requests (its summary counts the turns never sent)."""
        self.runtimes, self.pools, self.tps, self.table = runtimes, pools, tps, table
        self.closed_loop = closed_loop or [False] * len(runtimes)
        self.prices = prices or [ServicePrices(0.0, 0.0)] * len(runtimes)
        self.decode_pools = decode_pools or [None] * len(runtimes)
        self.decode_prices = decode_prices or [None] * len(runtimes)
        self.decode_tps = decode_tps or [None] * len(runtimes)
        self.slos = slos or [None] * len(runtimes)
        self.autoscale = autoscale or [None] * len(runtimes)
        self.fleet: Fleet | None = None
        self.holds: list[list[Held]] = []  # per service, every replica it has had (index order)
        # Per scaling unit (a service, or each group of an autoscaled disaggregated one): its service, the
        # replicas holding devices, its scaling (None: a fixed count) and its replicas' busy time.
        self.unit_service: list[int] = []
        self.units_of: list[list[int]] = []  # per service, its units
        self.live: list[list[Held]] = []
        self.scaling: list[Scaling | None] = []
        self.busy: list[BusyMeter] = []
        self.held: list[tuple[float, float]] = []  # per service: (run start, its last request left)
        self.done: list[bool] = []

    def start(self, sim, t0: float) -> None:
        self.sim = sim
        t = self.table
        columns = (sim.calendar, self.runtimes, t["arrival_s"].to_numpy(), t["prompt_tokens"].to_numpy(),
                   t["output_tokens"].to_numpy(), t["service_index"].to_numpy())
        session = t["session"].to_numpy() if "session" in t else None
        if "follows" in t:  # closed-loop sessions: their later turns are sent as the previous ones end
            fleet = ClosedLoopFleet(*columns, t0=t0, session=session, follows=t["follows"].to_numpy(),
                                    think=t["think_s"].to_numpy())
        else:
            fleet = Fleet(*columns, t0=t0, session=session)
        self.fleet = fleet
        for s, (pool, tp) in enumerate(zip(self.pools, self.tps, strict=True)):
            split, split_tp = self.decode_pools[s], self.decode_tps[s]
            places = [(split, split_tp) if split is not None and rep in fleet.disagg[s].decode else (pool, tp)
                      for rep in fleet.replicas[s]]
            allocs = [where.allocate(devices) for where, devices in places]
            if any(a is None for a in allocs):  # build() checked the pools can hold them all
                names = pool.name if split is None or split is pool else f"{pool.name} or {split.name}"
                raise CapsimError(f"pool {names!r} has no room left for the replicas (devices, or power "
                                  "under its site's enforced power cap)", where=f"services[{s}].pool")
            holds = [Held(s, rep, alloc, t0, t0, state="ready", tp=devices)
                     for rep, alloc, (_, devices) in zip(fleet.replicas[s], allocs, places, strict=True)]
            self.holds.append(holds)
            self.held.append((t0, np.inf))
            self.done.append(False)
            self.units_of.append([])
            auto = self.autoscale[s]
            if auto is None:
                self._unit(s, holds, None)
                continue
            spec, groups = auto
            for group, lo, hi, delay in groups:
                mine = holds if group is None else [h for h in holds if (h.replica in fleet.disagg[s].decode) ==
                                                    (group == "decode")]
                scaler = Scaler(spec.metric, spec.target, spec.interval, spec.window, spec.scale_down_delay, lo, hi,
                                t0, len(mine))
                where, devices = (split, split_tp) if group == "decode" and split is not None else (pool, tp)
                latency = self._latency_window(s, spec) if spec.metric == "ttft" else None
                u = self._unit(s, mine, Scaling(scaler, delay, group=group, pool=where, tp=devices, latency=latency))
                sim.calendar.at(scaler.next_time(t0), self._evaluate, u)
        self._index = {h.replica: h for holds in self.holds for h in holds}
        fleet.on_done = self._service_done
        fleet.on_starved = self._starved
        fleet.on_drained = self._drained
        fleet.start()

    def _latency_window(self, s: int, spec) -> LatencyWindow:
        """Service `s`'s requests in arrival order, but those the fleet refuses on arrival (Fleet.feed's test),
        for its metric ttft: a pass over the requests once, for the services with that metric only."""
        fleet = self.fleet
        cap, most = fleet._kv_cap[s], fleet._max_prompt[s]
        service, blocks, prompt = fleet.service, fleet.blocks, fleet.prompt
        mine = [r for r in fleet.order if service[r] == s and blocks[r] <= cap and prompt[r] <= most]
        window = spec.interval if spec.window is None else spec.window
        return LatencyWindow(mine, fleet.arrival, fleet.first, window, spec.ttft_quantile)

    def _unit(self, s: int, holds: list[Held], scaling: Scaling | None) -> int:
        """A scaling unit of service `s` holding `holds` (ready) at the start; returns its index."""
        u = len(self.unit_service)
        self.unit_service.append(s)
        self.units_of[s].append(u)
        meter = BusyMeter()
        for h in holds:
            h.unit = u
            meter.add(h.replica)
        self.live.append(list(holds))
        self.busy.append(meter)
        self.scaling.append(scaling)
        return u

    # -- autoscaling ---------------------------------------------------------------------------------------
    def _counted(self, u: int) -> int:
        """Replicas provisioning or ready (not draining): what a recommendation is compared with."""
        return sum(1 for h in self.live[u] if h.state in ("provisioning", "ready"))

    def _outstanding(self, u: int) -> int:
        """The unit's requests arrived and not finished: a disaggregated group's are those before their prefill's
        end (prefill) or after it (decode: in transfer, waiting or decoding)."""
        s, group = self.unit_service[u], self.scaling[u].group
        if group is None:
            return self.fleet.outstanding[s]
        decoding = self.fleet.disagg[s].decoding
        return decoding if group == "decode" else self.fleet.outstanding[s] - decoding

    def _evaluate(self, due) -> None:
        u, now = due.value, self.sim.now
        s = self.unit_service[u]
        if self.done[s]:
            return
        sc = self.scaling[u]
        outstanding = self._outstanding(u)
        have = self._counted(u)
        if sc.latency is not None:
            want = sc.scaler.recommend_latency(now, outstanding, sc.latency.observe(now), have)
        else:
            want = sc.scaler.recommend(now, outstanding, self.busy[u].total(now))
        keep = sc.scaler.stable(now, want)
        if want > have:
            self._scale_up(u, want - have, now)
        elif keep < have:
            self._scale_down(u, have - keep, now)
        # rests only with nothing outstanding in the whole service (a prefill may be about to send a decode KV)
        # (metric ttft: with no request in its window either, or a later evaluation could read the old ones)
        if not self.fleet.outstanding[s] and want == keep == sc.scaler.lo and self._at_rest(u) \
                and (sc.latency is None or not sc.latency.count):
            sc.asleep = True
            self.fleet.wake[s] = self._wake
            return
        self.sim.calendar.at(sc.scaler.next_time(now), self._evaluate, u)

    def _at_rest(self, u: int) -> bool:
        """At its least replicas, all ready and idle: with nothing outstanding and no larger recommendation in
        the window, every evaluation would recommend the same until a request arrives (serving/autoscale.py)."""
        live = self.live[u]
        return len(live) == self.scaling[u].scaler.lo and all(h.state == "ready" and h.replica.phase == IDLE
                                                             for h in live)

    def _wake(self, s: int, now: float) -> None:
        """A request arrived at a service at rest: the evaluations of its units at rest resume at the grid's next
        point."""
        self.fleet.wake[s] = None
        for u in self.units_of[s]:
            sc = self.scaling[u]
            if sc.asleep:
                sc.asleep = False
                self.sim.calendar.at(sc.scaler.next_time(now), self._evaluate, u)

    def _starved(self, s: int, now: float) -> None:
        """A request of service `s` waits with no replica ready: with none provisioning either, one starts now
        (a disaggregated service's groups keep one replica at least: the scenario refuses min 0)."""
        u = self.units_of[s][0]
        sc = self.scaling[u]
        if sc is None or any(h.state == "provisioning" for h in self.live[u]):
            return
        self._scale_up(u, 1, now)
        sc.scaler.woken(now, self._counted(u))
        if sc.asleep:
            self._wake(s, now)

    def _scale_up(self, u: int, n: int, now: float) -> None:
        s = self.unit_service[u]
        sc = self.scaling[u]
        pool, tp = sc.pool, sc.tp
        evicted = False
        for _ in range(n):
            alloc = pool.allocate(tp)
            if alloc is None:
                alloc = self._make_room(u, now)
                evicted = evicted or alloc is not None
            if alloc is None:
                sc.blocked += 1
                continue
            rep = self.fleet.add_replica(s, sc.group == "decode")
            held = Held(s, rep, alloc, now, now + sc.delay, unit=u, tp=tp)
            self.holds[s].append(held)
            self.live[u].append(held)
            self._index[rep] = held
            sc.ups += 1
            self.sim.calendar.at(held.ready, self._ready, held)
        if evicted:
            self.sim.capacity_changed(now)  # the evicted jobs may start elsewhere

    def _make_room(self, u: int, now: float):
        """Evict training runs from the node where that frees `tp` devices at the least cost (fewest devices
        of the runs evicted; lowest node on ties), taking the smallest and latest-started runs first; then
        place the replica. None, evicting nothing, when no node can hold it (other replicas hold it)."""
        sim, sc = self.sim, self.scaling[u]
        pool, tp = sc.pool, sc.tp
        on_node: dict[int, list] = {}
        for job in sim.running.values():
            alloc = job.alloc
            if alloc.pool is pool:
                for node, count in alloc.nodes:
                    on_node.setdefault(node, []).append((job, count))
        best = None
        for node in sorted(on_node):
            if pool.is_down(node):
                continue
            free, chosen, cost = pool.free_devices_on(node), [], 0
            for job, count in sorted(on_node[node], key=lambda jc: (jc[0].alloc.devices, -jc[0].start, jc[0].index)):
                if free >= tp:
                    break
                chosen.append(job)
                free += count
                cost += job.alloc.devices
            if free >= tp and (best is None or cost < best[0]):
                best = (cost, node, chosen)
        if best is None:
            return None
        for job in best[2]:
            devices, lost = job.alloc.devices, job.lost_work
            sim.evict(job, now, graceful=sim.checkpoint_on_preempt)
            sc.preempted += 1
            sc.lost_device_s += job.lost_work - lost + sim.restore_s * devices
        return pool.allocate(tp)

    def _ready(self, due) -> None:
        held = due.value
        if held.state != "provisioning":
            return  # given back before it was ready
        held.state = "ready"
        self.busy[held.unit].add(held.replica)
        self.fleet.activate(held.service, held.replica, self.sim.now)

    def _scale_down(self, u: int, n: int, now: float) -> None:
        """Give back `n` replicas: those still provisioning first (the latest first), then ready ones with the
        fewest requests outstanding (the newest on ties), which drain: routed nothing more, they release
        their devices once their last request has left."""
        s, fleet, sc = self.unit_service[u], self.fleet, self.scaling[u]
        provisioning = [h for h in self.live[u] if h.state == "provisioning"][::-1]
        ready = sorted((h for h in self.live[u] if h.state == "ready"),
                       key=lambda h: (h.replica.outstanding, -h.replica.index))
        released = False
        for held in (provisioning + ready)[:n]:
            sc.downs += 1
            if held.state == "provisioning":
                held.ready = np.inf
                self._release(s, held, now)
                released = True
            elif fleet.drain(s, held.replica):
                self._release(s, held, now)
                released = True
            else:
                held.state = "draining"
        if released:
            self.sim.capacity_changed(now)

    def _drained(self, s: int, rep, now: float) -> None:
        """A draining replica's last request left: its devices go once its handler has closed its busy period."""
        self.sim.calendar.at(now, self._release_drained, self._index[rep])

    def _release_drained(self, due) -> None:
        held = due.value
        if held.state != "draining":
            return  # its service finished first
        s = held.service
        self._release(s, held, self.sim.now)
        self.sim.capacity_changed(self.sim.now)

    def _release(self, s: int, held: Held, now: float) -> None:
        held.alloc.pool.release(held.alloc)
        if held.state in ("ready", "draining"):
            self.busy[held.unit].remove(held.replica, now)
        held.state = "released"
        held.released = now
        self.live[held.unit].remove(held)

    def _service_done(self, s: int, now: float) -> None:
        """Service `s`'s last request has left: its replicas give their devices back."""
        self.done[s] = True
        for u in self.units_of[s]:
            for held in list(self.live[u]):
                if held.state == "provisioning":
                    held.ready = np.inf
                elif held.state == "draining":
                    self.fleet.forget(held.replica)
                self._release(s, held, now)
        self.held[s] = (self.held[s][0], now)
        self.sim.capacity_changed(now)

    # -- outputs --------------------------------------------------------------------------------------------
    def timeline(self, builder, outcome) -> None:
        """serving_gpus: devices the replicas hold (provisioning, ready or draining); serving_ready_replicas and
        serving_provisioning_replicas, over all services; serving_busy_replicas: replicas in an iteration, and
        serving_busy_gpus their devices, which draw busy power (power_kw); serving_requests: requests arrived and
        not finished, and serving_waiting_requests: those without their first token yet, over all services
        (rejected requests never count), each averaged over every second (LOAD_BIN_S). The timeline runs
        until the last service lets its devices go."""
        builder.column("serving_gpus", np.int64)
        builder.column("serving_ready_replicas", np.int64)
        builder.column("serving_provisioning_replicas", np.int64)
        builder.column("serving_busy_replicas", np.int64)
        builder.column("serving_busy_gpus", np.int64)
        builder.column("serving_requests", float)
        builder.column("serving_waiting_requests", float)
        rows, times, sign, watts = [], [], [], []  # rows: (time, gpus, ready, provisioning)
        for s, holds in enumerate(self.holds):
            for h in holds:
                tp = h.tp
                ready = h.ready if h.ready <= h.released else np.inf
                rows.append((h.taken, tp, 0, 1))
                if np.isfinite(ready):
                    rows.append((ready, 0, 1, -1))
                if np.isfinite(h.released):
                    rows.append((h.released, -tp, -1 if np.isfinite(ready) else 0, 0 if np.isfinite(ready) else -1))
                    builder.extend(h.released)
                rep = h.replica
                t = np.asarray(rep.periods, dtype=float)  # start, end, start, ...: +tp, -tp, +tp, ...
                times.append(t)
                sign.append(np.where(np.arange(len(t)) % 2 == 0, tp, -tp))
                prices = self.prices[s] if h.alloc.pool is self.pools[s] else self.decode_prices[s]
                watts.append(np.full(len(t), prices.busy_w))
        if rows:
            h = np.array(rows, dtype=float)
            builder.changes(h[:, 0], serving_gpus=h[:, 1].astype(np.int64),
                            serving_ready_replicas=h[:, 2].astype(np.int64),
                            serving_provisioning_replicas=h[:, 3].astype(np.int64))
        if times:
            devices = np.concatenate(sign).astype(np.int64)
            builder.changes(np.concatenate(times), serving_busy_replicas=np.sign(devices), serving_busy_gpus=devices,
                            power_kw=devices * np.concatenate(watts))
        # Load, from the requests' own times (+1 at arrival, -1 at the first token or the end), averaged per
        # second: a row per request event would make a day of traffic a timeline of ~10^7 rows.
        fleet = self.fleet
        arrival = np.asarray(fleet.arrival, dtype=float)
        routed = ~np.asarray(fleet.rejected, dtype=bool) & ~np.isnan(arrival)  # NaN: a closed-loop turn unsent
        arrival = arrival[routed]
        first = np.asarray(fleet.first, dtype=float)[routed]
        end = np.asarray(fleet.end, dtype=float)[routed]
        first, end = first[np.isfinite(first)], end[np.isfinite(end)]  # unfinished: still in the system
        if len(arrival):
            t0 = float(fleet.t0)
            last = float(max(arrival.max(), first.max(initial=t0), end.max(initial=t0)))
            for column, leave in (("serving_requests", end), ("serving_waiting_requests", first)):
                starts, means = binned_mean(arrival, leave, t0, LOAD_BIN_S, last)  # one set of rows for both
                # on a grid of 2^-30 the timeline's running sum of the changes gives back each mean exactly
                means = np.round(means * LOAD_QUANTUM) / LOAD_QUANTUM
                change = np.diff(means, prepend=0.0)
                moved = change != 0.0  # (the other bins' rows would repeat the value before them)
                builder.changes(starts[moved], **{column: change[moved]})

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
        # only with sessions or prefix caching: the other runs' files stay as they were
        if "session" in t:
            frame["session"] = t["session"].to_numpy(dtype=np.int64)
        if fleet.cached is not None:
            frame["cached_tokens"] = np.asarray(fleet.cached, dtype=np.int64)
        outcome.tables["requests"] = frame
        services = {}
        for s, rt in enumerate(self.runtimes):
            replica_s, groups = self._replica_s(s), None
            if self.decode_pools[s] is not None and (replica_s is not None or self.decode_tps[s] != self.tps[s]):
                groups = self._groups(s)  # each group's replicas, devices and prices on their own
            out = service_summary(frame[frame["service"] == rt.name], rt, self.tps[s], self.held[s],
                                  fleet.replicas[s], self.prices[s], self.slos[s], replica_s,
                                  self.decode_prices[s] if self.decode_pools[s] is not None else None, groups,
                                  closed_loop=self.closed_loop[s])
            scs = [self.scaling[u] for u in self.units_of[s] if self.scaling[u] is not None]
            if scs:
                out.update(autoscale_summary(self.holds[s], scs, self.held[s]))
                if scs[0].group is not None:  # each group of a disaggregated service
                    for sc in scs:
                        group = [h for h in self.holds[s] if self.scaling[h.unit] is sc]
                        peak, mean = replica_counts(group, self.held[s])
                        out.update({f"{sc.group}_replicas_peak": peak, f"{sc.group}_replicas_mean": mean,
                                    f"{sc.group}_scale_ups": sc.ups, f"{sc.group}_scale_downs": sc.downs})
            services[rt.name] = out
        outcome.summary["services"] = services
        scaled = [sc for sc in self.scaling if sc is not None]
        if scaled:
            outcome.summary.update(
                serving_scale_ups=sum(sc.ups for sc in scaled), serving_scale_downs=sum(sc.downs for sc in scaled),
                serving_training_preemptions=sum(sc.preempted for sc in scaled),
                serving_training_gpu_hours_lost=sum(sc.lost_device_s for sc in scaled) / 3600.0)

    def _groups(self, s: int) -> list[GroupFigures]:
        """A disaggregated service's prefill and decode groups as the summary prices them: each one's
        replica-seconds (a fixed count: its replicas x the service's span), devices to a replica, prices, KV
        blocks to a replica and busy replica-seconds."""
        rt, decode = self.runtimes[s], self.fleet.disagg[s].decode
        start, end = self.held[s]
        span = (end - start) if np.isfinite(end) else 0.0
        fixed = self._replica_s(s) is None
        out = []
        for is_decode in (False, True):
            holds = [h for h in self.holds[s] if (h.replica in decode) == is_decode]
            replica_s = len(holds) * span if fixed else float(sum(h.released - h.taken for h in holds))
            out.append(GroupFigures(
                self.decode_tps[s] if is_decode else self.tps[s],
                self.decode_prices[s] if is_decode else self.prices[s],
                rt.decode_kv_blocks if is_decode else rt.kv_blocks, replica_s,
                sum(_busy_time(h.replica.periods) for h in holds)))
        return out

    def _replica_s(self, s: int) -> float | None:
        """Replica-seconds held by an autoscaled service (None for a fixed one: replicas x its span)."""
        if all(self.scaling[u] is None for u in self.units_of[s]):
            return None
        return float(sum(h.released - h.taken for h in self.holds[s]))


@dataclass(frozen=True)
class GroupFigures:
    """A disaggregated group as the summary prices it: devices to a replica, its pool's prices, KV blocks to a
    replica, replica-seconds held and busy replica-seconds."""

    tp: int
    prices: ServicePrices
    kv_blocks: int
    replica_s: float
    busy_s: float


def replica_counts(holds: list[Held], held: tuple[float, float]) -> tuple[int, float]:
    """The most replicas held at once, and replica-seconds over the service's span."""
    start, end = held
    span = end - start if np.isfinite(end) else 0.0
    edges = sorted([(h.taken, 1) for h in holds] + [(h.released, -1) for h in holds])
    count = peak = 0
    for _, d in edges:
        count += d
        peak = max(peak, count)
    replica_s = sum(h.released - h.taken for h in holds)
    return peak, replica_s / span if span > 0 else 0.0


def autoscale_summary(holds: list[Held], scs: list[Scaling], held: tuple[float, float]) -> dict:
    """An autoscaled service's scaling (over its groups when disaggregated): replicas at most and on average,
    scale-ups and -downs, the provisioning delay, and the training runs its scale-ups evicted with the
    GPU-hours they lost."""
    peak, mean = replica_counts(holds, held)
    return {"replicas": peak, "replicas_peak": peak, "replicas_mean": mean, "scale_ups": sum(sc.ups for sc in scs),
            "scale_downs": sum(sc.downs for sc in scs), "scale_ups_blocked": sum(sc.blocked for sc in scs),
            "provisioning_s": scs[0].delay, "training_preemptions": sum(sc.preempted for sc in scs),
            "training_gpu_hours_lost": sum(sc.lost_device_s for sc in scs) / 3600.0}


def service_summary(requests: pd.DataFrame, rt: ServiceRuntime, tp: int, held: tuple[float, float],
                    replicas: list, prices: ServicePrices | None = None, slo=None,
                    replica_s: float | None = None, decode_prices: ServicePrices | None = None,
                    groups: list[GroupFigures] | None = None, closed_loop: bool = False) -> dict:
    """One service's figures: latencies of its completed requests, throughput, the replicas' time, their
    KV occupancy, energy and cost, and with an SLO the share of requests meeting it and the goodput.
    `replica_s`: the replicas' seconds held when they came and went (autoscaling); by default
    rt.replicas for the service's whole span. `decode_prices`: a disaggregated service's decode group on
    a pool of its own (a fixed count, the groups' tp equal): its replicas draw, cost and hold KV as that
    pool's devices. `groups`: a disaggregated service's prefill and decode groups each with its own devices
    per replica, prices and replica-seconds (autoscaled on a pool or layout of their own, or a tp of their
    own), summed group by group. `closed_loop` (a run with closed-loop sessions): the turns never sent
    are counted apart (requests_unsent), and every other figure is over the requests sent."""
    if closed_loop:
        sent = (requests["status"] != UNSENT).to_numpy()
        unsent = int(len(requests) - sent.sum())
        requests = requests[sent]
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
    if closed_loop:
        out["requests_unsent"] = unsent
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
    busy = sum(_busy_time(r.periods) for r in replicas)  # replica-seconds in iterations
    prices = prices or ServicePrices(0.0, 0.0)
    if replica_s is None:  # a fixed count for the whole span (in the order it always was: the same bits)
        devices = rt.replicas * tp
        replica_s, device_s = rt.replicas * span, devices * span
        kv_block_s, idle_j = rt.replicas * rt.kv_blocks * span, devices * prices.idle_w * span
    else:
        device_s = tp * replica_s
        kv_block_s, idle_j = replica_s * rt.kv_blocks, device_s * prices.idle_w
    if groups is not None:
        decode_prices = None  # priced group by group below
        replica_s = sum(g.replica_s for g in groups)
        device_s = sum(g.tp * g.replica_s for g in groups)
        kv_block_s = sum(g.replica_s * g.kv_blocks for g in groups)
        idle_j = sum(g.tp * g.replica_s * g.prices.idle_w for g in groups)
    split = decode_prices is not None
    if split:  # each group at its own pool's prices and KV size
        n_pf, n_dec = rt.disaggregated
        busy_dec = sum(_busy_time(r.periods) for r in replicas[n_pf:])
        kv_block_s = span * (n_pf * rt.kv_blocks + n_dec * rt.decode_kv_blocks)
        idle_j = tp * span * (n_pf * prices.idle_w + n_dec * decode_prices.idle_w)
    out["replicas"] = rt.replicas
    out["replica_hours"] = replica_s / 3600.0
    out["gpu_hours"] = device_s / 3600.0
    out["busy_fraction"] = busy / replica_s if replica_s > 0 else 0.0
    if split or groups is not None:  # a decode replica's, which holds a request's whole KV
        out["kv_capacity_tokens"] = rt.decode_kv_blocks * rt.block_size
        out["kv_peak_fraction"] = max(r.kv_peak / r.kv_blocks for r in replicas)
    else:
        out["kv_capacity_tokens"] = rt.kv_blocks * rt.block_size
        out["kv_peak_fraction"] = max((r.kv_peak for r in replicas), default=0) / rt.kv_blocks
    out["preemptions"] = int(requests["preemptions"].sum())
    if rt.prefix_caching:
        out.update(prefix_summary(done))
    out["kv_mean_fraction"] = sum(r.kv_area for r in replicas) / kv_block_s if kv_block_s > 0 else 0.0
    if groups is not None:
        joules = idle_j + sum(g.tp * g.prices.busy_w * g.busy_s for g in groups)
    elif split:
        joules = idle_j + tp * (prices.busy_w * (busy - busy_dec) + decode_prices.busy_w * busy_dec)
    else:
        joules = idle_j + tp * prices.busy_w * busy
    out["energy_kwh"] = joules / 3.6e6
    out["mean_power_kw"] = joules / span / 1000.0 if span > 0 else 0.0
    out["energy_per_token_j"] = joules / tokens if tokens else 0.0
    if prices.usd_per_device_s is not None:
        if groups is not None:
            device_usd = sum(g.tp * g.replica_s * g.prices.usd_per_device_s for g in groups)
        elif split:
            device_usd = tp * span * (n_pf * prices.usd_per_device_s + n_dec * decode_prices.usd_per_device_s)
        else:
            device_usd = device_s * prices.usd_per_device_s
        cost = device_usd + out["energy_kwh"] * prices.usd_per_kwh
        out["cost_usd"] = cost
        out["usd_per_million_tokens"] = cost / tokens * 1e6 if tokens else 0.0
    return out


def service_figure_names(svc, costed: bool, closed_loop: bool = False) -> list[str]:
    """The keys of `svc`'s figures in summary["services"][name] (service_summary, and autoscale_summary with
    its groups' lines when autoscaled), known from the service's settings before any run: what a sweep can
    name as `services.<name>.<key>`. `costed`: the scenario has `cost:`; `closed_loop`: a source with
    closed-loop sessions sends it requests. tests/test_service_sweeps.py holds it to the figures real runs
    give."""
    names = ["requests", "requests_completed", "requests_rejected"]
    if closed_loop:
        names.append("requests_unsent")
    for figure in ("ttft", "tpot", "e2e"):
        names += [f"{figure}_mean_s", *(f"{figure}_p{q}_s" for q in PERCENTILES)]
    names += ["tokens_per_s", "output_tokens"]
    if svc.slo is not None:
        names += ["slo_met", "slo_attainment", "goodput_requests_per_s", "goodput_tokens_per_s"]
    names += ["replicas", "replica_hours", "gpu_hours", "busy_fraction", "kv_capacity_tokens", "kv_peak_fraction",
              "preemptions"]
    if svc.scheduler.prefix_caching:
        names += ["prefix_hits", "cached_tokens", "prefix_hit_rate"]
    names += ["kv_mean_fraction", "energy_kwh", "mean_power_kw", "energy_per_token_j"]
    if costed:
        names += ["cost_usd", "usd_per_million_tokens"]
    if svc.autoscaled:
        names += ["replicas_peak", "replicas_mean", "scale_ups", "scale_downs", "scale_ups_blocked", "provisioning_s",
                  "training_preemptions", "training_gpu_hours_lost"]
        if svc.disaggregated is not None:
            names += [f"{group}_{key}" for group in ("prefill", "decode")
                      for key in ("replicas_peak", "replicas_mean", "scale_ups", "scale_downs")]
    return names


def prefix_summary(done: pd.DataFrame) -> dict:
    """A prefix-caching service's hits over its completed requests: requests that found a cached prefix,
    the prompt tokens it held, and their share of all prompt tokens (vLLM's token hit rate)."""
    cached = done["cached_tokens"].to_numpy()
    prompt = int(done["prompt_tokens"].sum())
    return {"prefix_hits": int((cached > 0).sum()), "cached_tokens": int(cached.sum()),
            "prefix_hit_rate": float(cached.sum()) / prompt if prompt else 0.0}


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
    scratch: dict[str, Pool] = {}
    runtimes, chosen, decode_pools, tps, decode_tps, autoscale = [], [], [], [], [], []
    for i, svc in enumerate(services):
        at = f"services[{i}]"
        tp = svc.layout.tp
        d = svc.disaggregated
        sched = svc.scheduler
        kv_dtype = kv_dtype_of(svc.layout.dtype, svc.layout.kv_dtype)
        most, first = svc.most_replicas, svc.start_replicas
        split = d is not None and (d.prefill_pool or svc.pool) != (d.decode_pool or svc.pool)
        layouts = {"prefill": svc.group_layout("prefill"), "decode": svc.group_layout("decode")}
        # each group on its own pool or with its own layout: placed, priced and sized group by group
        per_group = split or (d is not None and _effective(layouts["prefill"]) != _effective(layouts["decode"]))
        if not per_group:  # (both groups' layouts the same: the service's, or one given twice)
            layout = layouts["prefill"]
            tp = layout.tp
            own = d is not None and d.prefill_layout is not None
            layout_key = f"{at}.disaggregated.prefill_layout" if own else f"{at}.layout"
            pool_name = svc.pool if d is None or d.prefill_pool is None else d.prefill_pool
            pool_key = f"{at}.pool" if d is None or d.prefill_pool is None else f"{at}.disaggregated.prefill_pool"
            key = f"{at}.replicas.max" if svc.autoscaled else f"{at}.replicas"
            pool = group_pool(setup, scratch, pool_name, tp, most, first, src, at, pool_key, key,
                              f"{at}.replicas.initial" if svc.autoscaled else key,
                              tp_key=f"{layout_key}.tp" if own and d.prefill_layout.tp is not None else None)
            model = model_spec(svc.model, src, f"{at}.model")
            tokens = replica_kv_tokens(pool.device, model, svc, kv_dtype, src, layout_key, layout)
            decode_pool = decode_tokens = decode_layout = None
        else:
            groups = []
            for group, count in (("prefill", d.prefill_replicas), ("decode", d.decode_replicas)):
                name = getattr(d, f"{group}_pool") or svc.pool
                key = f"{at}.disaggregated.{group}_replicas"
                ranged = isinstance(count, ReplicaRange)
                g_most, g_first = (count.max, count.start) if ranged else (count, count)
                where = f"{at}.disaggregated.{group}_pool" if getattr(d, f"{group}_pool") else f"{at}.pool"
                own = getattr(d, f"{group}_layout")
                layout_key = f"{at}.disaggregated.{group}_layout" if own is not None and own.tp is not None \
                    else f"{at}.layout"
                g_tp = layouts[group].tp
                gpool = group_pool(setup, scratch, name, g_tp, g_most, g_first, src, at, where,
                                   f"{key}.max" if ranged else key, f"{key}.initial" if ranged else key,
                                   tp_key=f"{layout_key}.tp")
                fit_key = f"{at}.disaggregated.{group}_layout" if own is not None else \
                    (where if split else f"{at}.layout")
                groups.append((gpool, fit_key, g_tp, g_most))
            if not split:  # one pool: both groups' most replicas together
                (gpool, _, tp_p, most_p), (_, _, tp_d, most_d) = groups
                if most_p * tp_p + most_d * tp_d > gpool.capacity:
                    raise CapsimError(f"pool {gpool.name!r} ({gpool.capacity} devices) cannot hold {most_p} prefill "
                                      f"replicas of {tp_p} device(s) and {most_d} decode replicas of {tp_d}",
                                      source=src, where=f"{at}.replicas.max" if svc.autoscaled else f"{at}.replicas")
            model = model_spec(svc.model, src, f"{at}.model")
            # each group's KV capacity from its own device and layout (the decode group's holds the whole KV)
            (pool, tokens), (decode_pool, decode_tokens) = [
                (gpool, replica_kv_tokens(gpool.device, model, svc, kv_dtype, src, where, layouts[group]))
                for (gpool, where, _, _), group in zip(groups, ("prefill", "decode"), strict=True)]
            layout, decode_layout = layouts["prefill"], layouts["decode"]
            tp = layout.tp
        if svc.autoscaled:
            a = svc.autoscale
            delays = {}
            for group, g_layout in (("prefill", layout), ("decode", decode_layout or layout)):
                delay = a.boot_time + weight_bytes(model, g_layout.tp, g_layout.dtype) * g_layout.tp / (
                    a.weight_load_gbs * 1e9)
                if not delay <= MAX_PROVISIONING_S:  # evaluations go on while requests wait for it
                    raise CapsimError(f"a new replica would take {format_duration(delay)} to become ready (boot_time "
                                      f"+ weights over weight_load_gbs), more than a day", source=src,
                                      where=f"{at}.autoscale")
                delays[group] = delay
            groups = [(None, svc.replicas.min, svc.replicas.max, delays["prefill"])] if d is None else \
                [("prefill", d.prefill_replicas.min, d.prefill_replicas.max, delays["prefill"]),
                 ("decode", d.decode_replicas.min, d.decode_replicas.max, delays["decode"])]
            autoscale.append((a, groups))
        else:
            autoscale.append(None)
        cost = PerfCost(pool.device, model, tp, layout.dtype, kv_dtype, layout.stack)
        options = runtime_options(svc, model, tp, kv_dtype, pool.device,
                                  decode_pool.device if decode_pool is not None else None,
                                  decode_layout.tp if decode_layout is not None else None)
        if decode_pool is not None:
            options.update(decode_cost=PerfCost(decode_pool.device, model, decode_layout.tp, decode_layout.dtype,
                                                kv_dtype, decode_layout.stack),
                           decode_kv_blocks=max(1, decode_tokens // sched.block_size))
        runtimes.append(ServiceRuntime(svc.name, first, cost, sched.max_num_seqs,
                                       sched.max_batched_tokens, max(1, tokens // sched.block_size), sched.block_size,
                                       svc.router, sched.chunked_prefill, **options))
        chosen.append(pool)
        decode_pools.append(decode_pool)
        tps.append(tp)
        decode_tps.append(decode_layout.tp if decode_layout is not None else None)
    for i, req in enumerate(requests or []):
        if req.service not in names:
            raise CapsimError(f"no service named {req.service!r}; services: {', '.join(names)}", source=src,
                              where=f"requests[{i}].service")
    sources = list(requests or [])
    closed = closed_loop_services(sources)
    for i, svc in enumerate(services):
        if svc.autoscaled and svc.autoscale.metric == "ttft" and svc.name in closed:
            # (its later turns arrive as earlier ones end: not in the arrival order LatencyWindow reads)
            raise CapsimError("autoscale.metric: ttft does not go with closed_loop sessions yet (scale on "
                              "utilization or queue)", source=src, where=f"services[{i}].autoscale.metric")
    rngs = setup.rng(RNG_STREAM).spawn(len(sources)) if sources else []
    table = request_table(sources, names, rngs, scenario.base_dir, src)
    check_sessions(services, table, src)
    if any(spec.kind == "trace" for spec in sources):  # request lists are counted once read
        check_size(scenario, requests=len(table))
    return [Serving(runtimes, chosen, tps, table, service_prices(scenario, chosen), [s.slo for s in services],
                    autoscale, decode_pools, service_prices(scenario, decode_pools), decode_tps,
                    [name in closed for name in names])]


def closed_loop_services(sources) -> set[str]:
    """The services that a source with closed-loop sessions sends requests to."""
    return {spec.service for spec in sources or []
            if spec.kind == "synthetic" and spec.sessions is not None and spec.sessions.closed_loop}


def _effective(layout) -> tuple:
    """What a layout sets of a replica: devices, weights' type, KV type, stack."""
    return layout.tp, layout.dtype, kv_dtype_of(layout.dtype, layout.kv_dtype), layout.stack


def group_pool(setup, scratch: dict, name: str, tp: int, most: int, first: int, src: str, at: str, where: str,
               key: str, first_key: str, tp_key: str | None = None) -> Pool:
    """The pool `most` replicas of tp devices (`first` of them from the start) run on, checked: named, owned
    and in service for the whole run, with nodes of tp devices (else refused at `tp_key`, by default the
    service's layout.tp) and room for them beside the services before (`scratch`: the pools as those left
    them)."""
    pools = {p.name: p for p in setup.cluster.pools}
    scenario = setup.scenario
    if name not in pools:
        raise CapsimError(f"no pool named {name!r}; pools: {', '.join(pools)}", source=src, where=where)
    spec = next(p for p in scenario.cluster.pools if p.name == name)
    maintained = {w.pool for w in (getattr(scenario, "maintenance", None) or [])}
    if spec.burst or spec.available_from > 0 or spec.available_until is not None or name in maintained:
        raise CapsimError(f"pool {name!r} is not owned and in service for the whole run (burst, expansion, "
                          "retirement or maintenance windows): replicas cannot run there yet", source=src, where=where)
    pool = pools[name]
    if tp > pool.per_node:
        raise CapsimError(f"a replica of tp={tp} needs {tp} devices of one node; pool {name!r} has "
                          f"{pool.per_node} per node", source=src, where=tp_key or f"{at}.layout.tp")
    if most * tp > pool.capacity:  # before placing them one by one
        raise CapsimError(f"pool {name!r} ({pool.capacity} devices) cannot hold {most} replicas of "
                          f"{tp} device(s)", source=src, where=key)
    room = scratch.setdefault(name, Pool(pool.name, pool.device, pool.nodes, pool.per_node))
    if any(room.allocate(tp) is None for _ in range(first)):
        raise CapsimError(f"pool {name!r} ({pool.capacity} devices) cannot hold {first} replicas of "
                          f"{tp} device(s) beside the services before it", source=src, where=first_key)
    return pool


def replica_kv_tokens(device: str, model: ModelSpec, svc, kv_dtype: str, src: str, where: str,
                      layout=None) -> int:
    """KV tokens a replica of `svc` holds on `device` with `layout` (default the service's; a disaggregated
    group's own), or scheduler.kv_tokens when given; refused when the weights leave no room for a block."""
    sched = svc.scheduler
    layout = layout or svc.layout
    memory = load_profile(device).memory_gib
    tokens, weights, budget = kv_capacity_tokens(memory, model, layout.tp, layout.dtype, kv_dtype,
                                                 sched.memory_utilization)
    if tokens < sched.block_size:
        raise CapsimError(f"a replica does not fit: {weights:.1f} GiB of weights per device leave no KV cache "
                          f"in {budget:.1f} GiB ({memory:g} GiB x memory_utilization {sched.memory_utilization:g}) "
                          f"of a {device}; raise tp or use fp8", source=src, where=where)
    return sched.kv_tokens if sched.kv_tokens is not None else tokens


def check_sessions(services, table: pd.DataFrame, source: str) -> None:
    """A session-affinity router needs requests with sessions to route (else it is least-outstanding)."""
    for i, svc in enumerate(services):
        if svc.router != "session-affinity":
            continue
        mine = table["service"] == svc.name
        if "session" not in table or not (table["session"][mine] >= 0).any():
            raise CapsimError("router: session-affinity needs requests with sessions (a synthetic source's "
                              "sessions: block, or a request list's session column)", source=source,
                              where=f"services[{i}].router")


def runtime_options(svc, model: ModelSpec, tp: int, kv_dtype: str, device: str, decode_device: str | None = None,
                    decode_tp: int | None = None) -> dict:
    """The fleet's paged-KV and disaggregation settings of a service: a swap copies a block's KV bytes
    per device over each device's host link; a disaggregated prompt's KV goes from each prefill device's
    scale-out link to a decode device's (`decode_device`, on a pool of its own; else `device`), each
    device sending or receiving its own shard (tp or `decode_tp` of them), so a transfer alone lasts the
    longer of the two sides' shard over a device's bandwidth; each replica's links (its devices x a
    device's) are shared by concurrent transfers."""
    sched, out = svc.scheduler, {}
    if sched.prefix_caching:
        out["prefix_caching"] = True
    elif model.windowed_layers() and sched.kv_allocation != "paged":
        # a reservation holds a windowed layer's KV up to the window; paged allocation and prefix-cache
        # entries still count every layer's KV in full (conservative: fewer requests fit)
        out["kv_window"] = (model.layers, model.windowed_layers(), int(model.sliding_window))
    per_token = kv_cache_bytes(model, tp, 1, 1, kv_dtype)  # bytes per device
    if sched.kv_allocation == "paged":
        swap = None
        if sched.preemption == "swap":
            swap = per_token * sched.block_size / (sched.swap_bandwidth_gbs * 1e9)
        out.update(paged_kv=True, swap_s_per_block=swap)
    if svc.disaggregated is not None:
        d = svc.disaggregated
        egress = load_profile(device).scale_out_bw_gbs
        ingress = load_profile(decode_device or device).scale_out_bw_gbs
        out.update(disaggregated=(d.prefill_replicas, d.decode_replicas) if not d.ranges else
                   (d.prefill_replicas.start, d.decode_replicas.start))
        if decode_tp is None or decode_tp == tp:
            out.update(transfer_s_per_token=per_token / (min(egress, ingress) * 1e9),
                       link_gbs=(tp * egress, tp * ingress))
        else:  # each side's devices hold their own shards: the slower side sets a lone transfer's time
            into = kv_cache_bytes(model, decode_tp, 1, 1, kv_dtype)
            per_s = max(per_token / (egress * 1e9), into / (ingress * 1e9))  # seconds per prompt token, alone
            links = (tp * egress, decode_tp * ingress)
            # GB/s a lone transfer puts on the prefill replica's egress and the decode replica's ingress
            out.update(transfer_s_per_token=per_s, link_gbs=links,
                       flow_gbs=(min(links[0], tp * per_token / per_s / 1e9),
                                 min(links[1], decode_tp * into / per_s / 1e9)))
    return out


def service_prices(scenario, pools: list[Pool | None]) -> list[ServicePrices | None]:
    """Each service's device power (the power feature's, models/power.py) and price (the cost feature's,
    models/cost.py, when the scenario has `cost:`), from its pool (None for None)."""
    specs = {p.name: (i, p) for i, p in enumerate(scenario.cluster.pools)}
    rates = cost_rates(scenario) if scenario.cost is not None else None
    out = []
    for pool in pools:
        if pool is None:
            out.append(None)
            continue
        i, spec = specs[pool.name]
        power: PoolPower = pool_power(spec.device, spec.nodes, spec.devices_per_node, scenario.power.idle_fraction,
                                      scenario.power.pue)
        devices = spec.nodes * spec.devices_per_node
        usd = None if rates is None else (rates.capex_usd_per_s[i] + rates.rental_usd_per_s[i]) / devices
        out.append(ServicePrices(power.base_w / devices, power.per_busy_w, usd,
                                 rates.usd_per_kwh if rates is not None else 0.0))
    return out
