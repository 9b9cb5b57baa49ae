"""Fit a workload preset to a trace's job table: arrivals, GPUs per job, and a duration distribution per
GPU-count bucket (so that big jobs keep their own, usually longer, run times).

Durations: lognormal, Weibull and a two-component lognormal mixture are fitted with scipy.stats / EM and
ranked by AIC. The best is kept only if it passes a KS test (statistic <= KS_MAX) and reproduces the
sample mean within MEAN_TOLERANCE; heavy-tailed traces usually fail the mean check, and then the bucket
gets empirical quantiles (`dist: quantiles`), whose mean and median match the trace by construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from simulator.workload.arrivals import DAY_S, HOUR_S

KS_MAX = 0.05
MEAN_TOLERANCE = 0.05
MIN_BUCKET_JOBS = 50  # smaller buckets merge into the next smaller one: too few jobs to fit a shape
MAX_FIT_SAMPLE = 20_000  # parametric fits use a fixed subsample; quantiles use every job
BUCKET_EDGES = (1, 2, 5, 9, 33, 129)  # GPU-count buckets [1], [2-4], [5-8], [9-32], [33-128], [129+]
# Knots every 5% up to 0.9, then geometrically closer towards 1: the tail carries most of the mean.
QUANTILE_KNOTS = tuple(float(round(p, 6)) for p in np.concatenate(
    [np.linspace(0, 0.9, 19), 1 - np.logspace(-1.25, -4.5, 14), [1.0]]))
MIN_SECONDS = 1.0  # zero-second jobs are clipped to 1 s for the parametric fits (log of 0)


def fit_preset(jobs: pd.DataFrame, name: str, source: str) -> dict:
    """A preset mapping (the workloads/presets/*.yaml format) fitted to the GPU jobs of a job table."""
    gpu_jobs = jobs[jobs["gpus"] >= 1]
    if len(gpu_jobs) < 2:
        raise ValueError("need at least two GPU jobs to fit a preset")
    classes, diagnostics = [], []
    for sizes, durations in _buckets(gpu_jobs):
        dist, report = fit_durations(durations)
        values, counts = np.unique(sizes, return_counts=True)
        classes.append({"weight": round(len(sizes) / len(gpu_jobs), 6),
                        "gpus": {"choice": values.tolist(), "weights": counts.tolist()},
                        "duration": dist})
        diagnostics.append({"gpus": f"{values.min()}-{values.max()}", "jobs": int(len(sizes)), **report})
    return {
        "preset": name,
        "description": f"fitted by capsim workload fit to {len(gpu_jobs)} GPU jobs",
        "source": source,
        "arrival": fit_arrivals(gpu_jobs["submit_time"].to_numpy(dtype=float)),
        "classes": classes,
        "users": int(gpu_jobs["user"].nunique()) if "user" in gpu_jobs else 1,
        "published": _observed(gpu_jobs),
        "fit": {"buckets": diagnostics, "ks_max": KS_MAX, "mean_tolerance": MEAN_TOLERANCE},
    }


def _buckets(jobs: pd.DataFrame):
    gpus = jobs["gpus"].to_numpy(dtype=np.int64)
    durations = jobs["duration"].to_numpy(dtype=float)
    index = np.searchsorted(BUCKET_EDGES, gpus, side="right") - 1
    groups = [np.flatnonzero(index == b) for b in range(len(BUCKET_EDGES))]
    merged: list[np.ndarray] = []
    for rows in groups:
        if len(rows) == 0:
            continue
        if merged and len(rows) < MIN_BUCKET_JOBS:
            merged[-1] = np.concatenate([merged[-1], rows])
        else:
            merged.append(rows)
    if len(merged) > 1 and len(merged[0]) < MIN_BUCKET_JOBS:
        merged[1] = np.concatenate([merged[0], merged[1]])
        merged = merged[1:]
    return [(gpus[rows], durations[rows]) for rows in merged]


def fit_arrivals(submit: np.ndarray) -> dict:
    """Poisson at the observed mean rate; with at least two weeks of trace, a diurnal process whose hourly
    and weekly profiles are the observed submission counts (phase: the trace clock's t = 0)."""
    span = float(np.ptp(submit)) or HOUR_S
    rate = len(submit) / (span / HOUR_S)
    if span < 14 * DAY_S or len(submit) < 1000:
        return {"process": "poisson", "rate_per_hour": round(rate, 6)}
    hours = np.floor(submit / HOUR_S).astype(np.int64)
    hourly = np.bincount(hours % 24, minlength=24).astype(float)
    weekly = np.bincount((hours // 24) % 7, minlength=7).astype(float)
    return {"process": "diurnal", "rate_per_hour": round(rate, 6),
            "hourly": _relative(hourly), "weekly": _relative(weekly)}


def _relative(counts: np.ndarray) -> list[float]:
    return [round(float(c), 4) for c in counts / counts.mean()]


def fit_durations(durations: np.ndarray, seed: int = 0) -> tuple[dict, dict]:
    """(distribution mapping, diagnostics): the best parametric fit by AIC if it passes KS and the mean
    check, else empirical quantiles."""
    x = np.asarray(durations, dtype=float)
    quantiles = quantile_dist(x)
    if len(x) < MIN_BUCKET_JOBS or np.ptp(x) == 0:
        return quantiles, {"chosen": "quantiles", "reason": "too few or identical values"}
    sample = np.random.default_rng(seed).choice(x, MAX_FIT_SAMPLE, replace=False) if len(x) > MAX_FIT_SAMPLE else x
    sample = np.maximum(sample, MIN_SECONDS)
    candidates = [_fit_lognormal(sample), _fit_weibull(sample), _fit_lognormal_mixture(sample)]
    report = {c["name"]: {"aic": round(c["aic"], 2), "ks": round(c["ks"], 4),
                          "mean_error": round(float(c["mean"] / x.mean() - 1), 4)} for c in candidates}
    best = min(candidates, key=lambda c: c["aic"])
    if best["ks"] <= KS_MAX and abs(best["mean"] / x.mean() - 1) <= MEAN_TOLERANCE:
        return best["dist"], {"chosen": best["name"], "candidates": report}
    return quantiles, {"chosen": "quantiles", "best_parametric": best["name"], "candidates": report}


def quantile_dist(x: np.ndarray) -> dict:
    """Empirical quantiles at QUANTILE_KNOTS (see distributions.Quantiles for the interpolation)."""
    values = np.maximum.accumulate(np.quantile(x, QUANTILE_KNOTS))
    return {"dist": "quantiles", "p": list(QUANTILE_KNOTS), "values": [round(float(v), 3) for v in values]}


def _score(name: str, dist: dict, x: np.ndarray, logpdf: np.ndarray, params: int, cdf, mean: float) -> dict:
    return {"name": name, "dist": dist, "aic": 2 * params - 2 * float(np.sum(logpdf)),
            "ks": float(stats.kstest(x, cdf).statistic), "mean": mean}


def _fit_lognormal(x: np.ndarray) -> dict:
    sigma, _, scale = stats.lognorm.fit(x, floc=0)
    law = stats.lognorm(sigma, scale=scale)
    dist = {"dist": "lognormal", "median": float(scale), "sigma": float(sigma)}
    return _score("lognormal", dist, x, law.logpdf(x), 2, law.cdf, float(law.mean()))


def _fit_weibull(x: np.ndarray) -> dict:
    shape, _, scale = stats.weibull_min.fit(x, floc=0)
    law = stats.weibull_min(shape, scale=scale)
    dist = {"dist": "weibull", "shape": float(shape), "scale": float(scale)}
    return _score("weibull", dist, x, law.logpdf(x), 2, law.cdf, float(law.mean()))


def _fit_lognormal_mixture(x: np.ndarray, iterations: int = 200) -> dict:
    """Two Gaussians on log(duration) by EM: short debugging runs and long training runs."""
    y = np.log(x)
    mu = np.quantile(y, [0.25, 0.75])
    sd = np.full(2, max(y.std() / 2, 1e-3))
    w = np.array([0.5, 0.5])
    for _ in range(iterations):
        dens = w * stats.norm.pdf(y[:, None], mu, sd) + 1e-300
        resp = dens / dens.sum(axis=1, keepdims=True)
        n = resp.sum(axis=0)
        w = n / len(y)
        mu = (resp * y[:, None]).sum(axis=0) / n
        sd = np.sqrt(np.maximum((resp * (y[:, None] - mu) ** 2).sum(axis=0) / n, 1e-6))
    logpdf = np.log((w * stats.norm.pdf(y[:, None], mu, sd)).sum(axis=1) + 1e-300) - y

    def cdf(v):
        return (w * stats.norm.cdf(np.log(np.maximum(np.asarray(v, float), 1e-300))[..., None], mu, sd)).sum(-1)

    dist = {"dist": "mixture", "weights": [float(v) for v in w],
            "components": [{"dist": "lognormal", "median": float(np.exp(m)), "sigma": float(s)}
                           for m, s in zip(mu, sd, strict=True)]}
    mean = float(np.sum(w * np.exp(mu + sd**2 / 2)))
    return _score("lognormal-mixture", dist, x, logpdf, 5, cdf, mean)


def _observed(jobs: pd.DataFrame) -> dict:
    """The statistics a generated workload should reproduce (from trace_stats, GPU jobs only)."""
    from simulator.workload.stats import trace_stats

    figures = trace_stats(jobs)
    keys = ("mean_runtime_s", "median_runtime_s", "mean_gpus", "single_gpu_share")
    return {k: round(float(figures[k]), 6) for k in keys if figures.get(k) is not None}
