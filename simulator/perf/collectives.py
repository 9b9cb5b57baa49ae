"""Collective times: an alpha-beta model per network tier (scale-up domain, scale-out NICs) fitted to
measured bus bandwidth, combined hierarchically when a group spans several scale-up domains.

Bus bandwidth follows nccl-tests: time = S * factor(op, n) / busbw, with factor 2(n-1)/n for
all-reduce, (n-1)/n for all-gather / reduce-scatter / all-to-all, and 1 for send/recv."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulator.errors import CapsimError
from simulator.perf.profile import load_profile

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
# NCCL reaches ~80% of NIC line rate on large messages across nodes (nccl-tests on IB/RoCE clusters);
# used only when a device has no measured scale-out points.
DEFAULT_NET_EFF = 0.8
# Per-collective latency inside a scale-up domain when nothing is measured (NCCL ring on NVLink ~20-40 us).
DEFAULT_UP_ALPHA_S = 25e-6


def bus_factor(op: str, n: int) -> float:
    if op not in OPS:
        raise CapsimError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if n <= 1:
        return 0.0
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op == "send_recv":
        return 1.0
    return (n - 1) / n


@dataclass(frozen=True)
class AlphaBeta:
    """time = alpha + S * factor / bw (bw in bytes/s)."""

    alpha_s: float
    bw_Bps: float

    def time(self, op: str, bytes_: float, n: int) -> float:
        f = bus_factor(op, n)
        if f == 0.0 or bytes_ <= 0:
            return 0.0
        return self.alpha_s + bytes_ * f / self.bw_Bps


def hop_steps(op: str, n: int) -> int:
    """Latency-bound steps beyond the first of a collective over n ranks (nodes): NCCL runs all-reduce
    on a double binary tree at scale, 2*log2(n) hops; all-gather and reduce-scatter on a ring, n-1
    hops; all-to-all and send/recv need one (NCCL docs, "Algorithms"; Hu et al., "Demystifying NCCL", 2025)."""
    if n <= 2 or op in ("all_to_all", "send_recv"):
        return 0
    if op == "all_reduce":
        return 2 * math.ceil(math.log2(n)) - 1
    return n - 2


def ring_all_reduce_time(bytes_: float, n: int, bw_Bps: float, latency_s: float) -> float:
    """The textbook ring all-reduce: 2(n-1)/n * S/B + latency."""
    return AlphaBeta(latency_s, bw_Bps).time("all_reduce", bytes_, n)


def fit_alpha_beta(points: list[tuple[str, float, int, float]]) -> AlphaBeta:
    """Least squares on relative error: each point (op, bytes, n, busbw GB/s) gives a time
    t = S*f/busbw; fit t = alpha + (S*f) * beta with weights 1/t so small and large messages count alike."""
    xs, ts = [], []
    for op, b, n, busbw in points:
        f = bus_factor(op, n)
        if f == 0 or busbw <= 0:
            continue
        xs.append(b * f)
        ts.append(b * f / (busbw * 1e9))
    if len(xs) < 2:
        raise ValueError("need two points to fit alpha-beta")
    x, t = np.asarray(xs), np.asarray(ts)
    w = 1.0 / t
    a = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(a, t * w, rcond=None)
    if beta <= 0:  # degenerate data: fall back to the best large-message point, no latency
        return AlphaBeta(0.0, float(max(x / t)))
    return AlphaBeta(max(float(alpha), 0.0), float(1.0 / beta))


@lru_cache(maxsize=128)
def tier_model(device: str, scope: str) -> AlphaBeta:
    """Fitted alpha-beta for one tier, else the prior device's efficiency scaled to this link, else defaults."""
    p = load_profile(device)
    link = (p.scale_up_bw_gbs if scope == "scale_up" else p.scale_out_bw_gbs) * 1e9
    pts = [(c.op, c.bytes, c.group, c.busbw_gbs) for c in p.collectives if c.scope == scope]
    if len(pts) >= 2:
        return fit_alpha_beta(pts)
    if p.prior_reference and p.prior_reference != device:
        ref_p = load_profile(p.prior_reference)
        ref = tier_model(p.prior_reference, scope)
        ref_link = (ref_p.scale_up_bw_gbs if scope == "scale_up" else ref_p.scale_out_bw_gbs) * 1e9
        return AlphaBeta(ref.alpha_s, ref.bw_Bps / ref_link * link)
    if scope == "scale_up":
        return AlphaBeta(DEFAULT_UP_ALPHA_S, DEFAULT_NET_EFF * link)
    return AlphaBeta(p.scale_out_latency_us * 1e-6 * 4, DEFAULT_NET_EFF * link)


def collective_time(device: str, op: str, bytes_: float, n: int, per_domain: int | None = None) -> float:
    """Time of `op` on a buffer of bytes_ (per rank, nccl-tests convention) over n ranks, of which
    `per_domain` share a scale-up domain (default: as many as fit).

    Across domains it is hierarchical: reduce-scatter inside the domain, the op across domains on
    1/k of the data (each rank drives its own NIC), then all-gather inside the domain."""
    if n <= 1 or bytes_ <= 0:
        return 0.0
    p = load_profile(device)
    k = min(n, p.scale_up_domain) if per_domain is None else max(1, min(per_domain, n))
    up, out = tier_model(device, "scale_up"), tier_model(device, "scale_out")
    if k >= n:
        return up.time(op, bytes_, n)
    groups = n // k if n % k == 0 else -(-n // k)
    # each hop across nodes beyond the first costs the fabric's latency (alpha is fitted on 2 nodes)
    hops = hop_steps(op, groups) * p.scale_out_latency_us * 1e-6
    if k == 1:
        return out.time(op, bytes_, n) + hop_steps(op, n) * p.scale_out_latency_us * 1e-6
    if op == "all_reduce":
        return (up.time("reduce_scatter", bytes_, k) + out.time("all_reduce", bytes_ / k, groups)
                + up.time("all_gather", bytes_, k)) + hops
    if op in ("all_gather", "reduce_scatter"):
        # the cross-domain share is spread over the k NICs of a domain
        return up.time(op, bytes_, k) + out.time(op, bytes_ / k, groups) + hops
    if op == "all_to_all":
        # the share of data that leaves the domain crosses the NICs; the rest stays on the fast links
        remote = (n - k) / n
        return up.time(op, bytes_ * (1 - remote) * n / k, k) + out.alpha_s + bytes_ * remote / out.bw_Bps
    return out.time(op, bytes_, 2)
