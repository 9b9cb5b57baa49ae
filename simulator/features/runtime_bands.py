"""How sure the performance model is of each model job's runtime: jobs.parquet's runtime_band_low and
runtime_band_high, factors of the real over the predicted runtime (perf/band.py)."""

from __future__ import annotations

from simulator.engine.features import Meter
from simulator.perf.jobs import perf_bands


class RuntimeBands(Meter):
    def job_columns(self, outcome) -> None:
        bands = perf_bands(outcome.given, outcome.jobs)
        if bands is not None:
            outcome.jobs["runtime_band_low"], outcome.jobs["runtime_band_high"] = bands


def build(setup) -> list:
    return [RuntimeBands()] if "model" in setup.jobs.columns else []
