"""A serving replica with a paged KV cache (vLLM's block manager): blocks are allocated as tokens are
written, and a running sequence that needs a block when none is free makes the most recently admitted
sequences give theirs up (preemption), by recompute or by swap.

Blocks. A sequence of prompt p that has generated g tokens holds the KV of its first p + g - 1 tokens
(the last token it generated is written by its next decode step), in ceil((p + g - 1) / block_size)
blocks. Its prefill takes the prompt's ceil(p / block_size) blocks; the decode step that writes token
p + g takes a new block when (p + g - 1) is a multiple of block_size (the held blocks are full). A
finished request frees its blocks.

The scheduler without chunked prefill (vLLM V0's default), at each iteration boundary:

1. Unless sequences are swapped out, admit waiting requests first come first served while the batch
   holds fewer than `max_num_seqs`, their prompts fit `max_batched_tokens` together (the first of a
   group always does), and their prompt's blocks fit in the free blocks (no watermark); an iteration
   that admits prefills them and only them. A recomputed sequence's prompt is its prompt and the g
   tokens it had generated: its prefill writes their KV and gives its token g + 1 (its first token stays
   the first one's time).
2. Otherwise every running sequence decodes a token. When the blocks the step needs (one per sequence
   crossing a block boundary) exceed the free ones, the most recently admitted running sequence is
   preempted, then the next most recent, until they fit (the result of vLLM's loop over the running
   sequences oldest first, each preempting the newest while it cannot get its block). Recompute: its
   blocks are freed and it goes to the front of the waiting queue (several at once: oldest first).
   Swap: its blocks are copied to host memory and freed; it joins the swapped queue. With no preemption
   at this boundary, swapped sequences come back first preempted first while the batch has room and
   their blocks, and the step's, fit. Copies take `swap_s_per_block` per block, each way, before the
   step starts (arrivals during them wait for the end of that step).

With chunked prefill (`chunked=True`, vLLM V1's default: decodes first, then one prompt's chunk in the
token budget left), at each iteration boundary:

1. The decode step's blocks (one per running sequence crossing a block boundary) come first. When they
   exceed the free blocks, sequences are preempted by recompute, newest first: the prompt being
   prefilled (the most recently admitted) first, then the most recently admitted decoding sequences,
   until they fit (never the last one: a lone sequence's KV always fits, as the fleet rejects longer
   requests). Their blocks are freed and they go to the front of the waiting queue, oldest first. An
   iteration that preempts decodes only: nothing is admitted and no chunk runs (vLLM V1 schedules no
   waiting request in a step that preempted).
2. Otherwise, with budget left (max_batched_tokens - running > 0): when no prompt is in progress, the
   head of the waiting queue is admitted if the batch holds fewer than `max_num_seqs` and its first
   chunk's blocks fit beside the step's (no overtaking). The prompt in progress then takes its next
   chunk, c = min(its tokens left, budget left), and the blocks its KV grows by: a prompt prefilled q
   tokens holds ceil(q / block_size) blocks, so the chunk takes ceil((q + c) / block_size) -
   ceil(q / block_size), allocated as the chunk is prefilled (not at admission). When they do not fit
   beside the step's, the chunk waits (its blocks kept) and the iteration only decodes; the free blocks
   only fall until a sequence leaves, so it waits for the next change of the batch. (vLLM V1 would
   preempt that prompt, its newest request, and prefill it again later; waiting loses no work and
   keeps a stalled prompt from being re-prefilled at every iteration.) A mixed iteration's blocks (the
   step's and the chunk's) are counted from its start.
3. A recomputed request re-prefills its prompt and the g tokens it had generated, in chunks like any
   prompt; the last chunk gives its token g + 1 (its first token keeps its first time). Swap is not
   offered with chunked prefill (vLLM V1 preempts by recompute only).

The jump. Between two changes of the batch the running sequences decode, and a sequence admitted to
decoding at virtual iteration s crosses a block boundary at the iterations it with it = s - p (mod
block_size): the blocks needed per step are periodic, b per period. From the free blocks F at a
stretch's start the first step whose cumulative need exceeds F (F // b whole periods, then the
prefix of the period's crossings, sorted by offset) ends the stretch as a batch change, like a
finish or an admissible arrival; within a stretch the free blocks only fall, so an arrival that does
not fit at the first boundary after it does not fit later in the stretch either. With chunked prefill
an admission needs the first chunk's blocks beside those of the step after the boundary, which also
only grow: the same holds, and mixed iterations are events of their own as in replica.py.
"""

from __future__ import annotations

from heapq import heappop, heappush

from simulator.serving.replica import BOUNDARY, DECODE, IDLE, PREFILL, Replica


class PagedReplica(Replica):
    """A replica whose KV cache is allocated block by block. `swap_s_per_block`: None to preempt by
    recompute, else the seconds one block takes to copy between device and host memory (each way)."""

    def __init__(self, index: int, fleet, cost, max_num_seqs: int, max_batched_tokens: int, kv_blocks: int,
                 block_size: int, swap_s_per_block: float | None = None, chunked: bool = False):
        if chunked and swap_s_per_block is not None:
            raise ValueError("chunked prefill with a paged cache preempts by recompute only (as vLLM V1)")
        super().__init__(index, fleet, cost, max_num_seqs, max_batched_tokens, kv_blocks, chunked)
        self.pf_len = 0  # chunked: the prompt in progress's tokens to prefill (prompt + tokens generated before)
        self.bs = block_size
        self.swap_s = swap_s_per_block
        self.gen: dict[int, int] = {}  # tokens generated by a preempted (recompute) request when it left
        self.swapped: list[int] = []  # swapped-out requests, first preempted first (a short list)
        self.swap_state: dict[int, tuple[int, int]] = {}  # swapped request: (generated, blocks held)
        self.cnt: dict[int, int] = {}  # running sequences by the residue (s - p) mod block_size
        self.it0 = 0  # the stretch's first virtual iteration, and the free blocks at its start
        self.free0 = 0
        self.preemptions = 0
        self.swapped_blocks = 0  # blocks copied each way (out + in)

    # -- the running set ---------------------------------------------------------------------------------
    def _join(self, r: int, s: int) -> None:
        fleet = self.fleet
        p = fleet.prompt[r]
        self.start_it[r] = s
        heappush(self.finishing, (s + fleet.output[r] - 1, r))
        self.ctx_base += p + 1 - s
        self.n_running += 1
        key = (s - p) % self.bs
        self.cnt[key] = self.cnt.get(key, 0) + 1

    def _unjoin(self, r: int) -> int:
        """Take `r` out of the running set; returns its start iteration."""
        p = self.fleet.prompt[r]
        s = self.start_it.pop(r)
        self.ctx_base -= p + 1 - s
        self.n_running -= 1
        key = (s - p) % self.bs
        c = self.cnt[key] - 1
        if c:
            self.cnt[key] = c
        else:
            del self.cnt[key]
        return s

    def _next_finish(self) -> int:
        """The virtual iteration of the next running sequence's end (stale heap entries dropped)."""
        finishing, start_it, output = self.finishing, self.start_it, self.fleet.output
        while True:
            e, r = finishing[0]
            s = start_it.get(r)
            if s is not None and s + output[r] - 1 == e:
                return e
            heappop(finishing)

    def _consumed(self, k: int) -> int:
        """Blocks the first k steps of the stretch in flight take."""
        bs, it0 = self.bs, self.it0
        return sum(c * ((k - 1 - (key - it0) % bs) // bs + 1) for key, c in self.cnt.items())

    def _shortage(self, free: int, b: int) -> int:
        """The step (from 0) of the stretch starting now at which the blocks needed first exceed `free`."""
        bs, it0 = self.bs, self.it0
        m, rest = divmod(free, b)
        acc = 0
        for d, c in sorted(((key - it0) % bs, c) for key, c in self.cnt.items()):
            acc += c
            if acc > rest:
                return m * bs + d
        raise AssertionError("unreachable: a period's crossings add up to b")

    def _set_kv(self, kv: int, now: float, mean_since: int | None = None) -> None:
        """kv_used becomes `kv` at `now`; the area since the last change counts the mean of `mean_since`
        (the stretch's start) and `kv` when given (the cache grew step by step), else the old value."""
        old = self.kv_used if mean_since is None else (mean_since + kv) / 2
        self.kv_area += old * (now - self.kv_since)
        self.kv_since = now
        self.kv_used = kv
        if kv > self.kv_peak:
            self.kv_peak = kv

    def _first_chunk_blocks(self, r: int, b: int) -> int:
        """Chunked: the blocks waiting request `r`'s first chunk takes beside `b` running sequences."""
        return -(-min(self.fleet.prompt[r] + self.gen.get(r, 0), self.max_tokens - b) // self.bs)

    # -- events ------------------------------------------------------------------------------------------
    def arrive(self, r: int, now: float) -> bool:
        waiting = self.waiting
        waiting.append(r)
        self.outstanding += 1
        self.outstanding_tokens += self.fleet.prompt[r]
        phase = self.phase
        if phase == IDLE:
            self.phase = BOUNDARY
            self.periods.append(now)
            return True
        if phase == DECODE and len(waiting) == 1 and not self.swapped and self.n_running < self.admit_below \
                and self.pf < 0:
            k = 1 if now <= self.t_s else self._steps_until(now)
            if k < self.k:
                if self.chunked:  # its first chunk beside the blocks of the step after that boundary
                    fits = self._first_chunk_blocks(r, self.n_running) <= self.free0 - self._consumed(k + 1)
                else:
                    fits = -(-self.fleet.prompt[r] // self.bs) <= self.free0 - self._consumed(k)
                if fits:
                    self.k = k
                    self._change_at(self.t_s + self._span(k))
        return False

    def _on_boundary(self, now: float) -> None:
        fleet = self.fleet
        phase = self.phase
        self.phase = BOUNDARY
        fleet.feed(now)
        if phase == PREFILL:
            prefilled = self._prefilled
            for r in self.group:
                prefilled(r, now)
            self.tokens += len(self.group)
            self.group = []
        else:
            k = self.k
            self.busy_s += now - self.t_s
            self._set_kv(self.kv_used + self._consumed(k), now, mean_since=self.kv_used)
            self.it += k
            self.tokens += self.b * k
            self._finish_until(self.it, now)
        self.schedule(now)

    def _prefilled(self, r: int, now: float) -> None:
        """`r`'s prefill (or recompute) ended at `now` with its next token: it leaves, or decodes."""
        fleet = self.fleet
        if fleet.first[r] != fleet.first[r]:  # a recompute keeps its first token's time
            fleet.first[r] = now
        g = self.gen.pop(r, 0) + 1
        if g == fleet.output[r]:
            self._free(r, now, -(-(fleet.prompt[r] + g - 1) // self.bs))
        else:
            self._join(r, self.it - g + 1)

    def _finish_until(self, it: int, now: float) -> None:
        finishing, start_it, output, prompt, bs = self.finishing, self.start_it, self.fleet.output, \
            self.fleet.prompt, self.bs
        while finishing and finishing[0][0] <= it:
            e, r = heappop(finishing)
            s = start_it.get(r)
            if s is None or s + output[r] - 1 != e:
                continue  # preempted since
            self._unjoin(r)
            self._free(r, now, -(-(prompt[r] + output[r] - 1) // bs))

    def _free(self, r: int, now: float, blocks: int) -> None:
        fleet = self.fleet
        fleet.end[r] = now
        self._set_kv(self.kv_used - blocks, now)
        self.outstanding -= 1
        self.outstanding_tokens -= fleet.prompt[r]
        fleet.left(r, now)

    def _preempt(self, need: int, kv: int) -> tuple[int, int]:
        """Preempt the newest sequences until the step's `need` blocks fit beside `kv` held: the prompt in
        progress first (chunked), then the running ones. Returns the blocks then held and those to swap out."""
        fleet, bs, cap, it = self.fleet, self.bs, self.kv_blocks, self.it
        prompt, start_it, victims, transfer = fleet.prompt, self.start_it, [], 0
        if self.pf >= 0:  # the most recently admitted; its recompute prefills it again from the start
            r, self.pf = self.pf, -1
            kv -= -(-(self.pf_len - self.pf_left) // bs)
            victims.append(r)
            fleet.preemptions[r] += 1
            self.preemptions += 1
        while need > cap - kv:
            r = next(reversed(start_it))
            s = self._unjoin(r)
            p = prompt[r]
            if (p + it - s) % bs == 0:
                need -= 1
            held = -(-(p + it - s) // bs)
            kv -= held
            victims.append(r)
            fleet.preemptions[r] += 1
            self.preemptions += 1
            if self.swap_s is None:
                self.gen[r] = it - s + 1
            else:
                self.swap_state[r] = (it - s + 1, held)
                transfer += held
        if self.swap_s is None:
            self.waiting.extendleft(victims)  # the oldest of them ends up at the front
        else:
            self.swapped.extend(reversed(victims))
        return kv, transfer

    def _schedule_prefill_first(self, now: float) -> None:
        waiting, fleet, bs, cap = self.waiting, self.fleet, self.bs, self.kv_blocks
        if waiting and not self.swapped:
            prompt, gen = fleet.prompt, self.gen
            seqs, kv, tokens = self.n_running, self.kv_used, 0
            group = []
            while waiting:
                r = waiting[0]
                pe = prompt[r] + gen.get(r, 0)
                need = -(-pe // bs)
                if seqs >= self.max_seqs or kv + need > cap or (group and tokens + pe > self.max_tokens):
                    break
                waiting.popleft()
                group.append(r)
                seqs += 1
                kv += need
                tokens += pe
            if group:
                self._start_prefill(group, kv, tokens, now)
                return
        it = self.it
        transfer = 0
        need = self.cnt.get((it % bs), 0) if self.n_running else 0
        kv = self.kv_used
        if need > cap - kv:  # preempt the newest running sequences until the step's blocks fit
            kv, transfer = self._preempt(need, kv)
            self._set_kv(kv, now)
        elif self.swapped:  # no preemption here: bring swapped sequences back while they fit
            swapped, prompt = self.swapped, fleet.prompt
            while swapped and self.n_running < self.max_seqs:
                r = swapped[0]
                g, held = self.swap_state[r]
                own = 1 if (prompt[r] + g - 1) % bs == 0 else 0
                if kv + held + own + need > cap:
                    break
                swapped.pop(0)
                del self.swap_state[r]
                kv += held
                need += own
                transfer += held
                self._join(r, it - g + 1)
            self._set_kv(kv, now)
        self._decode_stretch(now, kv, transfer)

    def _schedule_chunked(self, now: float) -> None:
        """At a boundary with chunked prefill: the step's blocks (preempting when out), then the waiting
        head's admission and the next chunk when their blocks fit, or else the decode stretch."""
        bs, cap = self.bs, self.kv_blocks
        need = self.cnt.get(self.it % bs, 0) if self.n_running else 0
        kv = self.kv_used
        if need > cap - kv:
            kv = self._preempt(need, kv)[0]
            self._set_kv(kv, now)
            self._decode_stretch(now, kv, 0, preempted=True)
            return
        b = self.n_running
        budget = self.max_tokens - b
        if budget > 0:
            waiting = self.waiting
            if self.pf < 0 and waiting and b < self.max_seqs and \
                    kv + need + self._first_chunk_blocks(waiting[0], b) <= cap:
                r = waiting.popleft()
                self.pf = r
                self.pf_len = self.pf_left = self.fleet.prompt[r] + self.gen.get(r, 0)
            if self.pf >= 0:
                c = min(self.pf_left, budget)
                done = self.pf_len - self.pf_left
                grow = -(-(done + c) // bs) + (done // -bs)  # ceil((done + c) / bs) - ceil(done / bs)
                if kv + need + grow <= cap:
                    self._set_kv(kv + need + grow, now)
                    self._start_mixed(c, now)
                    return
        self._decode_stretch(now, kv, 0)

    def _decode_stretch(self, now: float, kv: int, transfer: int, preempted: bool = False) -> None:
        """Start the decode stretch of the running sequences, `kv` blocks held and `transfer` blocks to swap in
        or out first, up to the next change of the batch; or go idle. `preempted`: this boundary preempted."""
        fleet, waiting, bs, cap, it = self.fleet, self.waiting, self.bs, self.kv_blocks, self.it
        b = self.n_running
        if b:
            delay = transfer * self.swap_s if transfer else 0.0
            self.swapped_blocks += transfer
            self.busy_s += delay
            self.phase = DECODE
            self.A, self.B = self._decode_cost(b)
            self.b = b
            self.T0 = self.ctx_base + b * it
            self.t_s = now + delay
            self.it0 = it
            self.free0 = free = cap - kv
            k = self._next_finish() - it
            if free < b * (k // bs + 1):  # the cache may run out before the next finish
                k = min(k, self._shortage(free, b))
            if self.chunked:
                # the queue's head is admitted at the first boundary where its first chunk fits beside the
                # step's blocks; they only grow, so if not at this one, at the next (when this one preempted,
                # which admits nothing) or in no other
                if k > 1 and preempted and self.pf < 0 and waiting and b < self.admit_below:
                    if self._first_chunk_blocks(waiting[0], b) <= free - self._consumed(2):
                        k = 1
            elif k > 1 and waiting and not self.swapped and b < self.max_seqs:
                # the queue's head was held back at this boundary by swapped sequences or the blocks the
                # preempted ones held: it may fit at the next one (later, the free blocks only fall)
                r = waiting[0]
                if -(-(fleet.prompt[r] + self.gen.get(r, 0)) // bs) <= free - self._consumed(1):
                    k = 1
            elif k > 1 and self.swapped and b < self.max_seqs:
                # the swapped head comes back at the first boundary where its blocks and those of the step
                # after it fit: the blocks taken by then only grow, so at the next one or in no other
                r = self.swapped[0]
                g, held = self.swap_state[r]
                own = 1 if (fleet.prompt[r] + g - 1) % bs == 0 else 0
                if self._consumed(2) + held + own <= free:
                    k = 1
            self.k = k
            self._change_at(self.t_s + self._span(k))
            return
        self.phase = IDLE
        self.version += 1  # nothing pending
        self.periods.append(now)
