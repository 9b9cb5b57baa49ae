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
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    wait = np.sort(jobs.loc[jobs["status"] == "completed", "wait_s"].to_numpy(dtype=float))
    positive = wait[wait > 0]
    if len(positive):
        share = 1.0 - np.arange(len(wait) - len(positive), len(wait)) / len(wait)
        ax.step(positive / 3600.0, share, where="post")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            value = np.percentile(wait, q)
            if value > 0:  # a zero percentile has no place on a log axis
                ax.axvline(value / 3600.0, color="grey", linestyle=style, label=f"p{q}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    ax.set_xlabel("queueing delay (hours)")
    ax.set_ylabel("share waiting at least this long")
    ax.set_title(f"{(wait > 0).mean():.1%} of completed jobs waited at all" if len(wait) else "no completed jobs")
    ax.grid(alpha=0.3, which="both")
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
