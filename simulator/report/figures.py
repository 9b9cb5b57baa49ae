"""Figures of one run, for the report and for notebooks: each function returns a matplotlib Figure.

The timeline has a row per change (millions in a long run); plots show it as time-weighted means
over bins, which is what a reader means by "utilisation that day", and keeps the figures small.

Figures are built on `matplotlib.figure.Figure`, not through pyplot: no backend is chosen or changed,
so importing this in a notebook leaves the session's plotting as it was, and a server needs no display.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simulator.metrics.periods import step_integral_at

_DAY = 86400.0


def binned_means(timeline: pd.DataFrame, column: str, bins: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(bin starts in days from the first change, the time-weighted mean of `column` in each bin)."""
    time = timeline["time_s"].to_numpy(dtype=float)
    if len(time) < 2 or time[-1] <= time[0]:
        return np.zeros(0), np.zeros(0)
    edges = np.linspace(time[0], time[-1], bins + 1)
    area = np.diff(step_integral_at(time, timeline[column].to_numpy(dtype=float), edges))
    return (edges[:-1] - time[0]) / _DAY, area / np.diff(edges)


def utilization_figure(timeline: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(9, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    days, util = binned_means(timeline, "utilization")
    top.fill_between(days, util * 100, step="post", alpha=0.6)
    top.set_ylabel("GPU utilisation (%)")
    top.set_ylim(0, 100)
    days, queued = binned_means(timeline, "queued_jobs")
    bottom.plot(days, queued, drawstyle="steps-post")
    bottom.set_ylabel("queued jobs (mean)")
    bottom.set_xlabel("days from the first arrival")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def wait_figure(jobs: pd.DataFrame) -> Figure:
    """The distribution of queueing delay of completed jobs, as a CCDF on log axes (tails are the story)."""
    wait = jobs.loc[jobs["status"] == "completed", "wait_s"].to_numpy(dtype=float) / 3600.0
    return ccdf_figure(wait, "queueing delay (hours)", "share waiting at least this long",
                       f"{(wait > 0).mean():.1%} of completed jobs waited at all" if len(wait) else "no completed jobs")


def ccdf_figure(values: np.ndarray, xlabel: str, ylabel: str, title: str) -> Figure:
    """The share of `values` at least as large as each positive value, on log axes, with grey lines at the
    p50, p95 and p99 of all of them (zeros count in the shares and the percentiles)."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    values = np.sort(np.asarray(values, dtype=float))
    positive = values[values > 0]
    if len(positive):
        share = 1.0 - np.arange(len(values) - len(positive), len(values)) / len(values)
        ax.step(positive, share, where="post")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            value = np.percentile(values, q)
            if value > 0:  # a zero percentile has no place on a log axis
                ax.axvline(value, color="grey", linestyle=style, label=f"p{q}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def series_figure(timeline: pd.DataFrame, series: list[tuple[str, str]], ylabel: str, scale: float = 1.0,
                  caps: dict[str, float] | None = None, level: tuple[float, str] | None = None) -> Figure:
    """A line per timeline column (label, column), time-weighted means over bins times `scale`; a dashed
    line in a series' colour at `caps[label]` (its limit), and a grey dashed one at `level` (value, label)."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    for label, column in series:
        days, values = binned_means(timeline, column)
        line, = ax.plot(days, values * scale, drawstyle="steps-post", label=label)
        if caps and label in caps:
            ax.axhline(caps[label] * scale, color=line.get_color(), linestyle="--", label=f"{label}: cap")
    if level is not None:
        ax.axhline(level[0] * scale, color="grey", linestyle="--", label=level[1])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("days from the first arrival")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def power_figure(timeline: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    days, kw = binned_means(timeline, "power_kw")
    ax.plot(days, kw, drawstyle="steps-post")
    ax.set_ylabel("power (kW, mean)")
    ax.set_xlabel("days from the first arrival")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# Sweeps and plans: each figure takes tables of means and 95% half-widths (the report's own numbers).

def metric_scale(metric: str) -> tuple[float, str]:
    """(divide by, axis label) for a summary metric: hours for durations, % for utilisation, $ for cost."""
    base = metric.removesuffix("_diff")
    if base.startswith(("ttft_", "tpot_", "e2e_")) and base.endswith("_s"):  # a request's latency
        return 1e-3, f"{base.removesuffix('_s').replace('_', ' ').upper().replace(' P', ' p')} (ms)"
    if base == "slo_attainment":
        return 0.01, "SLO attainment (%)"
    if base.endswith("_s"):
        return 3600.0, f"{base.removesuffix('_s').replace('_', ' ')} (hours)"
    if base == "gpu_utilization":
        return 0.01, "GPU utilisation (%)"
    if base.endswith("_usd"):
        return 1.0, f"{base.removesuffix('_usd').replace('_', ' ')} ($)"
    return 1.0, base.replace("_", " ")


def _clean(values) -> np.ndarray:
    """Half-widths for error bars: NaN (one seed) drawn as none."""
    return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)


def bars_figure(names: list[str], metrics: list[str], means: dict, cis: dict, zero_line: bool = False) -> Figure:
    """One panel per metric: a horizontal bar per point, mean with its 95% interval as an error bar."""
    rows = max(1, len(names))
    fig = Figure(figsize=(9, 0.6 + (0.32 * rows + 0.9) * len(metrics)))
    axes = np.atleast_1d(fig.subplots(len(metrics), 1, squeeze=False)[:, 0])
    y = np.arange(len(names))
    for ax, metric in zip(axes, metrics, strict=True):
        div, label = metric_scale(metric)
        mean = np.asarray(means[metric], dtype=float) / div
        ax.barh(y, np.nan_to_num(mean), xerr=_clean(cis[metric]) / div, color="#5b8db8", ecolor="#222", capsize=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel(label + (" minus the baseline" if zero_line else ""))
        if zero_line:
            ax.axvline(0, color="grey", linewidth=1)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def period_lines_figure(series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], metric: str,
                        target: float | None = None, crossings: dict | None = None) -> Figure:
    """A line per point over the periods (x: days from the first submission), its 95% band shaded; the
    target as a dashed line and, per point, a marker at the first period above it."""
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    div, label = metric_scale(metric)
    for name, days, mean, ci in series:
        line, = ax.plot(days, mean / div, marker="o", markersize=3, label=name)
        ax.fill_between(days, (mean - _clean(ci)) / div, (mean + _clean(ci)) / div, alpha=0.15,
                        color=line.get_color())
        if crossings and crossings.get(name) is not None:
            day, value = crossings[name]
            ax.plot([day], [value / div], marker="X", markersize=10, color=line.get_color(), linestyle="none")
    if target is not None:
        ax.axhline(target / div, color="#b22", linestyle="--", label="target")
    ax.set_xlabel("days from the first submission (period start)")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier_figure(names: list[str], cost: tuple, service: tuple, metric: str) -> Figure:
    """Cost against a service metric per point, with 95% intervals both ways; the points no other beats
    on both (cheaper and better) joined as the frontier."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    div, label = metric_scale(metric)
    x, xe = np.asarray(cost[0], dtype=float), _clean(cost[1])
    y, ye = np.asarray(service[0], dtype=float) / div, _clean(service[1]) / div
    ax.errorbar(x, y, xerr=xe, yerr=ye, fmt="o", color="#5b8db8", ecolor="#999", capsize=3)
    for name, xi, yi in zip(names, x, y, strict=True):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = frontier(x, y)
    ax.plot(x[front], y[front], color="#b22", linewidth=1.5, label="frontier (no point is cheaper and better)")
    ax.set_xlabel("cost over the simulated period ($)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier(cost: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Indices of the points on the cost-service frontier, by cost: none is both cheaper (or as cheap)
    and better (or as good) than one of them."""
    order = np.lexsort((service, cost))
    best, keep = np.inf, []
    for i in order:
        if np.isfinite(service[i]) and service[i] < best:
            keep.append(i)
            best = service[i]
    return np.array(keep, dtype=int)


def search_figure(curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], metric: str, target: float,
                  chosen: tuple[str, int, float] | None, unit: str = "nodes") -> Figure:
    """Each option's search: the target metric against the nodes added (or the replicas, unit="replicas"),
    mean and 95% interval per size tried; the target as a dashed line; the chosen purchase circled."""
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    div, label = metric_scale(metric)
    for name, nodes, mean, ci in curves:
        ax.errorbar(nodes, mean / div, yerr=_clean(ci) / div, marker="o", capsize=3, label=name)
    ax.axhline(target / div, color="#b22", linestyle="--", label="target")
    if chosen is not None:
        name, nodes, value = chosen
        ax.plot([nodes], [value / div], marker="o", markersize=16, markerfacecolor="none", markeredgecolor="#222",
                linestyle="none", label=f"chosen: {name}, {nodes} {unit}")
    ax.set_xlabel("nodes added" if unit == "nodes" else unit)
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cost_periods_figure(days: np.ndarray, series: list[tuple[str, np.ndarray]], width_days: float) -> Figure:
    """Cost per period, side-by-side bars per case."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    step = width_days * 0.8 / max(1, len(series))
    for k, (name, usd) in enumerate(series):
        ax.bar(days + k * step, usd, width=step, align="edge", label=name)
    ax.set_xlabel("days from the first submission (period start)")
    ax.set_ylabel("cost in the period ($)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# Serving: requests.parquet by arrival time.

def serving_bin_s(span_s: float) -> float:
    """The bin of the serving figure: an hour for runs of six hours or more, five minutes from half an
    hour, else a minute."""
    return 3600.0 if span_s >= 6 * 3600 else 300.0 if span_s >= 1800 else 60.0


def serving_bins(requests: pd.DataFrame, t0: float = 0.0, bin_s: float | None = None) -> pd.DataFrame:
    """Per service and bin of arrival time (from the run's start `t0`): the requests arriving in it, their
    rate per second, and the p99 TTFT and TPOT of those completed (NaN where none completed). Every bin
    from the first arrival to the last is listed, empty ones with 0 requests."""
    columns = ["service", "bin_start_s", "requests", "requests_per_s", "ttft_p99_s", "tpot_p99_s"]
    if requests is None or requests.empty:
        return pd.DataFrame(columns=columns)
    arrival = requests["arrival_s"].to_numpy(float) - t0
    width = bin_s or serving_bin_s(float(arrival.max() - min(0.0, arrival.min())))
    index = np.floor(arrival / width).astype(np.int64)
    rows = []
    for service in sorted(requests["service"].astype(str).unique()):
        mine = (requests["service"].astype(str) == service).to_numpy()
        for k in range(int(index[mine].min()), int(index[mine].max()) + 1):
            part = requests[mine & (index == k)]
            done = part[part["status"] == "completed"]
            multi = done[done["output_tokens"] > 1]
            ttft = (done["first_token_s"] - done["arrival_s"]).to_numpy(float)
            tpot = ((multi["end_s"] - multi["first_token_s"]) / (multi["output_tokens"] - 1)).to_numpy(float)
            rows.append({"service": service, "bin_start_s": k * width, "requests": len(part),
                         "requests_per_s": len(part) / width,
                         "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else np.nan,
                         "tpot_p99_s": float(np.percentile(tpot, 99)) if len(tpot) else np.nan})
    return pd.DataFrame(rows, columns=columns)


def serving_figure(bins: pd.DataFrame) -> Figure:
    """Three panels over the run's time: requests arriving per second, and the p99 TTFT and TPOT of the
    requests arriving in each bin; a line per service."""
    fig = Figure(figsize=(9, 6.5))
    axes = fig.subplots(3, 1, sharex=True)
    hours = bins["bin_start_s"].to_numpy(float) / 3600.0
    for service in dict.fromkeys(bins["service"]):
        mine = (bins["service"] == service).to_numpy()
        part = bins[mine]
        axes[0].plot(hours[mine], part["requests_per_s"], drawstyle="steps-post", label=service)
        axes[1].plot(hours[mine], part["ttft_p99_s"] * 1e3, drawstyle="steps-post", label=service)
        axes[2].plot(hours[mine], part["tpot_p99_s"] * 1e3, drawstyle="steps-post", label=service)
    for ax, label, column, scale in zip(axes, ("requests per second", "TTFT p99 (ms)", "TPOT p99 (ms)"),
                                        ("requests_per_s", "ttft_p99_s", "tpot_p99_s"), (1.0, 1e3, 1e3), strict=True):
        ax.set_ylabel(label)
        top = np.nanmax(bins[column].to_numpy(float)) * scale if bins[column].notna().any() else 0.0
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].set_xlabel("hours from the run's start (arrival time)")
    fig.tight_layout()
    return fig
