"""capsim's serving fleet against SplitwiseSim, a published open serving simulator, on the same
arrivals and the same measured iteration times (benchmarks/peer_splitwise.py says what differs).

Runs only where SplitwiseSim is installed: SPLITWISE_SIM names a splitwise-sim checkout and
SPLITWISE_PYTHON (default: this Python) a Python with its requirements."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

CHECKOUT = os.environ.get("SPLITWISE_SIM")
pytestmark = pytest.mark.skipif(not CHECKOUT or not (Path(CHECKOUT) / "data" / "perf_model.csv").is_file(),
                                reason="SplitwiseSim is not installed (set SPLITWISE_SIM to a splitwise-sim checkout)")


def _benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_splitwise.py"
    spec = importlib.util.spec_from_file_location("peer_splitwise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_latency_percentiles_agree_within_ten_percent_where_the_schedulers_agree():
    """At 2 requests/s one replica is lightly loaded, so prompts rarely meet a running batch and the two
    schedulers (SplitwiseSim mixes prompts into the running batch, capsim prefills them alone) do nearly
    the same thing: every TTFT, time-between-tokens and end-to-end statistic within 10%."""
    bench = _benchmark()
    table = bench.main(["--splitwise", CHECKOUT, "--python", os.environ.get("SPLITWISE_PYTHON", sys.executable),
                        "--requests", "1000", "--rate", "2"])
    assert len(table) == 12
    assert (table.difference.abs() < 0.10).all(), table.to_string()
