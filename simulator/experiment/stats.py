"""Across seeds: means with 95% confidence intervals, and paired differences against a baseline.

Seeds are independent replications, so a point's mean over n seeds has the Student-t interval
mean ± t(0.975, n-1) · s / sqrt(n). Every point of a sweep runs the same seeds (common random
numbers), so the difference between two points is best judged seed by seed: the paired interval is
far tighter than two separate intervals would suggest when the arrivals are shared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.experiment.metric_names import check_columns


def ci95_half_width(std: pd.Series, n: pd.Series) -> pd.Series:
    """Half-width of the 95% Student-t interval of a mean; NaN with fewer than two samples."""
    from scipy import stats  # loaded on use: most runs never aggregate

    n = n.astype(float)
    t = stats.t.ppf(0.975, np.maximum(n - 1.0, 1.0))
    return pd.Series(np.where(n >= 2, t * std / np.sqrt(n), np.nan), index=std.index)


def aggregate(runs: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per point: `<metric>_mean` and `<metric>_ci95` (the interval's half-width) for each metric."""
    check_columns(runs, metrics)
    grouped = runs.groupby(by, sort=False, dropna=False) if by else runs.groupby(lambda _: 0)
    out = grouped.size().rename("seeds").to_frame()
    for metric in metrics:
        column = grouped[metric]
        out[f"{metric}_mean"] = column.mean()
        out[f"{metric}_ci95"] = ci95_half_width(column.std(ddof=1), column.count())
    return out.reset_index(drop=not by)


def compare(runs: pd.DataFrame, metric: str, baseline: dict, labels: list[str]) -> pd.DataFrame:
    """Each point's `metric` minus the baseline's, seed by seed, with the paired 95% interval.

    `baseline` fixes some labels (`{"scheduler.policy": "fifo"}`); every point is paired with the
    baseline point that shares its other labels, so a policy × cluster-size sweep compares each
    policy with FIFO at the same size.
    """
    check_columns(runs, [metric])
    unknown = [k for k in baseline if k not in labels]
    if unknown:
        raise ValueError(f"baseline names {unknown}, which are not labels of this sweep ({labels})")
    is_base = np.logical_and.reduce([runs[k] == v for k, v in baseline.items()])
    if not is_base.any():
        raise ValueError(f"no run matches the baseline {baseline}")
    others = [k for k in labels if k not in baseline]
    base = runs.loc[is_base, [*others, "seed", metric]].rename(columns={metric: "_baseline"})
    paired = runs.merge(base, on=[*others, "seed"], how="inner")
    difference = paired[metric] - paired["_baseline"]
    # Float noise is no difference: below 1e-9 of the values compared, it is 0.
    scale = np.maximum(paired[metric].abs(), paired["_baseline"].abs())
    paired["difference"] = difference.where(difference.abs() > 1e-9 * scale, 0.0)
    table = aggregate(paired, labels, ["difference"])
    return table.rename(columns={"difference_mean": f"{metric}_diff_mean", "difference_ci95": f"{metric}_diff_ci95"})
