"""The scenario reference and JSON Schema are generated from the models, shipped current, and accept
exactly what the loader accepts on the shipped scenarios."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from simulator.cli import main
from simulator.scenario import default_scenario_text
from simulator.scenario_reference import reference_markdown, schema_text

DOCS = Path(__file__).resolve().parents[1] / "docs"
jsonschema = pytest.importorskip("jsonschema")


def test_shipped_reference_and_schema_are_current():
    assert (DOCS / "scenario_reference.md").read_text() == reference_markdown() + "\n", \
        "regenerate: capsim scenario reference > docs/scenario_reference.md"
    assert (DOCS / "scenario.schema.json").read_text() == schema_text(), \
        "regenerate: capsim scenario schema > docs/scenario.schema.json"


def test_schema_accepts_the_default_and_durations_and_refuses_typos():
    schema = json.loads(schema_text())
    data = yaml.safe_load(default_scenario_text())
    jsonschema.validate(data, schema)
    pool = data["cluster"]["pools"][0]
    jsonschema.validate({**data, "cluster": {"pools": [{**pool, "available_from": "90d"}]}}, schema)
    for bad in ({**pool, "nodez": 3}, {**pool, "nodes": 0}, {**pool, "available_from": "soon"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**data, "cluster": {"pools": [bad]}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="workload"):
        jsonschema.validate({k: v for k, v in data.items() if k != "workload"}, schema)


def test_every_scenario_key_is_in_the_reference():
    text = reference_markdown()
    for key in ("available_from", "burst_after", "checkpoint_interval", "device_mtbf", "usd_per_kwh", "rate_per_hour",
                "oversubscription", "stack", "idle_fraction"):
        assert f"`{key}`" in text, key


def test_cli_prints_the_default_the_schema_and_the_reference():
    runner = CliRunner()
    assert runner.invoke(main, ["scenario", "show-default"]).output == default_scenario_text()
    assert json.loads(runner.invoke(main, ["scenario", "schema"]).output)["title"] == "capsim scenario"
    assert runner.invoke(main, ["scenario", "reference"]).output.startswith("# Scenario file reference")
