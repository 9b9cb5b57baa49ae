"""One self-contained HTML file per run, for whoever holds the budget: the summary, each period,
usage by pool and the figures, inlined as PNG so the file can be forwarded on its own."""

from __future__ import annotations

import base64
import io
from importlib.metadata import version
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from simulator.files import atomic_write
from simulator.report.figures import power_figure, utilization_figure, wait_figure
from simulator.report.summary import period_rows, summary_rows
from simulator.units import format_duration

_TEMPLATE = jinja2.Environment(loader=jinja2.PackageLoader("simulator.report", "templates"),
                               autoescape=True).get_template("run.html.j2")


def default_period(timeline: pd.DataFrame) -> str:
    """Weeks for a run of up to two months, months up to two years, else quarters."""
    span_days = (timeline["time_s"].iloc[-1] - timeline["time_s"].iloc[0]) / 86400 if len(timeline) else 0
    return "7d" if span_days <= 62 else ("30d" if span_days <= 730 else "90d")


def render_report(results, period: str | None = None) -> str:
    """The report of a Results as HTML text."""
    period = period or default_period(results.timeline)
    return _TEMPLATE.render(
        title=results.summary.get("scenario", results.scenario_name),
        summary=summary_rows(results.summary),
        period=period,
        periods=period_rows(results.by_period(period)),
        pools=_pool_rows(results.jobs),
        figures=[
            ("Utilisation and queue", _png(utilization_figure(results.timeline))),
            ("Queueing delay of completed jobs", _png(wait_figure(results.jobs))),
            ("Power drawn (IT load × PUE)", _png(power_figure(results.timeline))),
        ],
        version=version("capsim"),
    )


def write_report(results, target: str | Path, period: str | None = None) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(results, period)
    atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return target


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no version stamp: same bytes
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pool_rows(jobs: pd.DataFrame) -> list[dict]:
    ran = jobs[jobs["pool"].notna()]
    table = ran.groupby(["pool", "device"], observed=True, sort=True)["wait_s"].agg(
        jobs="size", mean_wait="mean", p95_wait=lambda w: w.quantile(0.95))
    return [{"pool": pool, "device": device, "jobs": f"{int(r.jobs):,}", "wait": format_duration(r.mean_wait),
             "p95": format_duration(r.p95_wait)} for (pool, device), r in table.iterrows()]
