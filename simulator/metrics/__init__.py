"""Metrics of a run, computed from its job table and timeline: the summary (summary.json), the table by
period, and the integrals of the timeline's step functions they rest on. Plain functions of
DataFrames: the run, Results, the report and sweeps all use them."""
