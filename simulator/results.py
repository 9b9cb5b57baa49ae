"""What a run produces: DataFrames for notebooks, and files written so that none is ever half-written.

The numbers come from metrics/ (the summary, the table by period); `Results.report()` hands the
tables to report/, which draws them without importing this module (matplotlib loads only then)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from simulator.errors import CapsimError
from simulator.files import replace_files
from simulator.metrics.periods import period_table
from simulator.units import parse_duration

RUN_FILES = ("jobs.parquet", "timeline.parquet", "summary.json")
REQUESTS_FILE = "requests.parquet"  # beside them when the run served requests (services:)
SCENARIO_FILE = "scenario.json"  # what the report says was simulated; optional (older runs lack it)
RUN_ID_KEY = "run_id"  # summary.json's key, and `capsim.run_id` in each Parquet file's schema metadata
_PARQUET_RUN_ID = b"capsim.run_id"


@dataclass
class Results:
    scenario_name: str
    seed: int
    jobs: pd.DataFrame
    timeline: pd.DataFrame
    summary: dict = field(default_factory=dict)
    run_id: str | None = None  # set by write() and read(): the token every file of the run carries
    # One row per request when the scenario has services (requests.parquet), else None.
    requests: pd.DataFrame | None = None
    # What the report's "What was simulated" shows of the scenario (report.simulated.scenario_record),
    # kept in scenario.json beside the run; None for a run written before it was kept.
    scenario: dict | None = None

    def _frames(self) -> tuple[pd.DataFrame, ...]:
        return (self.jobs, self.timeline) if self.requests is None else (self.jobs, self.timeline, self.requests)

    def write(self, out_dir: str | Path) -> Path:
        """jobs.parquet, timeline.parquet, summary.json (and requests.parquet when the run served
        requests), replaced as a set (files.replace_files): an interrupted write leaves the previous
        run's files or this run's, never some of each. Each file carries the run id (a hash of the run's
        content), by which `read` tells a mixed set. A requests.parquet left by an earlier run is removed
        when this run has none."""
        self.run_id = self.content_id()
        summary = {k: v for k, v in self.summary.items() if k != RUN_ID_KEY}
        text = json.dumps(_finite({**summary, RUN_ID_KEY: self.run_id}), indent=2, sort_keys=False,
                          allow_nan=False) + "\n"
        writers = {
            "jobs.parquet": lambda p: _write_parquet(self.jobs, p, self.run_id),
            "timeline.parquet": lambda p: _write_parquet(self.timeline, p, self.run_id),
        }
        if self.requests is not None:
            writers[REQUESTS_FILE] = lambda p: _write_parquet(self.requests, p, self.run_id)
        writers["summary.json"] = lambda p: Path(p).write_text(text)
        if self.scenario is not None:
            record = json.dumps({RUN_ID_KEY: self.run_id, "scenario": _finite(self.scenario)}, indent=1) + "\n"
            writers[SCENARIO_FILE] = lambda p: Path(p).write_text(record)
        out = replace_files(Path(out_dir), writers)
        if self.requests is None:
            (out / REQUESTS_FILE).unlink(missing_ok=True)
        if self.scenario is None:
            (out / SCENARIO_FILE).unlink(missing_ok=True)
        return out

    def content_id(self) -> str:
        """A token of the run's content: the same run gives the same token (the files stay
        byte-identical), two different runs different ones."""
        digest = hashlib.sha256()
        for frame in self._frames():
            digest.update(json.dumps([[str(c) for c in frame.columns], [str(t) for t in frame.dtypes]]).encode())
            try:
                digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            except TypeError:  # a cell pandas cannot hash (a list): a token unique to this write
                digest.update(os.urandom(16))
        summary = {k: v for k, v in self.summary.items() if k != RUN_ID_KEY}
        digest.update(json.dumps(summary, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    @classmethod
    def read(cls, out_dir: str | Path) -> Results:
        """The Results a run wrote to `out_dir` (jobs.parquet, timeline.parquet, summary.json, and
        requests.parquet when there is one). Refuses
        a folder whose files come from different runs (their run ids differ), naming them."""
        out = Path(out_dir)
        missing = [n for n in RUN_FILES if not (out / n).is_file()]
        if missing:
            raise CapsimError(f"not a run's output folder: {', '.join(missing)} missing", source=str(out))
        try:
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CapsimError(f"cannot read summary.json ({type(exc).__name__}): not a run's summary",
                              source=str(out)) from None
        if not isinstance(summary, dict):
            raise CapsimError("summary.json does not hold a mapping: not a run's summary", source=str(out))
        ids = {"jobs.parquet": _parquet_run_id(out / "jobs.parquet"),
               "timeline.parquet": _parquet_run_id(out / "timeline.parquet"),
               "summary.json": summary.pop(RUN_ID_KEY, None)}
        served = (out / REQUESTS_FILE).is_file()
        if served:
            ids[REQUESTS_FILE] = _parquet_run_id(out / REQUESTS_FILE)
        _one_run(ids, out)
        try:
            jobs, timeline = pd.read_parquet(out / "jobs.parquet"), pd.read_parquet(out / "timeline.parquet")
            requests = pd.read_parquet(out / REQUESTS_FILE) if served else None
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise CapsimError(f"cannot read the run's Parquet files: {exc}", source=str(out)) from None
        return cls(summary.get("scenario", out.name), summary.get("seed", 0), jobs, timeline, summary,
                   ids["summary.json"], requests, _scenario_record(out / SCENARIO_FILE, ids["summary.json"]))

    def report(self, target: str | Path, period: str | None = None) -> Path:
        """A self-contained HTML report (summary, periods, pools, figures) for whoever holds the budget."""
        from simulator.report.html import write_report

        return write_report(self, target, period)

    def by_period(self, length: str | float = "90d") -> pd.DataFrame:
        """Waits (by submission period), utilisation and energy per period: `"90d"` for quarters."""
        return period_table(self.jobs, self.timeline, int(self.summary.get("gpus_total", 0)),
                            parse_duration(length))


def _write_parquet(frame: pd.DataFrame, path: str, run_id: str) -> None:
    """`frame.to_parquet(path, index=False)`, with the run id in the schema's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _PARQUET_RUN_ID: run_id.encode()})
    pq.write_table(table, path, compression="snappy")


def _parquet_run_id(path: Path) -> str | None:
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as exc:
        raise CapsimError(f"{path.name} is not a readable Parquet file (cut short?): {exc}",
                          source=str(path.parent)) from None
    value = metadata.get(_PARQUET_RUN_ID)
    return None if value is None else value.decode("utf-8", "replace")


def _one_run(ids: dict[str, str | None], out: Path) -> None:
    """Refuse files of different runs side by side. A set in which no file has an id was written
    before run ids existed, and is read as it is."""
    if len(set(ids.values())) <= 1:
        return
    groups: dict[str | None, list[str]] = {}
    for name, run_id in ids.items():
        groups.setdefault(run_id, []).append(name)
    parts = [f"{' and '.join(names)} {'from run ' + run_id if run_id else 'without a run id (an older capsim)'}"
             for run_id, names in groups.items()]
    raise CapsimError(f"these files come from different runs: {'; '.join(parts)}. An interrupted write or a "
                      "copy mixed two runs; run the scenario again into this folder (capsim run --out)",
                      source=str(out))


def _scenario_record(path: Path, run_id: str | None) -> dict | None:
    """The scenario record kept beside a run, or None when there is none, it cannot be read, or it is
    another run's (the report then says the pools are not known, rather than show the wrong ones)."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get(RUN_ID_KEY) != run_id or not isinstance(kept.get("scenario"), dict):
        return None
    return kept["scenario"]


def _finite(value):
    """The summary as valid JSON: a NaN or infinite figure (a mean over nothing) becomes null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
