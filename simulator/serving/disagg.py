"""Disaggregated prefill and decode (Splitwise, DistServe): a service whose replicas are split into a
prefill group and a decode group.

A request is routed to a prefill replica (the service's router), which runs prompts only: the
scheduler of replica.py with every request leaving at the end of its prefill, its first token (TTFT
ends there), and with the prompt's blocks as its KV. Its KV, prompt tokens x one token's KV bytes per
device (perf/decode.kv_cache_bytes), is then sent to a decode replica over the scale-out network at
the pool device's scale-out bandwidth: every device of the replica sends its shard over its own link,
so the transfer lasts prompt x bytes per token per device / bandwidth (transfers do not contend). A
request with one output token is done at its prefill and sends nothing.

When its KV has arrived the request goes to a decode replica (the service's router over the decode
group, counting requests sent there and not finished). A decode replica runs decodes only: at each
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

from simulator.serving.replica import Replica, least_outstanding, least_outstanding_tokens


class DecodeReplica(Replica):
    """A replica that only decodes: admitted requests join the running batch at once (their KV arrived)."""

    def __init__(self, group: DisaggGroup, index: int, rt):
        super().__init__(index, group.fleet, rt.cost, rt.max_num_seqs, rt.max_batched_tokens, rt.kv_blocks)
        self.disagg = group  # (`group` is a replica's prefill group of requests)

    def _leave(self, r: int, now: float) -> None:
        self.disagg.decoding -= 1
        super()._leave(r, now)

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


class DisaggGroup:
    """A disaggregated service: `prefill` replicas (routed to by the fleet) and `decode` replicas."""

    def __init__(self, fleet, s: int, rt, transfer_s_per_token: float):
        n = len(fleet.prompt)
        self.fleet = fleet
        self.s = s
        self.rt = rt
        self.transfer_s = transfer_s_per_token
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
        fleet.calendar.at(now + fleet.prompt[r] * self.transfer_s, self._arrived, r)

    def _arrived(self, due) -> None:
        r = due.value
        now = self.fleet.calendar.env._now
        active = self.active
        if self._key is not None:
            rep = self._key(active)
        else:
            rep = active[self._rr]
            self._rr = (self._rr + 1) % len(active)
        self.decode_replica[r] = rep.index
        if rep.arrive(r, now):  # started once the transfers ending at this instant (queued before) are in
            self.fleet.calendar.at(now, self._start, rep)

    def _start(self, due) -> None:
        due.value.schedule(self.fleet.calendar.env._now)

