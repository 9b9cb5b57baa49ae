"""A serving replica: continuous batching at iteration level, run in jumps from one change of its batch
to the next.

The scheduler (vLLM's prefill-first policy, without chunked prefill or preemption). At every iteration
boundary, the requests waiting at the replica are admitted first come first served while

- the batch holds fewer than `max_num_seqs` sequences,
- their prompts add up to at most `max_batched_tokens`, and
- the whole KV cache the request will ever need (prompt + output tokens, in blocks of `block_size`)
  fits in the blocks not yet reserved.

The first waiting request that does not fit stops admission (no overtaking). An iteration that admits
requests prefills them, and only them: it ends with each one's first token. Otherwise every running
sequence decodes one token. A request that has all its output tokens leaves at the end of that
iteration and frees its blocks. An arrival at an idle replica starts an iteration at once; one at a busy
replica waits for the end of the iteration in flight. Requests arriving at the same instant as a
boundary are admitted at it.

Reserving the whole KV up front means the cache can never overflow and nothing is ever preempted;
vLLM allocates blocks as tokens are generated and preempts (recompute or swap) when it runs out, so it
admits more at once than this replica does: that is serving/paged.py (`kv_allocation: paged`).

Chunked prefill (Sarathi-style, `chunked=True`): `max_batched_tokens` is then the token budget of every
iteration. Each iteration decodes every running sequence (one token each) and, while budget is left
(budget - running > 0), prefills one chunk of one prompt: the head of the waiting queue is admitted
(fewer than `max_num_seqs` sequences with it, its whole KV fits) when no prompt is being prefilled, and
its prompt goes through in chunks of at most budget - running tokens, one per iteration; the iteration
that takes its last chunk ends with its first token, and it decodes from the next. A mixed iteration of
b decodes whose contexts sum to T with a chunk of c tokens lasts `cost.mixed(b, T, c)`; iterations with
no chunk are decode steps, jumped over as below. A prompt longer than the budget is no longer refused.
Every mixed iteration is a calendar entry (a prompt takes prompt / (budget - running) of them).

The jump (ARCHITECTURE: serving never makes one event per iteration). Between two changes of the
batch (an admission, a prefill's end, a request leaving) every iteration is a decode step of the same
b sequences, and the contexts' sum grows by b per step: from T0, step j (from 0) lasts
A + B (T0 + j b), so k steps last S(k) = k A + B (k T0 + b k (k - 1) / 2). The replica schedules one
calendar entry at the next change: the iteration at which the first running request completes, or,
when a request arrives that could be admitted, the first boundary at or after its arrival (the
smallest k with S(k) >= its arrival - the stretch's start, from the quadratic). An entry made stale by
such an arrival is dropped when it comes up (lazy cancellation). Tokens count with a virtual clock:
the replica's decode iterations so far, `it`; a request admitted to decoding at `it = s` with o output
tokens leaves at `it = s + o - 1`, so a jump updates no request.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush

IDLE, PREFILL, DECODE, BOUNDARY, MIXED = 0, 1, 2, 3, 4
NO_LIMIT = 2**62  # the longest prompt a chunked-prefill replica takes (any)


def least_outstanding(replicas: list) -> Replica:
    """The replica with the fewest requests outstanding, the first on ties (the least-outstanding routers:
    it runs once per replica per request, a C loop in the compiled build)."""
    best = replicas[0]
    least = best.outstanding
    for rep in replicas:
        if rep.outstanding < least:
            best, least = rep, rep.outstanding
    return best


def least_outstanding_tokens(replicas: list) -> Replica:
    """The replica with the fewest prompt tokens outstanding, the first on ties."""
    best = replicas[0]
    least = best.outstanding_tokens
    for rep in replicas:
        if rep.outstanding_tokens < least:
            best, least = rep, rep.outstanding_tokens
    return best


class Replica:
    """One replica of a service. `fleet` holds the request columns (prompt, output, blocks) and records
    first tokens and ends; `cost` has `prefill(n, tokens)` and `decode(b) -> (A, B)`."""

    def __init__(self, index: int, fleet, cost, max_num_seqs: int, max_batched_tokens: int, kv_blocks: int,
                 chunked: bool = False):
        self.index = index
        self.fleet = fleet
        self.calendar = fleet.calendar
        # The fleet's request columns, read and written once or twice per request (one lookup, not two).
        self.prompt, self.output, self.blocks = fleet.prompt, fleet.output, fleet.blocks
        self.first, self.end = fleet.first, fleet.end
        self.cost = cost
        # Memos of `cost` (a dict lookup here costs a fraction of a call into the cost model, per stretch)
        self.prefill_costs: dict[tuple[int, int], float] = {}
        self.decode_costs: dict[int, tuple[float, float]] = {}
        self.max_seqs = max_num_seqs
        self.max_tokens = max_batched_tokens
        # The longest prompt it takes, and the running sequences below which an arrival may be admitted.
        self.max_prompt = NO_LIMIT if chunked else max_batched_tokens
        self.admit_below = min(max_num_seqs, max_batched_tokens) if chunked else max_num_seqs
        self.pf = -1  # chunked prefill: the request being prefilled (-1: none), its prompt tokens left,
        self.pf_left = 0  # and the chunk of the iteration in flight
        self.chunk = 0
        self.chunked = chunked
        self.kv_blocks = kv_blocks
        self.kv_used = 0
        self.kv_peak = 0
        self.waiting: deque[int] = deque()
        self.finishing: list[tuple[int, int]] = []  # heap of (virtual iteration it leaves at, request)
        self.n_running = 0  # sequences decoding (prefilled, not finished)
        self.it = 0  # decode iterations so far (the virtual clock)
        self.ctx_base = 0  # sum over running of (prompt + 1 - start_it): contexts sum to ctx_base + b it
        self.start_it: dict[int, int] = {}
        self.phase = IDLE
        self.group: list[int] = []  # the requests the prefill in flight admits
        self.version = 0  # of its next change's calendar entry: an older entry is stale and dropped
        # the decode stretch in flight: its start, batch, contexts' sum at its start, A, B, steps scheduled
        self.t_s = 0.0
        self.b = 0
        self.T0 = 0
        self.A = self.B = 0.0
        self.k = 0
        self.outstanding = 0  # routed and not finished (the least-outstanding router reads it)
        self.outstanding_tokens = 0  # their prompt tokens (the least-outstanding-tokens router reads it)
        self.tokens = 0  # output tokens generated (counted per iteration group, independently of requests)
        self.busy_s = 0.0  # time spent in iterations
        self.periods: list[float] = []  # busy periods: start, end, start, ... (an odd length: busy at the end)
        self.kv_area = 0.0  # integral of kv_used (reserved blocks) over time
        self.kv_since = 0.0  # when kv_used last changed

    # -- S(k) and its inverse --------------------------------------------------------------------------
    def _span(self, k: int) -> float:
        return k * self.A + self.B * (k * self.T0 + self.b * k * (k - 1) / 2)

    def _steps_until(self, now: float) -> int:
        """The smallest k >= 1 whose boundary t_s + S(k) is at or after `now`."""
        a, b = self.B * self.b / 2, self.A + self.B * self.T0 - self.B * self.b / 2
        d = now - self.t_s
        if a > 0:
            k = math.ceil((-b + math.sqrt(b * b + 4 * a * d)) / (2 * a))
        else:
            k = math.ceil(d / b)
        k = max(k, 1)
        t_s = self.t_s
        while t_s + self._span(k) < now:
            k += 1
        while k > 1 and t_s + self._span(k - 1) >= now:
            k -= 1
        return k

    # -- events ------------------------------------------------------------------------------------------
    def arrive(self, r: int, now: float) -> bool:
        """Request `r` was routed here at `now`. Returns True when the replica is idle and must be started
        (by `schedule(now)`, once every arrival of the instant has been routed)."""
        waiting = self.waiting
        waiting.append(r)
        self.outstanding += 1
        self.outstanding_tokens += self.prompt[r]
        phase = self.phase
        if phase == IDLE:
            self.phase = BOUNDARY  # started once, after the instant's arrivals
            self.periods.append(now)
            return True
        if phase == DECODE and len(waiting) == 1:
            if self.n_running < self.admit_below and self.kv_used + self.blocks[r] <= self.kv_blocks \
                    and self.pf < 0:
                k = self._steps_until(now)
                if k < self.k:  # admitted at an earlier boundary than the next finish
                    self.k = k
                    self._change_at(self.t_s + self._span(k))
        return False

    def _decode_cost(self, b: int) -> tuple[float, float]:
        """(A, B) of a decode iteration of `b` sequences (cost.decode, memoised)."""
        ab = self.decode_costs.get(b)
        if ab is None:
            ab = self.decode_costs[b] = self.cost.decode(b)
        return ab

    def _change_at(self, time: float) -> None:
        """The replica's next change is at `time`: one calendar entry, (time, ..., replica, version), which
        makes any entry made before it stale (lazy cancellation, as the engine's job completions)."""
        self.version += 1
        self.calendar.completion_at(time, self)

    def fire(self, now: float) -> None:
        """The calendar runs the replica's current entry: the end of a mixed iteration, or a boundary."""
        if self.phase == MIXED:
            self._on_mixed(now)
        else:
            self._on_boundary(now)

    def _on_boundary(self, now: float) -> None:
        fleet = self.fleet
        phase = self.phase
        self.phase = BOUNDARY
        fleet.feed(now)  # arrivals at this very instant are admitted at this boundary
        if phase == PREFILL:
            for r in self.group:
                self._prefilled(r, now)
            self.tokens += len(self.group)
            self.group = []
        else:  # a decode stretch's boundary
            k = self.k
            self.busy_s += now - self.t_s
            self.it += k
            self.tokens += self.b * k
            self._finish_until(self.it, now)
        self.schedule(now)

    def _prefilled(self, r: int, now: float) -> None:
        """Request `r`'s prefill ended at `now` with its first token: it leaves, or decodes from the next
        iteration."""
        self.first[r] = now
        output = self.output[r]
        if output == 1:
            self._leave(r, now)
        else:
            it = self.it
            heappush(self.finishing, (it + output - 1, r))
            self.start_it[r] = it
            self.ctx_base += self.prompt[r] + 1 - it
            self.n_running += 1

    def _finish_until(self, it: int, now: float) -> None:
        """The running sequences whose last token is at virtual iteration `it` or before leave at `now`."""
        finishing = self.finishing
        prompt, start_it = self.prompt, self.start_it
        while finishing and finishing[0][0] <= it:
            r = heappop(finishing)[1]
            self.n_running -= 1
            self.ctx_base -= prompt[r] + 1 - start_it.pop(r)
            self._leave(r, now)

    def _set_kv(self, kv: int, now: float) -> None:
        """The blocks reserved become `kv` at `now` (the occupancy's time integral and peak follow)."""
        self.kv_area += self.kv_used * (now - self.kv_since)
        self.kv_since = now
        self.kv_used = kv
        if kv > self.kv_peak:
            self.kv_peak = kv

    def _start_prefill(self, group: list[int], kv: int, tokens: int, now: float) -> None:
        """An iteration that prefills the admitted `group` (`tokens` prompt tokens), the blocks now `kv`."""
        self._set_kv(kv, now)
        self.group = group
        self.phase = PREFILL
        key = (len(group), tokens)
        dt = self.prefill_costs.get(key)
        if dt is None:
            dt = self.prefill_costs[key] = self.cost.prefill(len(group), tokens)
        self.busy_s += dt
        self._change_at(now + dt)

    def _decode_or_idle(self, now: float) -> None:
        """Start the decode stretch of the running sequences up to the next one's finish, or go idle."""
        b = self.n_running
        if b:
            self.phase = DECODE
            self.A, self.B = self._decode_cost(b)
            self.b = b
            self.T0 = self.ctx_base + b * self.it
            self.t_s = now
            self.k = k = self.finishing[0][0] - self.it
            self._change_at(now + self._span(k))
            return
        self.phase = IDLE
        self.version += 1  # nothing pending
        self.periods.append(now)

    def _leave(self, r: int, now: float) -> None:
        fleet = self.fleet
        self.end[r] = now
        self.kv_area += self.kv_used * (now - self.kv_since)
        self.kv_since = now
        self.kv_used -= self.blocks[r]
        self.outstanding -= 1
        self.outstanding_tokens -= self.prompt[r]
        fleet.left(r, now)

    def schedule(self, now: float) -> None:
        """At a boundary (or an idle replica's start): admit what fits and start the next iteration, by
        the replica's scheduler (replicas of other kinds override the two it chooses between)."""
        if self.chunked:
            self._schedule_chunked(now)
        else:
            self._schedule_prefill_first(now)

    def _schedule_prefill_first(self, now: float) -> None:
        """Admit what fits, then start a prefill of the admitted requests, or else the decode stretch up to
        the next finish."""
        waiting = self.waiting
        if waiting:
            prompt, blocks = self.prompt, self.blocks
            seqs, kv, tokens = self.n_running, self.kv_used, 0
            max_seqs, max_tokens, cap = self.max_seqs, self.max_tokens, self.kv_blocks
            group = []
            while waiting:
                r = waiting[0]
                if seqs >= max_seqs or kv + blocks[r] > cap or tokens + prompt[r] > max_tokens:
                    break
                waiting.popleft()
                group.append(r)
                seqs += 1
                kv += blocks[r]
                tokens += prompt[r]
            if group:
                self._start_prefill(group, kv, tokens, now)
                return
        self._decode_or_idle(now)

    # -- chunked prefill -------------------------------------------------------------------------------
    def _schedule_chunked(self, now: float) -> None:
        """At a boundary of a chunked-prefill replica: admit the head of the queue if no prompt is being
        prefilled, then run a mixed iteration (the running decodes and the next chunk), or else the decode
        stretch up to the next change."""
        b = self.n_running
        budget = self.max_tokens - b
        fleet = self.fleet
        if budget > 0:
            if self.pf < 0 and self.waiting:
                r = self.waiting[0]
                kv = self.kv_used + fleet.blocks[r]
                if b < self.max_seqs and kv <= self.kv_blocks:
                    self.waiting.popleft()
                    self._set_kv(kv, now)
                    self.pf, self.pf_left = r, fleet.prompt[r]
            if self.pf >= 0:
                self._start_mixed(min(self.pf_left, budget), now)
                return
        self._decode_or_idle(now)

    def _start_mixed(self, c: int, now: float) -> None:
        """An iteration that decodes every running sequence and prefills `c` tokens of the prompt in progress."""
        b = self.b = self.n_running
        self.chunk = c
        dt = self.cost.mixed(b, self.ctx_base + b * self.it, c)
        self.busy_s += dt
        self.phase = MIXED
        self._change_at(now + dt)

    def _on_mixed(self, now: float) -> None:
        """The end of a mixed iteration: the running sequences have one more token (those done leave),
        and the chunk is prefilled; the prompt's last chunk gives its first token."""
        fleet = self.fleet
        self.phase = BOUNDARY
        fleet.feed(now)
        b = self.b
        if b:
            self.it += 1
            self.tokens += b
            self._finish_until(self.it, now)
        self.pf_left -= self.chunk
        if not self.pf_left:
            r, self.pf = self.pf, -1
            self.tokens += 1
            self._prefilled(r, now)
        self.schedule(now)
