"""Closed forms and independent recursions the simulator must agree with (tests and fidelity checks)."""

from __future__ import annotations

import heapq
import math

import numpy as np


def erlang_c_wait_probability(servers: int, load: float) -> float:
    """P(wait > 0) in an M/M/c queue with utilisation `load` = lambda / (c mu) < 1."""
    if not 0 <= load < 1:
        raise ValueError("load must be in [0, 1)")
    a = servers * load  # offered load in Erlangs
    # Sum in log space: c up to thousands would overflow a**k / k!.
    log_terms = [k * math.log(a) - math.lgamma(k + 1) for k in range(servers)] if a > 0 else [0.0]
    log_last = servers * math.log(a) - math.lgamma(servers + 1) - math.log(1 - load) if a > 0 else -math.inf
    top = max(max(log_terms), log_last)
    below = sum(math.exp(t - top) for t in log_terms)
    last = math.exp(log_last - top)
    return last / (below + last)


def erlang_c_mean_wait(servers: int, arrival_rate: float, mean_service: float) -> float:
    """Mean queueing delay W_q of M/M/c: C(c, a) / (c mu - lambda)."""
    mu = 1.0 / mean_service
    load = arrival_rate / (servers * mu)
    return erlang_c_wait_probability(servers, load) / (servers * mu - arrival_rate)


def fifo_gang_starts(submit: np.ndarray, gpus: np.ndarray, duration: np.ndarray, devices: int) -> np.ndarray:
    """Start times under strict FIFO on `devices` interchangeable devices (one device per node).

    A heap of the devices' free times: job i starts at the latest of its submission, the previous
    job's start (FIFO order) and the time its g_i earliest-free devices are all free.
    """
    free = [0.0] * devices
    starts = np.empty(len(submit))
    previous = -math.inf
    for i, (t, g, d) in enumerate(zip(submit.tolist(), gpus.tolist(), duration.tolist(), strict=True)):
        taken = [heapq.heappop(free) for _ in range(g)]
        start = max(t, previous, taken[-1])
        for _ in range(g):
            heapq.heappush(free, start + d)
        starts[i] = previous = start
    return starts
