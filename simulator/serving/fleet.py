"""The fleet: every service's replicas, the routers, and one arrival feeder over all requests.

The feeder walks the request table in arrival order (one calendar entry at a time, at the next arrival
instant; ARCHITECTURE: one arrival feeder, not one process per request). Each arrival goes to its
service's router, which picks a replica; a replica idle until then starts an iteration at once (after
every arrival of that instant is routed). A replica's boundary first feeds the arrivals of its instant,
so a request arriving exactly at a boundary is admitted there. Requests that can never be served (a
prompt over the replica's max_batched_tokens without chunked prefill, or a KV cache larger than the replica's) are rejected on
arrival and never routed.

Replicas may come and go (autoscaling, features/serving.py): the routers pick among a service's ready
replicas (`active`); a request arriving while none is ready waits in the service's queue (`queued`) and
is routed when one becomes ready (`activate`), and `on_starved` is told of the first to wait; a
service's `wake` hook, when set, is called at its next arrival. A replica taken out of routing
(`drain`) finishes what it holds; `on_drained` is told when its last request leaves. No calendar
entry is added for any of this.

Closed-loop sessions (ClosedLoopFleet, below) send a session's later turn when its previous one has
left, plus its think time; a fleet without them is a plain Fleet and does none of that work.

`simulate` runs a fleet on a calendar of its own (tests, benchmarks); in a scenario run the serving
feature (features/serving.py) runs it on the engine's calendar, so training and serving share a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from heapq import heappop, heappush

import numpy as np

from simulator.engine.calendar import Calendar, Environment
from simulator.serving.disagg import DecodeReplica, DisaggGroup
from simulator.serving.paged import PagedReplica
from simulator.serving.prefix import CachingReplica, PagedCachingReplica
from simulator.serving.replica import NO_LIMIT, Replica, least_outstanding, least_outstanding_tokens

COMPLETED, REJECTED, UNFINISHED, UNSENT = "completed", "rejected", "unfinished", "unsent"


@dataclass
class ServiceRuntime:
    """A service as the fleet runs it: its replicas' cost model and scheduler limits, and its router."""

    name: str
    replicas: int
    cost: object  # prefill(n, tokens) -> s; decode(b) -> (A, B); with chunked prefill mixed(b, T, c) -> s
    max_num_seqs: int
    max_batched_tokens: int
    kv_blocks: int
    block_size: int
    router: str = "round-robin"
    chunked_prefill: bool = False
    paged_kv: bool = False  # allocate KV blocks as tokens are written, preempting when out (serving/paged.py)
    swap_s_per_block: float | None = None  # paged: preempt by swap at this many seconds per block; None: recompute
    disaggregated: tuple[int, int] | None = None  # (prefill, decode) replicas, adding up to `replicas` (disagg.py)
    transfer_s_per_token: float = 0.0  # disaggregated: seconds to send one prompt token's KV to a decode replica
    link_gbs: tuple[float, float] = (1.0, 1.0)  # disaggregated: a prefill replica's scale-out egress, a decode
    # replica's ingress (GB/s; only their ratio matters): concurrent KV transfers share them (disagg.py)
    flow_gbs: tuple[float, float] | None = None  # disaggregated with a tp of its own per group: the GB/s a lone
    # transfer puts on the egress and the ingress (None: min(link_gbs) on each, the groups' tp being equal)
    decode_cost: object = None  # disaggregated on a pool or with a layout of its own: the decode group's cost
    # model (None: `cost`)
    decode_kv_blocks: int | None = None  # and its replicas' KV blocks (None: `kv_blocks`)
    prefix_caching: bool = False  # replicas cache finished session turns' contexts (serving/prefix.py)
    kv_window: tuple[int, int, int] | None = None  # (layers, windowed layers, window): a request's reservation
    # counts a sliding-window layer's KV up to the window (reserved allocation: reserved_blocks)


def reserved_blocks(services: list[ServiceRuntime], total: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Blocks of each request's whole KV cache (prompt + output = `total` tokens) in its service's blocks of
    block_size tokens of every layer. With a sliding window (`kv_window`) a windowed layer holds only the
    last `window` tokens (vLLM's and SGLang's sliding-window KV managers free what falls out of it), so
    the cache is layers * total - windowed * max(0, total - window) layer-tokens (perf/decode.kv_cache_bytes),
    counted here in whole blocks of all layers."""
    block = np.array([s.block_size for s in services], dtype=np.int64)[service]
    blocks = -(-total // block)
    for i, svc in enumerate(services):
        if svc.kv_window is not None:
            layers, windowed, window = svc.kv_window
            mine = service == i
            layer_tokens = layers * total[mine] - windowed * np.maximum(0, total[mine] - window)
            blocks[mine] = -(-layer_tokens // (layers * block[mine]))
    return blocks


# The routers that pick the least of a key over the ready replicas (the first on ties).
ROUTER_KEYS = {"least-outstanding": least_outstanding, "least-outstanding-tokens": least_outstanding_tokens}


class Fleet:
    def __init__(self, calendar: Calendar, services: list[ServiceRuntime], arrival: np.ndarray,
                 prompt: np.ndarray, output: np.ndarray, service: np.ndarray, t0: float = 0.0,
                 session: np.ndarray | None = None):
        """Requests are columns, one row each: arrival (seconds after `t0`), prompt and output tokens,
        the index of their service in `services`, and optionally their session (-1: none); they are fed
        in arrival order (stable)."""
        self.calendar = calendar
        self.services = services
        self.t0 = t0
        n = len(arrival)
        self.session = None if session is None else np.asarray(session, dtype=np.int64).tolist()
        # per request, the prompt tokens a prefix cache held (only with prefix caching)
        self.cached = [0] * n if any(s.prefix_caching for s in services) else None
        self._home: dict[int, Replica] = {}  # session -> the replica of its latest turn (session affinity)
        self.order = np.argsort(np.asarray(arrival, dtype=float), kind="stable").tolist()
        self.arrival = (np.asarray(arrival, dtype=float) + t0).tolist()
        self.prompt = np.asarray(prompt, dtype=np.int64).tolist()
        self.output = np.asarray(output, dtype=np.int64).tolist()
        self.service = np.asarray(service, dtype=np.int64).tolist()
        self.blocks = reserved_blocks(services, np.asarray(prompt, dtype=np.int64) + np.asarray(output, dtype=np.int64),
                                      np.asarray(service, dtype=np.int64)).tolist() if n else []
        self.first = [float("nan")] * n
        self.end = [float("nan")] * n
        self.replica = [-1] * n
        self.rejected = [False] * n
        self.preemptions = [0] * n
        self.replicas: list[list[Replica]] = []  # every replica each service has had, by index
        self.active: list[list[Replica]] = []  # the replicas each service's router picks from
        self.disagg: list[DisaggGroup | None] = []
        for i, s in enumerate(services):
            group = DisaggGroup(self, i, s, s.transfer_s_per_token) if s.disaggregated else None
            self.disagg.append(group)
            if group is not None:  # routed to its prefill replicas; the group routes to its decode replicas
                self.replicas.append(group.prefill + group.decode)
                self.active.append(list(group.prefill))
            else:
                self.replicas.append([self._replica(s, i) for i in range(s.replicas)])
                self.active.append(list(self.replicas[-1]))
        self.queued = [deque() for _ in services]  # requests arrived while no replica was ready
        self.outstanding = [0] * len(services)  # requests arrived, not rejected and not finished
        # a disaggregated request's whole KV must fit a decode replica too (on its own pool, its own size)
        self._kv_cap = [min(s.kv_blocks, s.decode_kv_blocks or s.kv_blocks) for s in services]
        self._max_prompt = [NO_LIMIT if s.chunked_prefill else s.max_batched_tokens for s in services]
        self._draining: set[Replica] = set()
        self.on_starved = None  # called with (service, now) when a request starts waiting for a replica
        self.on_drained = None  # called with (service, replica, now) when a draining replica's last request left
        self.wake: list = [None] * len(services)  # per service, called with (service, now) at its next arrival
        self._key = [ROUTER_KEYS.get(s.router) for s in services]
        self._affinity = [s.router == "session-affinity" for s in services]
        self._rr = [0] * len(services)
        self._next = 0  # position in `order` of the next request to arrive
        self._feed_at = None  # the time of the feeder's pending calendar entry
        self.in_system = 0  # requests routed and not finished
        self.area = 0.0  # integral of in_system over time (Little's law: tests)
        self._last = t0
        self.last_end = [t0] * len(services)
        self.on_done = None  # called with (service index, now) when a service's last request has left

    # -- running -----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.order:
            self._feed_at = self.arrival[self.order[0]]
            self.calendar.at(self._feed_at, self._on_feed)
        self._remaining = [0] * len(self.services)
        for r in range(len(self.arrival)):
            self._remaining[self.service[r]] += 1
        for i, left in enumerate(self._remaining):
            if not left and self.on_done is not None:
                self.on_done(i, self.t0)

    def _on_feed(self, due) -> None:
        now = self.calendar.env._now
        if self._feed_at == now:
            self._feed_at = None
        self.feed(now)

    def feed(self, now: float) -> None:
        """Route every request arriving at or before `now` not yet routed; start the replicas they woke."""
        order, arrival = self.order, self.arrival
        i, n = self._next, len(order)
        if i >= n or arrival[order[i]] > now:
            return
        woken = []
        self.area += self.in_system * (now - self._last)
        self._last = now
        while i < n and arrival[order[i]] <= now:
            self._route(order[i], now, woken)
            i += 1
        self._next = i
        for rep in woken:
            rep.schedule(now)
        if i < n:
            following = arrival[order[i]]
            if self._feed_at is None or following < self._feed_at:
                self._feed_at = following
                self.calendar.at(following, self._on_feed)

    def _route(self, r: int, now: float, woken: list) -> None:
        """Request r arrives at `now`: rejected (it can never fit), queued (no replica ready) or routed; a
        replica it wakes joins `woken`, started once the instant's arrivals are all routed."""
        s = self.service[r]
        if self.blocks[r] > self._kv_cap[s] or self.prompt[r] > self._max_prompt[s]:
            self.rejected[r] = True
            self._count_out(s, now)
            return
        self.outstanding[s] += 1
        if self.wake[s] is not None:  # an autoscaled service at rest: its evaluations resume
            self.wake[s](s, now)
        replicas = self.active[s]
        if not replicas:  # none ready (scaled to zero, or still provisioning)
            self.in_system += 1
            queued = self.queued[s]
            queued.append(r)
            if len(queued) == 1 and self.on_starved is not None:
                self.on_starved(s, now)
            return
        rep = self._pick(s, replicas, r)
        self.replica[r] = rep.index
        self.in_system += 1
        if rep.arrive(r, now):
            woken.append(rep)

    def _pick(self, s: int, replicas: list[Replica], r: int) -> Replica:
        """Service s's router for request r: the replica with the fewest requests or prompt tokens
        outstanding (the first on ties), the replica of its session's latest turn, or the next in turn."""
        key = self._key[s]
        if key is not None:
            return key(replicas)
        if self._affinity[s]:
            return self._affine(replicas, r)
        k = self._rr[s]
        self._rr[s] = k + 1 if k + 1 < len(replicas) else 0
        return replicas[k]

    def _affine(self, replicas: list[Replica], r: int) -> Replica:
        """Session affinity: a session's later turn goes where its latest turn went while that replica is
        ready and routed to; anything else goes to the fewest outstanding requests (and is remembered)."""
        session = self.session[r] if self.session is not None else -1
        if session < 0:
            return least_outstanding(replicas)
        rep = self._home.get(session)
        if rep is None or rep not in replicas:
            rep = self._home[session] = least_outstanding(replicas)
        return rep

    def left(self, r: int, now: float) -> None:
        """Request `r` received its last token at `now` (called by its replica)."""
        self.area += self.in_system * (now - self._last)
        self._last = now
        self.in_system -= 1
        s = self.service[r]
        self.outstanding[s] -= 1
        if self._draining:
            group = self.disagg[s]
            if group is None:
                self.check_drained(s, self.replicas[s][self.replica[r]], now)
            elif group.decode_replica[r] >= 0:  # a prefill replica is checked at its prefill's end (disagg.py)
                self.check_drained(s, self.replicas[s][group.decode_replica[r]], now)
        self._count_out(s, now)

    def check_drained(self, s: int, rep: Replica, now: float) -> None:
        """`on_drained` is told when a draining replica holds no request any more."""
        if not rep.outstanding and rep in self._draining:
            self._draining.discard(rep)
            self.on_drained(s, rep, now)

    # -- replicas coming and going (autoscaling) -------------------------------------------------------------
    def _replica(self, s: ServiceRuntime, index: int) -> Replica:
        if s.prefix_caching and s.paged_kv:  # not with chunked prefill (the scenario refuses it)
            return PagedCachingReplica(index, self, s.cost, s.max_num_seqs, s.max_batched_tokens, s.kv_blocks,
                                       s.block_size, s.swap_s_per_block)
        if s.prefix_caching:
            return CachingReplica(index, self, s.cost, s.max_num_seqs, s.max_batched_tokens, s.kv_blocks,
                                  s.block_size, s.chunked_prefill)
        if s.paged_kv:
            return PagedReplica(index, self, s.cost, s.max_num_seqs, s.max_batched_tokens, s.kv_blocks, s.block_size,
                                s.swap_s_per_block, s.chunked_prefill)
        return Replica(index, self, s.cost, s.max_num_seqs, s.max_batched_tokens, s.kv_blocks, s.chunked_prefill)

    def add_replica(self, s: int, decode: bool = False) -> Replica:
        """A new replica of service `s` (the next index), not yet routed to: `activate` it once ready. Of a
        disaggregated service: a decode replica when `decode`, else a prefill one."""
        group, index = self.disagg[s], len(self.replicas[s])
        rep = self._replica(self.services[s], index) if group is None else group.add(decode, index)
        self.replicas[s].append(rep)
        return rep

    def activate(self, s: int, rep: Replica, now: float) -> None:
        """`rep` is ready: the routers may pick it, and the requests waiting for a replica are routed now (a
        decode replica: the disaggregated group's router may pick it; no transfer waits for one)."""
        if isinstance(rep, DecodeReplica):
            self.disagg[s].active.append(rep)
            return
        self.active[s].append(rep)
        queued = self.queued[s]
        if not queued:
            return
        woken = []
        replicas = self.active[s]
        while queued:
            r = queued.popleft()
            target = self._pick(s, replicas, r)
            self.replica[r] = target.index
            if target.arrive(r, now):
                woken.append(target)
        for target in woken:
            target.schedule(now)

    def drain(self, s: int, rep: Replica) -> bool:
        """Route nothing more to `rep`; it finishes the requests it holds. True when it holds none (its devices
        may go at once), else `on_drained` is called when its last request leaves."""
        if isinstance(rep, DecodeReplica):
            self.disagg[s].drain(rep)
        else:
            active = self.active[s]
            active.remove(rep)
            if self._rr[s] >= len(active):
                self._rr[s] = 0
        if not rep.outstanding:
            return True
        self._draining.add(rep)
        return False

    def forget(self, rep: Replica) -> None:
        """`rep` leaves (its service is done): no longer draining."""
        self._draining.discard(rep)

    def _count_out(self, s: int, now: float) -> None:
        self._remaining[s] -= 1
        if now > self.last_end[s]:
            self.last_end[s] = now
        if not self._remaining[s] and self.on_done is not None:
            self.on_done(s, now)

    # -- what it did ---------------------------------------------------------------------------------------
    def status(self) -> list[str]:
        return [REJECTED if rej else (COMPLETED if end == end else UNFINISHED)
                for rej, end in zip(self.rejected, self.end, strict=True)]


class ClosedLoopFleet(Fleet):
    """A fleet with closed-loop session turns: request r with follows[r] = p >= 0 is sent think[r] after
    request p's last token (its arrival column is NaN until then), and never when p is rejected or does not
    finish (its status: UNSENT). The other requests arrive at their times as in Fleet.

    A plain Python subclass, so that a fleet without closed-loop turns pays nothing for them: the turns
    sent wait in a heap of (arrival, request) beside Fleet's arrival order, each with a calendar entry at
    its arrival; at an instant both have arrivals, Fleet's are routed first, then the turns by (arrival,
    request), before any replica they woke starts."""

    def __init__(self, calendar: Calendar, services: list[ServiceRuntime], arrival: np.ndarray,
                 prompt: np.ndarray, output: np.ndarray, service: np.ndarray, t0: float = 0.0,
                 session: np.ndarray | None = None, follows: np.ndarray | None = None,
                 think: np.ndarray | None = None):
        super().__init__(calendar, services, arrival, prompt, output, service, t0, session)
        n = len(arrival)
        follows = np.full(n, -1, dtype=np.int64) if follows is None else np.asarray(follows, dtype=np.int64)
        later = np.flatnonzero(follows >= 0)
        then = np.full(n, -1, dtype=np.int64)
        then[follows[later]] = later
        self.then = then.tolist()  # per request, its session's next closed-loop turn (-1: none)
        self.think = (np.zeros(n) if think is None else np.asarray(think, dtype=float)).tolist()
        arrival = self.arrival
        for r in later.tolist():
            arrival[r] = float("nan")
        sent = (follows < 0).tolist()
        self.order = [r for r in self.order if sent[r]]
        self._later: list[tuple[float, int]] = []

    def feed(self, now: float) -> None:
        order, arrival, later = self.order, self.arrival, self._later
        i, n = self._next, len(order)
        if (i >= n or arrival[order[i]] > now) and (not later or later[0][0] > now):
            return
        woken = []
        self.area += self.in_system * (now - self._last)
        self._last = now
        while i < n and arrival[order[i]] <= now:
            self._route(order[i], now, woken)
            i += 1
        self._next = i
        while later and later[0][0] <= now:
            self._route(heappop(later)[1], now, woken)
        for rep in woken:
            rep.schedule(now)
        if i < n:
            following = arrival[order[i]]
            if self._feed_at is None or following < self._feed_at:
                self._feed_at = following
                self.calendar.at(following, self._on_feed)

    def _route(self, r: int, now: float, woken: list) -> None:
        """Fleet's routing of one arrival; a rejected turn's session sends nothing more."""
        Fleet._route(self, r, now, woken)
        if self.rejected[r]:
            nxt = self.then[r]
            while nxt >= 0:  # unsent: counted out now
                self._count_out(self.service[r], now)
                nxt = self.then[nxt]

    def left(self, r: int, now: float) -> None:
        Fleet.left(self, r, now)
        nxt = self.then[r]
        if nxt >= 0:  # its session's next turn: sent think time after this last token
            t = now + self.think[nxt]
            self.arrival[nxt] = t
            heappush(self._later, (t, nxt))
            self.calendar.at(t, self._on_later)

    def _on_later(self, due) -> None:
        self.feed(self.calendar.env._now)

    def status(self) -> list[str]:
        return [UNSENT if a != a else st for a, st in zip(self.arrival, Fleet.status(self), strict=True)]


def simulate(services: list[ServiceRuntime], arrival, prompt, output, service=None, session=None,
             follows=None, think=None) -> Fleet:
    """Run a fleet alone on a calendar of its own, to the last request; returns it (its `first`, `end`,
    `replica` columns and its replicas' counters). With `follows` (closed-loop turns: the previous turn's
    row, -1 for none) and `think` (their think times): a ClosedLoopFleet."""
    env = Environment()
    calendar = Calendar(env)
    service = np.zeros(len(arrival), dtype=np.int64) if service is None else service
    if follows is None:
        fleet = Fleet(calendar, services, arrival, prompt, output, service, session=session)
    else:
        fleet = ClosedLoopFleet(calendar, services, arrival, prompt, output, service, session=session,
                                follows=follows, think=think)
    fleet.start()
    env.run()
    return fleet
