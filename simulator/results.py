"""What a run produces: DataFrames for notebooks, and files written so that none is ever half-written.

The numbers come from metrics/ (the summary, the table by period); `Results.report()` hands the
tables to report/, which draws them without importing this module (matplotlib loads only then)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from simulator.errors import CapsimError
from simulator.files import atomic_write
from simulator.metrics.periods import period_table
from simulator.units import parse_duration


@dataclass
class Results:
    scenario_name: str
    seed: int
    jobs: pd.DataFrame
    timeline: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        """jobs.parquet, timeline.parquet, summary.json: each to a temporary file renamed into place,
        summary.json last, so an interrupted run leaves every file either old and whole or new and whole."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "jobs.parquet", lambda p: self.jobs.to_parquet(p, index=False))
        atomic_write(out / "timeline.parquet", lambda p: self.timeline.to_parquet(p, index=False))
        text = json.dumps(self.summary, indent=2, sort_keys=False) + "\n"
        atomic_write(out / "summary.json", lambda p: Path(p).write_text(text))
        return out

    @classmethod
    def read(cls, out_dir: str | Path) -> Results:
        """The Results a run wrote to `out_dir` (jobs.parquet, timeline.parquet, summary.json)."""
        out = Path(out_dir)
        missing = [n for n in ("jobs.parquet", "timeline.parquet", "summary.json") if not (out / n).is_file()]
        if missing:
            raise CapsimError(f"not a run's output folder: {', '.join(missing)} missing", source=str(out))
        summary = json.loads((out / "summary.json").read_text())
        return cls(summary.get("scenario", out.name), summary.get("seed", 0), pd.read_parquet(out / "jobs.parquet"),
                   pd.read_parquet(out / "timeline.parquet"), summary)

    def report(self, target: str | Path, period: str | None = None) -> Path:
        """A self-contained HTML report (summary, periods, pools, figures) for whoever holds the budget."""
        from simulator.report.html import write_report

        return write_report(self, target, period)

    def by_period(self, length: str | float = "90d") -> pd.DataFrame:
        """Waits (by submission period), utilisation and energy per period: `"90d"` for quarters."""
        return period_table(self.jobs, self.timeline, int(self.summary.get("gpus_total", 0)),
                            parse_duration(length))
