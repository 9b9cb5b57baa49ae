"""validate-perf against the published Megatron runs (needs ../shared)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.perf.cli import validate_perf

TABLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "calibration" / "megatron_a100_validation.csv"


@pytest.mark.skipif(not TABLE.is_file(), reason="../shared/data/calibration is absent (fresh clone without shared data)")
def test_validate_perf_meets_targets():
    r = CliRunner().invoke(validate_perf, ["--table", str(TABLE), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rows"] == 18
    assert out["median_abs_error"] <= 0.05
    assert out["worst_abs_error"] <= 0.12


def test_validate_perf_missing_table_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(validate_perf, ["--table", str(tmp_path / "absent.csv")])
    assert r.exit_code != 0
    assert "validation table not found" in r.output
