"""Sites and wide-area links: the pools grouped into sites, each with its electricity price and carbon
intensity (constant, or one value per hour of the day), its PUE and an optional power cap; links
between sites that carry jobs' input data; and a site policy that chooses where each job runs.

A job may carry `home_site` (where its input data lives) and `input_gb`. When the site policy sends
it elsewhere, its input first moves as a flow along the route between the two sites (the WAN is a
graph; `routes` picks the route with the fewest links, then the lowest latency), sharing every link
of it max-min fairly with the other transfers crossing that link (progressive filling over paths,
network/maxmin.py), and reaches the far site the sum of its links' latencies after its last byte is
sent: only then does the job join the queue there (it holds no devices while its data moves; the wait
counts in its wait_s). Each link a transfer crosses bills its usd_per_gb to the site the data leaves
from on it (egress, as public clouds bill the sending region). A job decided at submission is held back from
the queue (Source.on_submit); one that spills after waiting stays queued, placeable nowhere, while its
data moves. The policy is one scheduler over all sites (one queue), as the scenario's policy orders it.

Hours of the day are those of the run's clock: 0 s is midnight, hour h covers [3600 h, 3600 (h + 1))
modulo a day (a trace on unix time gives UTC hours).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.cluster.pool import PlacementGuard
from simulator.cluster.torus import TorusPool
from simulator.engine.features import Meter, Source
from simulator.engine.timeline import seconds_above
from simulator.errors import CapsimError
from simulator.job import QUEUED
from simulator.models.cost import pool_spans
from simulator.models.power import pool_power
from simulator.network.maxmin import max_min_shares
from simulator.units import parse_duration

HOURS = 24
MAX_USD_PER_KWH = 1e3  # as scenario.py's cost.usd_per_kwh
MAX_GCO2E_PER_KWH = 1e4  # coal is about 1,000
MAX_PUE = 10.0
IN_TRANSIT = ("in transit",)  # a job's site while its data moves: a key no site has (placeable nowhere)

Price = Annotated[float, Field(ge=0, le=MAX_USD_PER_KWH)]
Carbon = Annotated[float, Field(ge=0, le=MAX_GCO2E_PER_KWH)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Site(_Spec):
    """A site: the pools it holds and what its energy costs, in money and carbon."""

    name: str = Field(min_length=1, description="unique site name (jobs' home_site, jobs.parquet `site`)")
    pools: list[str] = Field(min_length=1, description="the pools at this site (cluster.pools[].name); each pool "
                             "belongs to exactly one site")
    usd_per_kwh: Price | list[Price] = Field(description=(
        "electricity price: one value, or 24 (hour 0-23 of the run's clock, 0 s being midnight)"))
    gco2e_per_kwh: Carbon | list[Carbon] = Field(description=(
        "carbon intensity of the electricity in gCO2e/kWh: one value, or 24 hourly values"))
    pue: float | None = Field(default=None, ge=1.0, le=MAX_PUE, description=(
        "the site's power usage effectiveness (default: power.pue)"))
    power_cap_kw: float | None = Field(default=None, gt=0, le=1e9, description=(
        "the site's power cap in kW of facility power (its pools' idle and busy draw times the PUE, as the "
        "summary's peak_kw); see power_cap_mode"))
    power_cap_mode: Literal["enforce", "report"] | None = Field(default=None, description=(
        "enforce: a job does not start at the site while its devices' busy power would take the site over "
        "power_cap_kw (it waits, or the site policy sends it elsewhere); report (the default, as before "
        "caps were enforced): the cap only adds peak_kw and hours_over_cap to the summary"))
    utc_offset_h: float = Field(default=0.0, ge=-12, le=14, description=(
        "the site's local time minus the run's clock, in hours (e.g. -5 for US Eastern standard time): "
        "follow-the-sun's local hours; the hourly curves stay on the run's clock"))

    @field_validator("usd_per_kwh", "gco2e_per_kwh")
    @classmethod
    def _hourly(cls, v):
        if isinstance(v, list) and len(v) != HOURS:
            raise ValueError(f"expected one value or {HOURS} hourly values, got {len(v)}")
        return v

    def curve(self, key: str) -> np.ndarray:
        v = getattr(self, key)
        return np.array(v if isinstance(v, list) else [v] * HOURS, dtype=float)


class WanLink(_Spec):
    """A wide-area link between two sites."""

    between: list[str] = Field(min_length=2, max_length=2, description="the two sites it joins (sites[].name)")
    gbps: float = Field(gt=0, le=1e6, description="its bandwidth in Gbit/s, shared max-min fairly by the transfers")
    latency_ms: float = Field(default=0.0, ge=0, le=1e6, description=(
        "one-way latency: a transfer arrives this long after its last byte is sent"))
    # No default: egress depends on the provider and the pair of regions. Listed prices (2024): AWS bills
    # $0.02/GB from us-east-1 to another region and $0.09/GB to the internet for the first 10 TB a month
    # (aws.amazon.com/ec2/pricing/on-demand/, "Data Transfer"); Google Cloud $0.01-0.02/GB between regions in
    # one continent (cloud.google.com/vpc/network-pricing).
    usd_per_gb: float | None = Field(default=None, ge=0, le=1e3, description=(
        "egress price: each GB a transfer sends over the link costs this, billed to the site it leaves "
        "(the summary's egress_usd; public clouds charge about $0.01-0.02 per GB between regions)"))

    @model_validator(mode="after")
    def _two_sites(self):
        if self.between[0] == self.between[1]:
            raise ValueError("a link joins two different sites")
        return self


class SitesPolicy(_Spec):
    """Where jobs run among the sites."""

    policy: Literal["home", "nearest-data", "cheapest-energy", "lowest-carbon", "spill-after",
                    "follow-the-sun"] = Field(default="home", description=(
        "home: where its data is; nearest-data: home, or where home cannot hold it, the site its data "
        "would reach first at the WAN's current shares (home takes the first in scenario order); "
        "cheapest-energy / lowest-carbon: the site with the lowest price / carbon intensity in the hour it "
        "is submitted, among those with a pool that can hold it; spill-after: home, then after waiting "
        "`after` the first other site with room; follow-the-sun: home while its local hour is in `window`, "
        "else the site in its window with the most of it left"))
    after: float | None = Field(default=None, gt=0, description="spill-after: how long a job waits at its site first")
    window: list[float] | None = Field(default=None, min_length=2, max_length=2, description=(
        "follow-the-sun: [start, end) local hours (sites' utc_offset_h) a site is in its day, 0 <= start < "
        "end <= 24, e.g. [8, 18]"))
    prefer: Literal["spot", "on-demand"] | None = Field(default=None, description=(
        "at a site with burst pools (a cloud region), try its spot pools (listed under spot:) before its "
        "on-demand ones, or the reverse; default: scenario order"))

    _d = field_validator("after", mode="before")(lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _after_with_spill(self):
        if (self.policy == "spill-after") != (self.after is not None):
            raise ValueError("give `after` with policy spill-after, and only then")
        if (self.policy == "follow-the-sun") != (self.window is not None):
            raise ValueError("give `window` with policy follow-the-sun, and only then")
        if self.window is not None and not 0 <= self.window[0] < self.window[1] <= HOURS:
            raise ValueError(f"window: expected 0 <= start < end <= 24, got {self.window}")
        return self


SECTIONS = {
    "sites": (list[Site], "Sites: the pools each holds, its electricity price and carbon intensity (constant or "
              "hourly), PUE and an optional power cap; the summary's `sites` figures."),
    "wan": (list[WanLink], "Wide-area links between sites that move jobs' input data, routed over the link "
            "graph and shared max-min fairly (needs sites)."),
    "sites_policy": (SitesPolicy, "Where jobs run among the sites: home, nearest-data, cheapest-energy, "
                     "lowest-carbon, spill-after or follow-the-sun (needs sites)."),
}


# -- hourly curves ---------------------------------------------------------------------------------
def curve_integral(curve: np.ndarray, t: np.ndarray) -> np.ndarray:
    """F(t) = the integral of the hourly `curve` (24 values, per hour) from 0 to t, in value-seconds;
    F(b) - F(a) is its integral over [a, b]."""
    t = np.asarray(t, dtype=float)
    before = np.concatenate([[0.0], np.cumsum(curve)[:-1]]) * 3600.0  # integral up to each hour's start
    day = np.floor(t / 86400.0)
    into = t - day * 86400.0
    hour = np.minimum((into // 3600.0).astype(np.int64), HOURS - 1)
    return day * curve.sum() * 3600.0 + before[hour] + (into - hour * 3600.0) * curve[hour]


def site_power_column(site: str) -> str:
    """The timeline column of a site's power draw in kW (IT load x its PUE)."""
    return f"site_power_kw:{site}"


def hour_of(t: float) -> int:
    return int(math.floor(t / 3600.0)) % HOURS


# -- routes ----------------------------------------------------------------------------------------
def routes(sites: int, links: dict) -> dict[tuple[int, int], tuple]:
    """(from site, to site) -> its route, ((link, the site sending on it), ...), for every pair joined
    by some path of `links` ((a, b), a < b -> Link). The route has the fewest links, then the lowest
    total latency, then the links earliest in scenario order: fixed routing, as flow-level models take it
    (Bertsekas & Gallager, Data Networks, sec. 5.2). Fewest links first because a transfer takes its
    rate from every link it crosses: each extra one is WAN capacity used and one more place to be
    slowed by other transfers; latency (milliseconds) matters little to transfers of minutes."""
    near: list[list] = [[] for _ in range(sites)]
    for (a, b), link in links.items():
        near[a].append((b, link))
        near[b].append((a, link))
    out = {}
    for start in range(sites):
        best = {start: (0, 0.0, ())}
        heap = [(0, 0.0, (), start, ())]
        while heap:
            hops, latency, order, at, path = heapq.heappop(heap)
            if best[at] != (hops, latency, order):
                continue  # a better way here was found after this one was queued
            if at != start:
                out[(start, at)] = path
            for to, link in near[at]:
                key = (hops + 1, latency + link.latency_s, (*order, link.index))
                if to not in best or key < best[to]:
                    best[to] = key
                    heapq.heappush(heap, (*key, to, (*path, (link, at))))
    return out


# -- transfers -------------------------------------------------------------------------------------
@dataclass(eq=False)
class Transfer:
    job: object
    to: int  # the site it moves to
    remaining: float  # GB still to send
    started: float
    spill: bool  # the job is queued (spilling); else held back since its submission
    route: tuple = ()  # ((link, the site sending on it), ...)
    rate: float = 0.0  # GB/s
    since: float = 0.0  # when `remaining` was last brought up to date
    version: int = 0
    links: tuple = field(init=False)  # the route's links (looked up on every change of sharing)

    def __post_init__(self):
        self.links = tuple(link for link, _ in self.route)

    @property
    def demand(self) -> float:
        """What it could take alone: its narrowest link's bandwidth (GB/s)."""
        return min(link.gbs for link, _ in self.route)


@dataclass(eq=False)
class Link:
    index: int
    name: str
    gbs: float  # GB/s
    latency_s: float
    usd_per_gb: float | None = None
    flows: list = field(default_factory=list)
    gb_moved: float = 0.0
    transfers: int = 0


class SitePlacer(Source):
    """Chooses each job's site at its submission, and moves its input there first when it must."""

    def __init__(self, stats: SiteStats, policy: SitesPolicy, pools_of: list[list], prices: list, carbon: list,
                 links: dict, home: list[int], input_gb: np.ndarray):
        self.stats = stats
        self.policy = policy.policy
        self.names = stats.names
        self.pools_of = pools_of  # site -> its Pool objects
        self.prices, self.carbon = prices, carbon
        self.links = links  # (site a, site b), a < b -> Link
        self.routes = routes(len(self.names), links)  # (from, to) -> ((link, sender), ...)
        self.home = home  # job index -> its home site, -1 none
        self.input_gb = input_gb
        self.offset_h = [s.utc_offset_h for s in stats.sites]
        self.window = policy.window
        self.moving: list[Transfer] = []  # transfers under way, in the order they started
        self.sim = None

    def start(self, sim, t0: float) -> None:
        self.sim = sim

    # -- the decision --------------------------------------------------------------------------------
    def _can_hold(self, site: int, job) -> bool:
        device, gpus = job.device, job.gpus
        return any((device is None or p.device == device) and _could_run(p, job)
                   and (p.guard is None or p.guard.can_ever_admit(p, gpus)) for p in self.pools_of[site])

    def _reachable(self, job, at: int, site: int) -> bool:
        """The job's data at site `at` can reach `site` (no data, or a route between them)."""
        return site == at or not self.input_gb[job.index] or (at, site) in self.routes

    def choose(self, job, home: int, now: float) -> int | None:
        """The site the job goes to (None: any pool, a job with no home under the home policy)."""
        sites = [s for s in range(len(self.names))
                 if self._can_hold(s, job) and (home < 0 or self._reachable(job, home, s))]
        if self.policy in ("home", "spill-after", "nearest-data"):
            if home < 0:
                return None
            if home in sites or not sites:
                return home
            if self.policy == "nearest-data":
                return min(sites, key=lambda s: (self._eta(job, home, s), s))
            return sites[0]
        if not sites:
            return home if home >= 0 else None
        if self.policy == "follow-the-sun":
            return self._sunny(sites, home, now)
        curve = self.prices if self.policy == "cheapest-energy" else self.carbon
        hour = hour_of(now)
        return min(sites, key=lambda s: (curve[s][hour], s != home, s))

    def _eta(self, job, at: int, to: int) -> float:
        """Seconds the job's data at `at` would take to reach `to` if it set off now: its size at the
        rate max-min sharing would give it beside the transfers under way, plus the route's latency."""
        gb = float(self.input_gb[job.index])
        if not gb or at == to:
            return 0.0
        route = self.routes[(at, to)]
        probe = Transfer(job, to, gb, 0.0, False, route)
        flows = self._sharing(probe.links, extra=probe)
        rate = self._rates(flows)[flows.index(probe)]
        return gb / rate + sum(link.latency_s for link, _ in route)

    def _sunny(self, sites: list[int], home: int, now: float) -> int | None:
        """follow-the-sun: home while its local hour is in the window; else the site in its window with
        the most of the window left (the job runs longest in that site's day; ties in scenario order);
        where no site is in its window, as the home policy."""
        start, end = self.window
        left = {}
        for s in sites:
            local = (now / 3600.0 + self.offset_h[s]) % HOURS
            if start <= local < end:
                left[s] = end - local
        if home in left:
            return home
        if not left:
            return None if home < 0 else home if home in sites else sites[0]
        return max(left, key=lambda s: (left[s], -s))

    def on_submit(self, job, now: float) -> bool:
        home = self.home[job.index]
        site = self.choose(job, home, now)
        if site is None:
            return False
        if home < 0 or site == home or not self.input_gb[job.index]:
            job.site = self.names[site]
            return False
        self._send(job, home, site, now, spill=False)
        return True

    # -- moving data ---------------------------------------------------------------------------------
    def _send(self, job, at: int, to: int, now: float, spill: bool) -> None:
        job.site = IN_TRANSIT
        transfer = Transfer(job, to, float(self.input_gb[job.index]), now, spill, self.routes[(at, to)], since=now)
        for link in transfer.links:
            link.flows.append(transfer)
        self.moving.append(transfer)
        self._share(transfer.links, now, transfer)

    def _sharing(self, links: list[Link], extra: Transfer | None = None) -> list[Transfer]:
        """The transfers that share a link with `links`, directly or through other transfers (the ones
        whose rates a change there can move), in the order they started; `extra`, not yet under way,
        last."""
        seen, found = set(links), set()
        todo = list(links)
        while todo:
            for f in todo.pop().flows:
                if f not in found:
                    found.add(f)
                    todo.extend(link for link in f.links if link not in seen)
                    seen.update(f.links)
        flows = [f for f in self.moving if f in found]
        return flows + [extra] if extra is not None else flows

    @staticmethod
    def _rates(flows: list[Transfer]) -> list[float]:
        """Max-min fair rates (GB/s) of transfers crossing their routes' links, each asking for its
        narrowest link's bandwidth (it can take no more) and putting all of it on every link it crosses."""
        demand = [f.demand for f in flows]
        capacity = {link.index: link.gbs for f in flows for link in f.links}
        loads = [dict.fromkeys((link.index for link in f.links), d) for f, d in zip(flows, demand, strict=True)]
        return [share * d for share, d in zip(max_min_shares(demand, loads, capacity), demand, strict=True)]

    def _share(self, links: list[Link], now: float, joined) -> None:
        """Share the links of `links`' transfers (and of those sharing with them) max-min fairly again,
        and give each transfer whose rate changed (and one that just `joined`) the end its new rate gives,
        its progress at the old rate brought up to `now` first. A transfer that left may have split its
        group into several that no longer share a link: each is shared on its own."""
        done = set()
        for link in links:
            if link in done:
                continue
            flows = self._sharing([link])
            done.add(link)
            done.update(ln for f in flows for ln in f.links)
            if not flows:
                continue
            for f, rate in zip(flows, self._rates(flows), strict=True):
                if rate != f.rate or f is joined:
                    f.remaining = max(0.0, f.remaining - f.rate * (now - f.since))
                    f.since = now
                    f.rate = rate
                    f.version += 1
                    self.sim.calendar.at(now + f.remaining / rate, self._on_sent, (f, f.version))

    def _on_sent(self, event) -> None:
        f, version = event.value
        if version != f.version:
            return  # its rate changed since: a later end is on the calendar
        now = self.sim.now
        for link in f.links:
            link.flows.remove(f)
        self.moving.remove(f)
        f.rate = 0.0
        size = float(self.input_gb[f.job.index])
        stats = self.stats
        usd = 0.0
        for link, sender in f.route:
            link.gb_moved += size
            link.transfers += 1
            stats.egress_gb[sender] += size
            if link.usd_per_gb is not None:
                stats.egress_usd[sender] += size * link.usd_per_gb
                usd += size * link.usd_per_gb
        if usd:
            stats.egress_spans.append((f.started, now, usd))
        stats.moved_gb[f.to] += size
        self._share(f.links, now, None)
        self.sim.calendar.at(now + sum(link.latency_s for link in f.links), self._on_arrived, f)

    def _on_arrived(self, event) -> None:
        f, now = event.value, self.sim.now
        job = f.job
        job.site = self.names[f.to]
        self.stats.transfer_s[job.index] += now - f.started
        if f.spill:
            self.sim.request_pass(now)  # it is queued: it may start there now
        else:
            self.sim.enqueue(job, now)


class SpillPlacer(SitePlacer):
    """spill-after: a job waits at its site; after `after`, it moves to the first other site (in scenario
    order) its data can reach that has room for it then, and waits again there if none has."""

    def __init__(self, *args, after: float):
        super().__init__(*args)
        self.after = after
        self.index = {name: s for s, name in enumerate(self.names)}

    def on_queued(self, job, now: float) -> None:
        if job.site is not None and job.site is not IN_TRANSIT:
            self.sim.calendar.at(now + self.after, self._on_waited, (job, job.queued_since))

    def _on_waited(self, event) -> None:
        job, since = event.value
        if job.state != QUEUED or job.queued_since != since or job.site is IN_TRANSIT:
            return  # it started (or left and came back: a newer check is on the calendar)
        now, cluster = self.sim.now, self.sim.cluster
        at = self.index[job.site]
        view = self.sim.view
        for s, name in enumerate(self.names):
            view.placing(job)  # a torus pool fits the slice shape the job names, if it names one
            fits = s != at and self._reachable(job, at, s) and cluster.fits(job.gpus, job.device, job.queued_since,
                                                                            now, name, job.gpu_milli)
            view.placing(None)
            if fits:
                if self.input_gb[job.index]:
                    self._send(job, at, s, now, spill=True)
                else:
                    job.site = name
                    self.sim.request_pass(now)
                return
        sim = self.sim
        if sim.running or not sim.arrivals_done or self.moving:
            sim.calendar.at(now + self.after, self._on_waited, (job, since))  # none has room: look again later
        # else nothing runs, arrives or moves that could make room: looking again would keep the run going


# -- enforced power caps --------------------------------------------------------------------------
CAP_TOLERANCE = 1e-9  # relative: a cap met to a microwatt per kilowatt is met (float sums of watts)


class PowerCap(PlacementGuard):
    """Enforced site power caps: vetoes a placement on a pool of a capped site when the site's draw with
    the job's devices busy would pass its cap. The draw is counted as the timeline's site power is, at
    facility power (times the site's PUE): the idle draw of every owned pool at the site (all of them, in
    service or not yet, so installing an expansion cannot take a site over its cap) plus each busy
    device's extra watts over idle. Burst pools draw no site power and are not watched."""

    def __init__(self, site_of_pool: np.ndarray, busy_w: np.ndarray, base_w: np.ndarray, caps_w: dict[int, float]):
        self.site_of = site_of_pool.tolist()
        self.watts = busy_w.tolist()  # per pool: extra watts per busy device
        self.cap = dict(caps_w)  # capped site -> its cap in watts
        self.base = {s: float(base_w[site_of_pool == s].sum()) for s in caps_w}
        self.pools = {s: np.flatnonzero(site_of_pool == s).tolist() for s in caps_w}
        self.busy = [0] * len(self.site_of)  # per pool: devices allocated now

    def watches(self, pool_index: int) -> bool:
        return self.site_of[pool_index] in self.cap and self.watts[pool_index] > 0

    def draw_w(self, site: int) -> float:
        watts, busy = self.watts, self.busy
        return self.base[site] + sum(busy[q] * watts[q] for q in self.pools[site])

    def admits(self, pool, devices: int, freed: int) -> bool:
        s = self.site_of[pool.index]
        return self.draw_w(s) + (devices - freed) * self.watts[pool.index] <= self.cap[s] * (1 + CAP_TOLERANCE)

    def can_ever_admit(self, pool, devices: int) -> bool:
        """Whether `devices` busy on `pool` fit under the cap with nothing else running at its site."""
        s = self.site_of[pool.index]
        return self.base[s] + devices * self.watts[pool.index] <= self.cap[s] * (1 + CAP_TOLERANCE)

    def taken(self, pool, devices: int) -> None:
        self.busy[pool.index] += devices

    def given_back(self, pool, devices: int) -> None:
        self.busy[pool.index] -= devices


# -- what the sites did ----------------------------------------------------------------------------
class SiteStats(Meter):
    """jobs.parquet's `site` (where the job last ran) and `transfer_s` (seconds its input spent moving to
    another site), and the summary's `sites` (per site: energy, carbon, energy cost at its hourly prices,
    device-hours, utilisation, mean wait, jobs, data moved in; with priced links, data sent out and its
    egress cost) and `wan_links`."""

    def __init__(self, sites: list[Site], site_of_pool: np.ndarray, busy_w: np.ndarray, base_w: np.ndarray,
                 links: list[Link], jobs: int, costed: bool = False):
        self.sites = sites
        self.names = [s.name for s in sites]
        self.site_of_pool = site_of_pool  # pool index -> site index
        self.busy_w, self.base_w = busy_w, base_w  # per pool: watts per busy device, watts with all idle
        self.links = links
        self.moved_gb = np.zeros(len(sites))
        self.egress_gb = np.zeros(len(sites))  # GB each site sent onto a link (counted per link crossed)
        self.egress_usd = np.zeros(len(sites))
        self.priced = any(link.usd_per_gb is not None for link in links)
        self.transfer_s = np.zeros(jobs)
        # Priced transfers, (start, end, USD), in the order they ended; with `costed` (the run has `cost`)
        # each is billed on the timeline, spread evenly over the transfer (`egress_usd_per_h`).
        self.egress_spans: list[tuple[float, float, float]] = []
        self.costed = costed

    def job_columns(self, outcome) -> None:
        jobs = outcome.jobs
        pool_site = {p.name: self.names[self.site_of_pool[p.index]] for p in outcome.cluster.pools}
        site = jobs["pool"].map(pool_site, na_action="ignore").astype(jobs["pool"].dtype)
        at = jobs.columns.get_loc("status")
        jobs.insert(at, "site", site)
        jobs.insert(at + 1, "transfer_s", self.transfer_s)

    def timeline(self, builder, outcome) -> None:
        _, _, devices, pools = builder.runs
        for s in range(len(self.sites)):
            here = self.site_of_pool == s
            column = site_power_column(self.names[s])
            builder.column(column, float, divisor=1000.0)
            builder.per_run(column, devices * np.where(here, self.busy_w, 0.0)[pools])
            builder.per_pool(column, np.where(here, self.base_w, 0.0))
        if self.priced and self.costed:
            start, end, rate = self._egress_rates()
            builder.column("egress_usd_per_h", float)
            builder.changes(np.concatenate([start, end]), egress_usd_per_h=np.concatenate([rate, -rate]))
            if len(end):
                builder.extend(float(end.max()))  # a transfer whose job never ran is still billed

    def _egress_rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each priced transfer's start, end and USD per hour: its egress spread evenly from the moment
        it set off to the moment its last byte was sent (not by the rate it had at each moment: the
        bill is the same, and the rate is a run of max-min shares). A transfer that took no time at all
        (its size lost against the clock's magnitude) is given the next representable instant."""
        spans = np.array(self.egress_spans, dtype=float).reshape(-1, 3)
        start, end, usd = spans[:, 0], spans[:, 1], spans[:, 2]
        end = np.where(end > start, end, np.nextafter(start, np.inf))
        return start, end, usd / (end - start) * 3600.0

    def finish(self, outcome) -> None:
        timeline, jobs, pools = outcome.timeline, outcome.jobs, outcome.cluster.pools
        time = timeline["time_s"].to_numpy(dtype=float)
        device_s = outcome.recorder.device_seconds_by_pool(len(pools))
        install_at = np.array([p.in_service_from for p in pools], dtype=float)
        retire_at = np.array([p.in_service_until for p in pools], dtype=float)
        spans = np.array(pool_spans(timeline, install_at, retire_at))
        owned = np.array([p.burst_after is None for p in pools], dtype=bool)
        capacity = np.array([p.capacity for p in pools], dtype=float)
        out = {}
        for s, site in enumerate(self.sites):
            column = site_power_column(site.name)
            kw = timeline[column].to_numpy(dtype=float)[:-1]
            here = self.site_of_pool == s
            ran = jobs["site"] == site.name
            in_service = float((capacity * spans)[here & owned].sum())
            figures = {
                "energy_kwh": float((kw * np.diff(time)).sum() / 3600.0),
                "carbon_tco2e": float((kw * np.diff(curve_integral(site.curve("gco2e_per_kwh"), time))).sum()
                                      / 3600.0 / 1e6),
                "energy_cost_usd": float((kw * np.diff(curve_integral(site.curve("usd_per_kwh"), time))).sum()
                                         / 3600.0),
                "gpu_hours": float(device_s[here].sum() / 3600.0),
                "utilisation": float(device_s[here & owned].sum() / in_service) if in_service > 0 else 0.0,
                "mean_wait_s": float(jobs.loc[ran, "wait_s"].mean()) if ran.any() else 0.0,
                "jobs": int(ran.sum()),
                "data_moved_tb": float(self.moved_gb[s] / 1e3),
            }
            if self.priced:  # only then: summaries of unpriced WANs stay as they were
                figures.update(egress_tb=float(self.egress_gb[s] / 1e3), egress_usd=float(self.egress_usd[s]))
            if site.power_cap_kw is not None:
                over_s = seconds_above(timeline, column, site.power_cap_kw * (1 + CAP_TOLERANCE))
                figures.update(power_cap_kw=site.power_cap_kw, peak_kw=float(kw.max(initial=0.0)),
                               hours_over_cap=over_s / 3600.0)
                if site.power_cap_mode == "enforce":
                    figures["power_cap_mode"] = "enforce"
            out[site.name] = figures
        outcome.summary["sites"] = out
        if self.links:
            outcome.summary["wan_links"] = [
                {"link": link.name, "tb_moved": link.gb_moved / 1e3, "transfers": link.transfers}
                | ({"usd": link.gb_moved * link.usd_per_gb} if link.usd_per_gb is not None else {})
                for link in self.links]
        if self.priced:
            egress = float(self.egress_usd.sum())
            outcome.summary["egress_usd"] = egress
            if "cost_usd" in outcome.summary:  # the cost meter ran first (features.FEATURES order)
                outcome.summary["cost_usd"] += egress
            if self.costed and "usd_per_h" in timeline.columns:
                # The column summed its changes; where no transfer is under way it is exactly 0 (not the
                # rounding the running sum leaves).
                start, end, _ = self._egress_rates()
                under_way = (np.searchsorted(np.sort(start), time, side="right")
                             - np.searchsorted(np.sort(end), time, side="right"))
                rate = np.where(under_way > 0, timeline["egress_usd_per_h"].to_numpy(dtype=float), 0.0)
                timeline["egress_usd_per_h"] = rate
                timeline["usd_per_h"] = timeline["usd_per_h"].to_numpy(dtype=float) + rate


# -- building it from the scenario -----------------------------------------------------------------
def _error(scenario, message: str, where: str) -> CapsimError:
    return CapsimError(message, source=scenario.source, where=where)


def site_pue(scenario) -> dict[str, float]:
    """pool name -> its site's PUE, where the site sets one (the power feature reads it)."""
    return {pool: site.pue for site in (getattr(scenario, "sites", None) or []) if site.pue is not None
            for pool in site.pools}


def _check(scenario) -> None:
    sites = scenario.sites
    for key in ("wan", "sites_policy"):
        if getattr(scenario, key, None) is not None and not sites:
            raise _error(scenario, f"{key} needs sites (the sites it names)", key)
    if not sites:
        return
    pools = [p.name for p in scenario.cluster.pools]
    names, placed = set(), {}
    for i, site in enumerate(sites):
        if site.power_cap_mode is not None and site.power_cap_kw is None:
            raise _error(scenario, "power_cap_mode needs power_cap_kw (the cap to enforce or report)",
                         f"sites[{i}].power_cap_mode")
        if site.name in names:
            raise _error(scenario, f"site names must be unique; {site.name!r} is repeated", f"sites[{i}].name")
        names.add(site.name)
        for j, pool in enumerate(site.pools):
            if pool not in pools:
                raise _error(scenario, f"no pool named {pool!r}; pools: {', '.join(pools)}", f"sites[{i}].pools[{j}]")
            if pool in placed:
                raise _error(scenario, f"pool {pool!r} is already at site {placed[pool]!r}; a pool is at one site",
                             f"sites[{i}].pools[{j}]")
            placed[pool] = site.name
    missing = [p for p in pools if p not in placed]
    if missing:
        raise _error(scenario, f"every pool belongs to a site; not placed: {', '.join(missing)}", "sites")
    pairs = set()
    for i, link in enumerate(scenario.wan or []):
        for name in link.between:
            if name not in names:
                raise _error(scenario, f"no site named {name!r}; sites: {', '.join(s.name for s in sites)}",
                             f"wan[{i}].between")
        pair = frozenset(link.between)
        if pair in pairs:
            raise _error(scenario, f"a second link between {link.between[0]} and {link.between[1]}", f"wan[{i}].between")
        pairs.add(pair)


def _job_homes(setup, index: dict[str, int]) -> tuple[list[int], np.ndarray]:
    jobs = setup.jobs
    n = len(jobs)
    home = [-1] * n
    if "home_site" in jobs.columns:
        values = jobs["home_site"].astype(object).where(jobs["home_site"].notna(), None).tolist()
        for row, name in enumerate(values):
            if name is not None:
                if name not in index:
                    raise _error(setup.scenario, f"job {jobs['job_id'].iloc[row]!r} has home_site {name!r}; "
                                 f"sites: {', '.join(index)}", "workload")
                home[row] = index[name]
    input_gb = np.zeros(n)
    if "input_gb" in jobs.columns:
        input_gb = np.nan_to_num(jobs["input_gb"].to_numpy(dtype=float, na_value=np.nan), nan=0.0)
    return home, input_gb


def _power_cap(setup, busy_w: np.ndarray, base_w: np.ndarray, site_of_pool: np.ndarray) -> PowerCap | None:
    """The guard of the sites whose cap is enforced, set on their pools; None when none is. Refuses a cap
    below the site's idle draw, and jobs that no pool could ever start under its site's cap (they would
    wait for ever, and hold up those behind them under a blocking policy)."""
    scenario, cluster = setup.scenario, setup.cluster
    caps = {s: site.power_cap_kw * 1e3 for s, site in enumerate(scenario.sites) if site.power_cap_mode == "enforce"}
    if not caps:
        return None
    guard = PowerCap(site_of_pool, busy_w, base_w, caps)
    for s, cap in caps.items():
        if guard.base[s] > cap * (1 + CAP_TOLERANCE):
            raise _error(scenario, f"site {scenario.sites[s].name!r} draws {guard.base[s] / 1e3:,.1f} kW with every "
                         f"device idle (times its PUE), above its power_cap_kw {cap / 1e3:g}: no job could ever "
                         "start there", f"sites[{s}].power_cap_kw")
    for pool in cluster.pools:
        if guard.watches(pool.index):
            pool.guard = guard
    jobs = setup.jobs
    device = jobs["device"] if "device" in jobs.columns else pd.Series(None, index=jobs.index, dtype=object)
    for (gpus, dev), rows in jobs.groupby([jobs["gpus"], device.where(device.notna(), "")], sort=True):
        pools = [p for p in cluster.candidate_pools(dev or None) if p.capacity >= gpus]
        if pools and all(p.guard is not None and not p.guard.can_ever_admit(p, int(gpus)) for p in pools):
            s = guard.site_of[pools[0].index]
            need = guard.base[s] + int(gpus) * guard.watts[pools[0].index]
            ids = ", ".join(map(str, rows["job_id"].head(3)))
            raise _error(scenario, f"{len(rows)} job(s) of {int(gpus)} devices (e.g. {ids}) would take site "
                         f"{scenario.sites[s].name!r} to {need / 1e3:,.1f} kW, over its power_cap_kw "
                         f"{caps[s] / 1e3:g}, and no other pool can hold them: they could never start",
                         f"sites[{s}].power_cap_kw")
    return guard


def build(setup) -> list:
    scenario = setup.scenario
    _check(scenario)
    sites = scenario.sites
    if not sites:
        return []
    pool_specs, cluster = scenario.cluster.pools, setup.cluster
    index = {site.name: s for s, site in enumerate(sites)}
    site_of = {p.name: index[site.name] for site in sites for p in pool_specs if p.name in site.pools}
    site_of_pool = np.array([site_of[p.name] for p in pool_specs], dtype=np.int64)
    power = [pool_power(p.device, p.nodes, p.devices_per_node, scenario.power.idle_fraction,
                        sites[site_of[p.name]].pue or scenario.power.pue) for p in pool_specs]
    busy_w = np.array([0.0 if p.burst else w.per_busy_w for p, w in zip(pool_specs, power, strict=True)])
    base_w = np.array([0.0 if p.burst else w.base_w for p, w in zip(pool_specs, power, strict=True)])
    _power_cap(setup, busy_w, base_w, site_of_pool)  # sets itself on the capped pools
    links = {}
    for i, spec in enumerate(scenario.wan or []):
        a, b = sorted(index[name] for name in spec.between)
        links[(a, b)] = Link(i, f"{sites[a].name}-{sites[b].name}", spec.gbps / 8.0, spec.latency_ms / 1e3,
                             spec.usd_per_gb)
    stats = SiteStats(list(sites), site_of_pool, busy_w, base_w, list(links.values()), len(setup.jobs),
                      costed=scenario.cost is not None)
    home, input_gb = _job_homes(setup, index)
    policy = scenario.sites_policy or SitesPolicy()
    if policy.policy == "home" and max(home, default=-1) < 0:
        return [stats]  # no job is held to a site: nothing to decide
    spot = {spec.pool for spec in getattr(scenario, "spot", None) or []}
    burst = [i for i, p in enumerate(pool_specs) if p.burst]
    first = frozenset(i for i in burst if (pool_specs[i].name in spot) == (policy.prefer == "spot"))
    cluster.set_sites({i: sites[s].name for i, s in enumerate(site_of_pool.tolist())},
                      first if policy.prefer is not None else frozenset())
    pools_of = [[p for p in cluster.pools if site_of_pool[p.index] == s] for s in range(len(sites))]
    args = (stats, policy, pools_of, [s.curve("usd_per_kwh") for s in sites], [s.curve("gco2e_per_kwh") for s in sites],
            links, home, input_gb)
    placer = SpillPlacer(*args, after=policy.after) if policy.policy == "spill-after" else SitePlacer(*args)
    _check_routes(setup, placer)
    return [placer, stats]


def _could_run(pool, job) -> bool:
    """Whether `pool` could ever run `job` as it asks: a torus pool the slice the job names, or else the
    standard slice of its size, in some orientation; another pool its device count."""
    if isinstance(pool, TorusPool):
        return pool.job_shape(job) is not None
    return pool.capacity >= job.gpus


def _check_routes(setup, placer: SitePlacer) -> None:
    """Refuses jobs whose data must move (their home cannot hold them) but reaches no site that can: no
    route of links leads there, and they would wait for ever."""
    jobs, names = setup.jobs, placer.names

    def column(name):  # missing values as "", so that groupby keeps their rows
        values = jobs[name] if name in jobs.columns else pd.Series(None, index=jobs.index, dtype=object)
        return values.where(values.notna(), "").to_numpy()

    keys = pd.DataFrame({"home": placer.home, "gpus": jobs["gpus"].to_numpy(), "device": column("device"),
                         "shape": column("slice_shape"), "moves": placer.input_gb > 0})
    keys = keys[(keys["home"] >= 0) & keys["moves"]]
    for (home, gpus, dev, _), rows in keys.groupby(["home", "gpus", "device", "shape"], sort=True):
        # one of the group's jobs: they ask for the same devices and name the same slice, if any
        job = SimpleNamespace(gpus=int(gpus), device=dev or None, index=int(rows.index[0]))
        if placer._can_hold(home, job):
            continue
        able = [s for s in range(len(names)) if placer._can_hold(s, job)]
        if able and not any((home, s) in placer.routes for s in able):
            ids = ", ".join(map(str, jobs["job_id"].iloc[rows.index[:3]]))
            raise _error(setup.scenario, f"{len(rows)} job(s) of {int(gpus)} devices (e.g. {ids}) have their data at "
                         f"site {names[home]!r}, which cannot hold them, and no route of links leads to a site "
                         f"that can ({', '.join(names[s] for s in able)})", "wan")
