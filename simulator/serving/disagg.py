"""Disaggregated prefill and decode (Splitwise, DistServe): a service whose replicas are split into a
prefill group and a decode group.

A request is routed to a prefill replica (the service's router), which runs prompts only: the
scheduler of replica.py with every request leaving at the end of its prefill, its first token (TTFT
ends there), and with the prompt's blocks as its KV. Its KV, prompt tokens x one token's KV bytes per
device (perf/decode.kv_cache_bytes), is then sent to a decode replica over the scale-out network: the
router over the decode group (counting requests sent there, in transfer or not finished) picks the
replica at the prefill's end, and the transfer is a flow out of the prefill replica's links and into
the decode replica's (each replica's tp devices x a device's scale-out bandwidth). Alone, every device
sends its shard over its own link, so the transfer lasts prompt x bytes per token per device /
bandwidth; concurrent transfers share the links max-min fairly (network/maxmin.py), their rates
recomputed when one starts or ends. A request with one output token is done at its prefill and sends
nothing.

With a tp of its own per group (`prefill_layout`, `decode_layout`), each prefill device sends its own
shard and each decode device receives its own, so a lone transfer lasts the longer of the two sides'
(shard per token / a device's bandwidth) x prompt, and puts on each replica's links the bytes its side
holds over that time.

When its KV has arrived the request joins its decode replica's waiting requests. A decode replica
(with its own cost model and KV size when its group is on a pool of its own or has a layout of its own) runs decodes only: at each
boundary it admits waiting requests first come first served while the batch holds fewer than
`max_num_seqs` and each one's whole KV (prompt + output, reserved as in replica.py) fits, and they
decode from the step that starts there, with no prefill iteration: the same closed-form jump between
changes of the batch, and an arrival during a stretch is admitted at the first boundary after it.

The prefill replica frees the prompt's blocks at its prefill's end (the copy is assumed to be
streamed out as the layers finish, as Splitwise does).

Autoscaled (features/serving.py), each group gains and drains replicas on its own: new ones take the
next index of the service (`add`), the routers pick among each group's ready replicas (`active`, the
fleet's list for the prefill group), and a draining replica's last request is reported to the fleet
when it leaves either group. `decoding` counts the requests past their prefill and not finished (in
transfer, waiting at a decode replica or decoding): the decode group's outstanding requests.
"""

from __future__ import annotations

from heapq import heappush

from simulator.network.maxmin import max_min_shares
from simulator.serving.replica import Replica, least_outstanding, least_outstanding_tokens


class DecodeReplica(Replica):
    """A replica that only decodes: admitted requests join the running batch at once (their KV arrived)."""

    def __init__(self, group: DisaggGroup, index: int, rt):
        cost, kv_blocks = rt.decode_cost or rt.cost, rt.decode_kv_blocks or rt.kv_blocks  # its own pool's
        super().__init__(index, group.fleet, cost, rt.max_num_seqs, rt.max_batched_tokens, kv_blocks)
        self.disagg = group  # (`group` is a replica's prefill group of requests)

    def _leave(self, r: int, now: float) -> None:
        self.disagg.decoding -= 1
        super()._leave(r, now)

    def expect(self, r: int) -> None:
        """Request `r`'s KV is on its way here: routed here, so the routers and a drain count it already."""
        self.outstanding += 1
        self.outstanding_tokens += self.prompt[r]

    def receive(self, r: int, now: float) -> bool:
        """Request `r`'s KV has arrived: `arrive`, which counts it again (hence the undo first)."""
        self.outstanding -= 1
        self.outstanding_tokens -= self.prompt[r]
        return self.arrive(r, now)

    def schedule(self, now: float) -> None:
        waiting, fleet = self.waiting, self.fleet
        if waiting:
            blocks, output, prompt = fleet.blocks, fleet.output, fleet.prompt
            kv, cap, it = self.kv_used, self.kv_blocks, self.it
            joined = False
            while waiting and self.n_running < self.max_seqs:
                r = waiting[0]
                if kv + blocks[r] > cap:
                    break
                waiting.popleft()
                kv += blocks[r]
                heappush(self.finishing, (it + output[r] - 1, r))
                self.start_it[r] = it
                self.ctx_base += prompt[r] + 1 - it
                self.n_running += 1
                joined = True
            if joined:
                self._set_kv(kv, now)
        self._decode_or_idle(now)


class _Ones:
    """output[r] == 1 for every request: a prefill replica's requests leave at their first token."""

    def __getitem__(self, r: int) -> int:
        return 1


class _PrefillView:
    """What a prefill replica reads of the fleet: the prompts, every output one token, the prompts'
    blocks; its `end` is the prefill's end, and a request leaving it goes on to its KV transfer."""

    def __init__(self, fleet, group: DisaggGroup, block_size: int):
        self.calendar = fleet.calendar
        self.prompt = fleet.prompt
        self.first = fleet.first
        self.output = _Ones()
        self.blocks = [-(-p // block_size) for p in fleet.prompt]
        self.end = group.prefill_end
        self.feed = fleet.feed
        self.left = group.prefilled

# A transfer whose time left at its full rate is below this fraction of its whole is due at once (so
# transfers sharing a link equally arrive at one instant, not a rounding error apart).
SNAP = 1e-9


class _Transfer:
    """A request's KV in flight: from prefill replica `src` to decode replica `rep`; `left` is the seconds it
    would still take at its full rate, `share` the fraction of that rate it gets since `since`."""

    __slots__ = ("r", "src", "rep", "whole", "left", "share", "since", "due")

    def __init__(self, r: int, src: int, rep: DecodeReplica, whole: float, now: float):
        self.r, self.src, self.rep, self.whole, self.left, self.since = r, src, rep, whole, whole, now
        self.share = 0.0
        self.due = None


class DisaggGroup:
    """A disaggregated service: `prefill` replicas (routed to by the fleet) and `decode` replicas."""

    def __init__(self, fleet, s: int, rt, transfer_s_per_token: float):
        n = len(fleet.prompt)
        self.fleet = fleet
        self.s = s
        self.rt = rt
        self.transfer_s = transfer_s_per_token  # at a transfer's full rate, the slower of its two links
        self.egress_gbs, self.ingress_gbs = rt.link_gbs
        self.rate = min(rt.link_gbs)  # a transfer's full rate (GB/s): what it gets alone
        # what it puts on the prefill replica's egress and the decode replica's ingress alone: its rate on both,
        # or with a tp of its own per group the bytes each side's devices hold, over the lone transfer's time
        self.loads = rt.flow_gbs or (self.rate, self.rate)
        self.flows: list[_Transfer] = []
        self.prefill_end = [float("nan")] * n
        self.decode_replica = [-1] * n
        self.decoding = 0
        self.view = _PrefillView(fleet, self, rt.block_size)
        n_pf, n_dec = rt.disaggregated
        self.prefill = [self._prefill_replica(i) for i in range(n_pf)]
        self.decode = [DecodeReplica(self, n_pf + i, rt) for i in range(n_dec)]
        self.active = list(self.decode)  # the decode replicas the router picks from
        # the decode group's router: by outstanding tokens, or requests (session affinity too: no prefix
        # cache to return to on a decode replica), or in turn
        self._key = {"least-outstanding-tokens": least_outstanding_tokens, "round-robin": None}.get(rt.router,
                                                                                                 least_outstanding)
        self._rr = 0

    def _prefill_replica(self, index: int) -> Replica:
        rt = self.rt
        return Replica(index, self.view, rt.cost, rt.max_num_seqs, rt.max_batched_tokens, rt.kv_blocks)

    def add(self, decode: bool, index: int) -> Replica:
        """A new replica of the decode or the prefill group, numbered `index`, not yet routed to."""
        if decode:
            rep = DecodeReplica(self, index, self.rt)
            self.decode.append(rep)
        else:
            rep = self._prefill_replica(index)
            self.prefill.append(rep)
        return rep

    def drain(self, rep: Replica) -> None:
        """Route no more transfers to decode replica `rep`."""
        self.active.remove(rep)
        if self._rr >= len(self.active):
            self._rr = 0

    def prefilled(self, r: int, now: float) -> None:
        """Request `r`'s prefill ended at `now` (its first token): done, or its KV goes to a decode replica."""
        fleet = self.fleet
        if fleet._draining:  # its prefill replica may have been waiting for it to drain
            fleet.check_drained(self.s, fleet.replicas[self.s][fleet.replica[r]], now)
        if fleet.output[r] == 1:
            fleet.end[r] = now
            fleet.left(r, now)
            return
        self.decoding += 1
        rep = self._route()
        rep.expect(r)
        self.decode_replica[r] = rep.index
        self.flows.append(_Transfer(r, fleet.replica[r], rep, fleet.prompt[r] * self.transfer_s, now))
        self._share(now)

    def _route(self) -> DecodeReplica:
        active = self.active
        if self._key is not None:
            return self._key(active)
        rep = active[self._rr]
        self._rr = (self._rr + 1) % len(active)
        return rep

    def _share(self, now: float) -> list[_Transfer]:
        """The flows in transfer share the links max-min fairly from `now`: each one's progress so far is
        counted at its old share, the ones it completes (due now but for rounding) are taken out and
        returned, and the ones whose share changed are due again at their new rate."""
        flows, done = self.flows, []
        for f in flows:
            if f.share:
                f.left -= (now - f.since) * f.share
                if f.left <= SNAP * f.whole:
                    done.append(f)
            f.since = now
        for f in done:
            flows.remove(f)
            f.due = None  # its entry still in the calendar is stale
        if not flows:
            return done
        if len(flows) == 1:  # alone: its full rate, exactly (a lone transfer lasts prompt x transfer_s)
            shares = [1.0]
        else:
            rate, capacity, loads = self.rate, {}, []
            load_out, load_in = self.loads
            for f in flows:
                out, into = ("out", f.src), ("in", f.rep.index)
                capacity[out], capacity[into] = self.egress_gbs, self.ingress_gbs
                loads.append({out: load_out, into: load_in})
            shares = max_min_shares([rate] * len(flows), loads, capacity)
        calendar = self.fleet.calendar
        for f, share in zip(flows, shares, strict=True):
            if share != f.share:
                f.share = share
                f.due = calendar.at(now + f.left / share, self._arrived, f)
        return done

    def _arrived(self, due) -> None:
        f = due.value
        if due is not f.due:  # rescheduled at a new share, or done with another since
            return
        now = self.fleet.calendar.env._now
        self.flows.remove(f)
        woken = []
        # the transfers ending at this instant are all in before their decode replicas start
        for g in [f, *self._share(now)]:
            if g.rep.receive(g.r, now):
                woken.append(g.rep)
        for rep in woken:
            self.fleet.calendar.at(now, self._start, rep)

    def _start(self, due) -> None:
        due.value.schedule(self.fleet.calendar.env._now)
