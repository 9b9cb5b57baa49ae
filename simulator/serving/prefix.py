"""Prefix caching of sessions (vLLM's automatic prefix caching, for multi-turn sessions only): a replica
of replica.py that keeps the KV of finished session turns, so that a later turn of the session served
there prefills only what follows the cached part of its prompt.

The cache, exactly:

- When a request of session S leaves the replica, the whole blocks of its context (prompt + output - 1
  tokens: the last token's KV is never written), (p + o - 1) // block_size of them, become S's entry,
  replacing S's older one; the entry is the most recently used. Requests leaving at the same boundary
  enter in request order (the table's row order).
- The entries live in the blocks no request has reserved: whenever the reserved blocks grow (an
  admission), the least recently used entries are evicted until entries + reserved <= the cache.
- When a request r of session S is admitted and S has an entry of e blocks, its first
  block_size x min(e, (prompt - 1) // block_size) tokens are cached (at least one token is always
  prefilled, as vLLM does), and the entry is taken: its blocks become part of r's reservation, which is
  still its whole prompt + output. Only the rest of the prompt is prefilled and counts against
  max_batched_tokens (or is chunked); the cached tokens still count in the context decode steps read.
- The prefill's cost is that of the new tokens alone (their attention to the cached prefix is not
  priced), as the chunked prefill's chunks are.

A session's turns are taken to extend each other: the later turn's prompt starts with the earlier
turn's prompt and output (the synthetic sessions are drawn so; a request list's are assumed so).
Shared prefixes between sessions (system prompts) are not cached.
"""

from __future__ import annotations

from collections import OrderedDict

from simulator.serving.paged import PagedReplica
from simulator.serving.replica import Replica


class CachingReplica(Replica):
    """A replica (reserved KV, with or without chunked prefill) with a prefix cache of session contexts.
    The fleet holds `session` (per request, -1: none, or None for no sessions) and records `cached`."""

    def __init__(self, index: int, fleet, cost, max_num_seqs: int, max_batched_tokens: int, kv_blocks: int,
                 block_size: int, chunked: bool = False):
        super().__init__(index, fleet, cost, max_num_seqs, max_batched_tokens, kv_blocks, chunked)
        self.bs = block_size
        self.entries: OrderedDict[int, int] = OrderedDict()  # session -> whole blocks of its context, LRU first
        self.cached_blocks = 0

    # -- the cache -----------------------------------------------------------------------------------------
    def _cached(self, r: int) -> int:
        """Tokens of request r's prompt this replica holds (0 without an entry for its session)."""
        sessions = self.fleet.session
        e = self.entries.get(sessions[r], 0) if sessions is not None else 0
        return self.bs * min(e, (self.fleet.prompt[r] - 1) // self.bs) if e else 0

    def _take(self, r: int, cached: int) -> None:
        """r is admitted with `cached` tokens from its session's entry: the entry's blocks are now r's."""
        self.fleet.cached[r] = cached
        if cached:
            self.cached_blocks -= self.entries.pop(self.fleet.session[r])

    def _fit(self) -> None:
        """Evict the least recently used entries until they fit in the blocks not reserved."""
        room = self.kv_blocks - self.kv_used
        entries = self.entries
        while self.cached_blocks > room:
            self.cached_blocks -= entries.popitem(last=False)[1]

    def _leave(self, r: int, now: float) -> None:
        super()._leave(r, now)
        sessions = self.fleet.session
        s = sessions[r] if sessions is not None else -1
        if s >= 0:
            fleet, entries = self.fleet, self.entries
            old = entries.pop(s, 0)
            e = (fleet.prompt[r] + fleet.output[r] - 1) // self.bs
            entries[s] = e
            self.cached_blocks += e - old
            self._fit()

    # -- scheduling: replica.py's, with the cached tokens not prefilled -------------------------------------
    def _schedule_prefill_first(self, now: float) -> None:
        waiting = self.waiting
        if waiting:
            fleet = self.fleet
            prompt, blocks = fleet.prompt, fleet.blocks
            seqs, kv, tokens = self.n_running, self.kv_used, 0
            group = []
            while waiting:
                r = waiting[0]
                cached = self._cached(r)
                new = prompt[r] - cached
                if seqs >= self.max_seqs or kv + blocks[r] > self.kv_blocks or tokens + new > self.max_tokens:
                    break
                waiting.popleft()
                self._take(r, cached)
                group.append(r)
                seqs += 1
                kv += blocks[r]
                tokens += new
            if group:
                self._start_prefill(group, kv, tokens, now)
                self._fit()
                return
        self._decode_or_idle(now)

    def _schedule_chunked(self, now: float) -> None:
        if self.pf < 0 and self.waiting and self.max_tokens > self.n_running:
            r = self.waiting[0]
            kv = self.kv_used + self.fleet.blocks[r]
            if self.n_running < self.max_seqs and kv <= self.kv_blocks:
                self.waiting.popleft()
                cached = self._cached(r)
                self._take(r, cached)
                self._set_kv(kv, now)
                self._fit()
                self.pf, self.pf_left = r, self.fleet.prompt[r] - cached
        super()._schedule_chunked(now)


class PagedCachingReplica(PagedReplica):
    """A paged replica (serving/paged.py, without chunked prefill) with the prefix cache of session contexts,
    as vLLM's automatic prefix caching keeps it in the block manager's free blocks:

    - The entries live in the free blocks (those no sequence holds): cached blocks count as free, and when
      the held blocks grow (an admission, a decode step's new blocks, a swap-in) the least recently used
      entries are evicted until entries + held <= the cache. Within a decode stretch the held blocks only
      grow and no entry comes or goes, so evicting at its end leaves what evicting step by step would.
    - A request of session S leaving makes the whole blocks of its context, (p + o - 1) // block_size, S's
      entry (the most recently used), as on the reserving replica.
    - A request of session S preempted by recompute leaves the whole blocks of what it had written,
      (p + g - 1) // block_size after g tokens, as S's entry (vLLM's freed blocks keep their hashes), in
      the order preempted; its recompute (prompt + g tokens) then finds them if they are still there. A
      swapped-out sequence's blocks go to host memory and leave no entry.
    - At admission, a request of session S with an entry of e blocks has its first
      block_size x min(e, (prompt + g - 1) // block_size) tokens cached (g: tokens generated before a
      recompute; at least one token is always prefilled) and, when that is not 0, takes the entry: the
      hit blocks are now its own (it holds ceil((prompt + g) / block_size) blocks, as without the cache),
      the rest of the entry is freed. Only the other tokens are prefilled, priced and counted against max_batched_tokens. The fleet
      records a request's hit at its first admission (`cached`), not at its recomputes.

    Which requests are admitted does not depend on the cache (blocks are counted the same way, and the
    first of a group always fits the token budget), so the jump's predictions of paged.py hold as they are.
    Chunked prefill with the paged cache and prefix caching is not offered: there the first chunk's
    admission would depend on the hit, which evictions change within a stretch."""

    def __init__(self, index: int, fleet, cost, max_num_seqs: int, max_batched_tokens: int, kv_blocks: int,
                 block_size: int, swap_s_per_block: float | None = None):
        super().__init__(index, fleet, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size,
                         swap_s_per_block, False)
        self.entries: OrderedDict[int, int] = OrderedDict()  # session -> whole blocks, LRU first
        self.cached_blocks = 0

    def _put(self, session: int, blocks: int) -> None:
        """`blocks` whole blocks of `session`'s context become its entry, the most recently used."""
        old = self.entries.pop(session, 0)
        self.entries[session] = blocks
        self.cached_blocks += blocks - old

    def _set_kv(self, kv: int, now: float, mean_since: int | None = None) -> None:
        super()._set_kv(kv, now, mean_since)
        room = self.kv_blocks - kv
        if self.cached_blocks > room:
            entries = self.entries
            while self.cached_blocks > room:
                self.cached_blocks -= entries.popitem(last=False)[1]

    def _free(self, r: int, now: float, blocks: int) -> None:
        super()._free(r, now, blocks)
        fleet = self.fleet
        s = fleet.session[r] if fleet.session is not None else -1
        if s >= 0:  # the freed blocks hold the entry: it fits
            self._put(s, (fleet.prompt[r] + fleet.output[r] - 1) // self.bs)

    def _preempt(self, need: int, kv: int) -> tuple[int, int]:
        before = self.preemptions
        kv, transfer = super()._preempt(need, kv)
        sessions = self.fleet.session
        if self.swap_s is None and sessions is not None:
            prompt, gen, waiting = self.fleet.prompt, self.gen, self.waiting
            for i in range(self.preemptions - before - 1, -1, -1):  # the victims, in the order preempted
                r = waiting[i]
                if sessions[r] >= 0:
                    self._put(sessions[r], (prompt[r] + gen[r] - 1) // self.bs)
        return kv, transfer

    def _schedule_prefill_first(self, now: float) -> None:
        waiting = self.waiting
        if waiting and not self.swapped:
            fleet, bs, cap = self.fleet, self.bs, self.kv_blocks
            prompt, gen, sessions, entries = fleet.prompt, self.gen, fleet.session, self.entries
            seqs, kv, tokens = self.n_running, self.kv_used, 0
            group = []
            while waiting:
                r = waiting[0]
                g = gen.get(r, 0)
                pe = prompt[r] + g
                s = sessions[r] if sessions is not None else -1
                e = entries.get(s, 0) if s >= 0 else 0
                cached = bs * min(e, (pe - 1) // bs) if e else 0
                if seqs >= self.max_seqs or kv + -(-pe // bs) > cap or \
                        (group and tokens + pe - cached > self.max_tokens):
                    break
                waiting.popleft()
                if cached:
                    self.cached_blocks -= entries.pop(s)
                if not g:
                    fleet.cached[r] = cached
                group.append(r)
                seqs += 1
                kv += -(-pe // bs)
                tokens += pe - cached
            if group:
                self._start_prefill(group, kv, tokens, now)
                return
        super()._schedule_prefill_first(now)
