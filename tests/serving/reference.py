"""A plain per-iteration reference of the replica scheduler (simulator/serving/replica.py): one loop
step per iteration, no jumps, no calendar. The fleet must give the same first tokens and ends."""

from __future__ import annotations

import math


class AffineCost:
    """Iteration times for tests: prefill = p0 + p1 n + p2 tokens; decode(b) = (a0 + a1 b, B)."""

    def __init__(self, p0=0.01, p1=0.001, p2=2e-5, a0=0.005, a1=1e-4, slope=1e-7):
        self.p0, self.p1, self.p2, self.a0, self.a1, self.slope = p0, p1, p2, a0, a1, slope

    def prefill(self, n, tokens):
        return self.p0 + self.p1 * n + self.p2 * tokens

    def decode(self, b):
        return self.a0 + self.a1 * b, self.slope

    def mixed(self, b, context, chunk):
        return self.prefill(1, chunk + b) + (self.slope * context if b else 0.0)


class PrefixCache:
    """The prefix cache of serving/prefix.py, written out plainly: session -> whole blocks of the context of
    its latest turn finished here, least recently finished first; `cached` records each admission's hit."""

    def __init__(self, sessions, block_size, kv_blocks):
        self.sessions, self.bs, self.cap = sessions, block_size, kv_blocks
        self.entries = {}  # insertion order = least recently used first
        self.cached = {}

    def lookup(self, rid, prompt):
        e = self.entries.get(self.sessions.get(rid, -1), 0)
        return self.bs * min(e, (prompt - 1) // self.bs)

    def take(self, rid, cached):
        self.cached[rid] = cached
        if cached:
            del self.entries[self.sessions[rid]]

    def fit(self, reserved):
        while sum(self.entries.values()) > self.cap - reserved:
            del self.entries[next(iter(self.entries))]

    def put(self, finished, reserved):
        """Sequences [id, prompt, output, ...] that left together, entered in request order."""
        for g in sorted(finished, key=lambda g: g[0]):
            session = self.sessions.get(g[0], -1)
            if session >= 0:
                self.entries.pop(session, None)
                self.entries[session] = (g[1] + g[2] - 1) // self.bs
        self.fit(reserved)


def _decode_step(running, cost, t, out, cache=None, kv=0):
    """One decode step of every running sequence; returns the new time and the KV blocks freed."""
    a, b = cost.decode(len(running))
    context = sum(g[1] + g[3] for g in running)
    return t + a + b * context, _advance(running, t + a + b * context, out, cache, kv)


def _advance(running, t, out, cache=None, kv=0):
    """Every running sequence has one more token at `t`; those done leave (into the prefix cache, if one,
    with `kv` blocks reserved before). Returns the blocks freed."""
    freed = 0
    still, done = [], []
    for g in running:
        g[3] += 1
        if g[3] == g[2]:
            out[g[0]][1] = t
            freed += g[4]
            done.append(g)
        else:
            still.append(g)
    running[:] = still
    if cache is not None:
        cache.put(done, kv - freed)
    return freed


def reference_replica(requests, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, chunked=False,
                      cache=None):
    """requests: (id, arrival, prompt, output) routed to one replica, in routing order. Returns
    {id: (first_token, end)} for the requests served, iteration by iteration. `cache`: a PrefixCache
    (prefix caching: cached tokens are not prefilled)."""
    if chunked:
        return _reference_chunked(requests, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, cache)
    pending = sorted(requests, key=lambda r: r[1])  # stable: routing order on ties
    waiting, running, out = [], [], {}
    kv = 0
    t = 0.0
    i = 0
    while i < len(pending) or waiting or running:
        while i < len(pending) and pending[i][1] <= t:
            waiting.append(pending[i])
            i += 1
        if not waiting and not running:
            t = pending[i][1]
            continue
        group, tokens = [], 0
        while waiting:
            rid, _, prompt, output = waiting[0]
            blocks = math.ceil((prompt + output) / block_size)
            cached = cache.lookup(rid, prompt) if cache is not None else 0
            if len(running) + len(group) >= max_num_seqs or kv + blocks > kv_blocks \
                    or tokens + prompt - cached > max_batched_tokens:
                break
            waiting.pop(0)
            if cache is not None:
                cache.take(rid, cached)
            group.append([rid, prompt, output, 1, blocks])  # generated: 1 after its prefill
            kv += blocks
            tokens += prompt - cached
        if group:
            if cache is not None:
                cache.fit(kv)
            t += cost.prefill(len(group), tokens)
            for g in group:
                out[g[0]] = [t, None]
                if g[2] == 1:
                    out[g[0]][1] = t
                    kv -= g[4]
                    if cache is not None:
                        cache.put([g], kv)
                else:
                    running.append(g)
            continue
        t, freed = _decode_step(running, cost, t, out, cache, kv)
        kv -= freed
    return {k: tuple(v) for k, v in out.items()}


def _reference_chunked(requests, cost, max_num_seqs, budget, kv_blocks, block_size, cache=None):
    """Chunked prefill, iteration by iteration: each iteration decodes every running sequence and, with
    budget left, prefills one chunk of the prompt in progress (the queue's head is admitted when none is)."""
    pending = sorted(requests, key=lambda r: r[1])
    waiting, running, out = [], [], {}
    kv, t, i = 0, 0.0, 0
    pf, pf_left = None, 0  # [id, prompt, output, generated, blocks] being prefilled, tokens left
    while i < len(pending) or waiting or running or pf:
        while i < len(pending) and pending[i][1] <= t:
            waiting.append(pending[i])
            i += 1
        if not waiting and not running and not pf:
            t = pending[i][1]
            continue
        left = budget - len(running)
        if left > 0 and pf is None and waiting:
            rid, _, prompt, output = waiting[0]
            blocks = math.ceil((prompt + output) / block_size)
            if len(running) < max_num_seqs and kv + blocks <= kv_blocks:
                waiting.pop(0)
                cached = cache.lookup(rid, prompt) if cache is not None else 0
                pf, pf_left = [rid, prompt, output, 1, blocks], prompt - cached
                kv += blocks
                if cache is not None:
                    cache.take(rid, cached)
                    cache.fit(kv)
        if left > 0 and pf is not None:
            c = min(pf_left, left)
            context = sum(g[1] + g[3] for g in running)
            t += cost.mixed(len(running), context, c)
            kv -= _advance(running, t, out, cache, kv)
            pf_left -= c
            if not pf_left:
                out[pf[0]] = [t, None]
                if pf[2] == 1:
                    out[pf[0]][1] = t
                    kv -= pf[4]
                    if cache is not None:
                        cache.put([pf], kv)
                else:
                    running.append(pf)
                pf = None
            continue
        t, freed = _decode_step(running, cost, t, out, cache, kv)
        kv -= freed
    return {k: tuple(v) for k, v in out.items()}


def reference_paged(requests, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size, swap_s_per_block=None,
                    chunked=False, cache=None):
    """The paged KV cache (simulator/serving/paged.py), iteration by iteration, with its own block
    counts: blocks taken as tokens are written, the newest running sequences preempted when a step's
    blocks do not fit (recompute, or swap at `swap_s_per_block` seconds per block each way). Returns
    ({id: (first_token, end)}, {id: preemptions}, the most blocks ever held). `cache`: a PrefixCache
    (prefix caching, serving/prefix.py's PagedCachingReplica): its entries live in the free blocks and
    are evicted, least recently used first, after every step or admission that takes blocks; a request
    leaving, or preempted by recompute, leaves the whole blocks of what it wrote as its session's entry;
    an admission's cached tokens (its first admission's are recorded) are not prefilled."""
    if chunked:
        assert swap_s_per_block is None and cache is None
        return _reference_paged_chunked(requests, cost, max_num_seqs, max_batched_tokens, kv_blocks, block_size)
    pending = sorted(requests, key=lambda r: r[1])
    waiting, running, swapped, out, preempted = [], [], [], {}, {}
    kv, peak, t, i = 0, 0, 0.0, 0
    while i < len(pending) or waiting or running or swapped:
        while i < len(pending) and pending[i][1] <= t:
            rid, _, prompt, output = pending[i]
            waiting.append({"id": rid, "p": prompt, "o": output, "g": 0, "held": 0})
            i += 1
        if not waiting and not running and not swapped:
            t = pending[i][1]
            continue
        group, tokens = [], 0
        while waiting and not swapped:
            x = waiting[0]
            pe = x["p"] + x["g"]
            need = math.ceil(pe / block_size)
            cached = cache.lookup(x["id"], pe) if cache is not None else 0
            if len(running) + len(group) >= max_num_seqs or kv + need > kv_blocks \
                    or (group and tokens + pe - cached > max_batched_tokens):
                break
            waiting.pop(0)
            if cache is not None:
                first_hit = cache.cached.get(x["id"])
                cache.take(x["id"], cached)
                if first_hit is not None:  # a recompute: the first admission's hit stays recorded
                    cache.cached[x["id"]] = first_hit
            x["held"] = need
            kv += need
            tokens += pe - cached
            group.append(x)
        if group:
            peak = max(peak, kv)
            if cache is not None:
                cache.fit(kv)
            t += cost.prefill(len(group), tokens)
            for x in group:
                if x["id"] not in out:
                    out[x["id"]] = [t, None]
                x["g"] += 1
                if x["g"] == x["o"]:
                    out[x["id"]][1] = t
                    kv -= x["held"]
                    if cache is not None:
                        cache.put([[x["id"], x["p"], x["o"]]], kv)
                else:
                    running.append(x)
            continue

        def crossing(x):
            return (x["p"] + x["g"] - 1) % block_size == 0

        need = sum(crossing(x) for x in running)
        moved, victims = 0, []
        while need > kv_blocks - kv:
            x = running.pop()
            need -= crossing(x)
            kv -= x["held"]
            preempted[x["id"]] = preempted.get(x["id"], 0) + 1
            victims.append(x)
            if swap_s_per_block is None:
                x["held"] = 0
            else:
                moved += x["held"]
        if victims:
            if swap_s_per_block is None:
                waiting[:0] = victims[::-1]
                if cache is not None:  # what each wrote, p + g - 1 tokens, in the order preempted
                    for x in victims:
                        cache.put([[x["id"], x["p"], x["g"]]], kv)
            else:
                swapped.extend(victims[::-1])
        else:
            while swapped and len(running) < max_num_seqs:
                x = swapped[0]
                if kv + x["held"] + crossing(x) + need > kv_blocks:
                    break
                swapped.pop(0)
                kv += x["held"]
                need += crossing(x)
                moved += x["held"]
                running.append(x)
        assert running, "a decode step with nothing to decode"
        if moved:
            t += moved * swap_s_per_block
        a, b = cost.decode(len(running))
        t += a + b * sum(x["p"] + x["g"] for x in running)
        still, done = [], []
        for x in running:
            if crossing(x):
                x["held"] += 1
                kv += 1
        if cache is not None:
            cache.fit(kv)
            assert sum(cache.entries.values()) + kv <= kv_blocks
        for x in running:
            x["g"] += 1
            if x["g"] == x["o"]:
                out[x["id"]][1] = t
                kv -= x["held"]
                done.append([x["id"], x["p"], x["o"]])
            else:
                still.append(x)
        if cache is not None:
            cache.put(done, kv)
        peak = max(peak, kv + sum(x["held"] for x in running if x["g"] == x["o"]))
        assert kv <= kv_blocks
        running = still
    return {k: tuple(v) for k, v in out.items()}, preempted, peak


def _reference_paged_chunked(requests, cost, max_num_seqs, budget, kv_blocks, block_size):
    """Paged KV with chunked prefill (vLLM V1), iteration by iteration: the decodes' blocks first, preempting
    by recompute the prompt in progress and then the newest running sequences while they do not fit; with
    no preemption and budget left, the queue's head is admitted when none is in progress and its first
    chunk's blocks fit, and the prompt in progress prefills its next chunk when that chunk's blocks fit."""
    pending = sorted(requests, key=lambda r: r[1])
    waiting, running, out, preempted = [], [], {}, {}
    kv, peak, t, i = 0, 0, 0.0, 0
    pf = None  # the request being prefilled: its "todo" tokens to prefill (prompt + generated), "done" so far

    def crossing(x):
        return (x["p"] + x["g"] - 1) % block_size == 0

    def blocks(tokens):
        return math.ceil(tokens / block_size)

    while i < len(pending) or waiting or running or pf:
        while i < len(pending) and pending[i][1] <= t:
            rid, _, prompt, output = pending[i]
            waiting.append({"id": rid, "p": prompt, "o": output, "g": 0, "held": 0})
            i += 1
        if not waiting and not running and not pf:
            t = pending[i][1]
            continue
        need = sum(crossing(x) for x in running)
        victims = []
        while need > kv_blocks - kv:
            if pf is not None:
                x, pf = pf, None
            else:
                x = running.pop()
                need -= crossing(x)
            kv -= x["held"]
            x["held"] = 0
            preempted[x["id"]] = preempted.get(x["id"], 0) + 1
            victims.append(x)
        waiting[:0] = victims[::-1]
        left = budget - len(running)
        chunk = 0
        if not victims and left > 0:
            if pf is None and waiting and len(running) < max_num_seqs:
                x = waiting[0]
                if kv + need + blocks(min(x["p"] + x["g"], left)) <= kv_blocks:
                    pf = waiting.pop(0)
                    pf["todo"], pf["done"] = pf["p"] + pf["g"], 0
            if pf is not None:
                c = min(pf["todo"] - pf["done"], left)
                grow = blocks(pf["done"] + c) - pf["held"]
                if kv + need + grow <= kv_blocks:
                    chunk = c
                    pf["held"] += grow
                    kv += grow
        assert chunk or running, "an iteration with nothing to do"
        context = sum(x["p"] + x["g"] for x in running)
        if chunk:
            t += cost.mixed(len(running), context, chunk)
        else:
            a, b = cost.decode(len(running))
            t += a + b * context
        still = []
        for x in running:
            if crossing(x):
                x["held"] += 1
                kv += 1
        peak = max(peak, kv)
        assert kv <= kv_blocks
        for x in running:
            x["g"] += 1
            if x["g"] == x["o"]:
                out[x["id"]][1] = t
                kv -= x["held"]
            else:
                still.append(x)
        running = still
        if chunk:
            pf["done"] += chunk
            if pf["done"] == pf["todo"]:
                out.setdefault(pf["id"], [t, None])
                pf["g"] += 1
                if pf["g"] == pf["o"]:
                    out[pf["id"]][1] = t
                    kv -= pf["held"]
                else:
                    running.append(pf)
                pf = None
    return {k: tuple(v) for k, v in out.items()}, preempted, peak
