"""A scenario's size is estimated before anything is built (simulator/workload/size.py): the estimate
follows the generators, and a scenario too big for the machine is refused up front, naming its size
and the limit."""

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.scenario import default_scenario, scenario_from_data
from simulator.workload.size import check_size, estimate_size
from simulator.workload.synthetic import generate


def _scenario(source: dict, **extra) -> dict:
    return {"name": "s", "cluster": {"pools": [{"name": "a", "device": "h100-sxm", "nodes": 4,
                                                "devices_per_node": 8}]},
            "workload": [{"kind": "synthetic", "gpus": 1, "duration": {"dist": "exponential", "mean": "1h"},
                          **source}], **extra}


@pytest.mark.parametrize("source", [
    {"until": "30d", "arrival": {"process": "poisson", "rate_per_hour": 20}},
    {"until": "60d", "arrival": {"process": "diurnal", "rate_per_hour": 20, "shape": "sinusoid", "weekend": 0.3}},
    {"until": "200d", "arrival": {"process": "poisson", "rate_per_hour": 5}, "growth": {"annual": 2.0}},
    {"until": "90d", "arrival": {"process": "poisson", "rate_per_hour": 5,
                                 "bursts": {"every": "7d", "size": 100, "jitter": "1h"}},
     "growth": {"curve": [[0, 1.0], ["60d", 3.0]]}},
    {"jobs": 5000, "arrival": {"process": "poisson", "rate_per_hour": 5}, "growth": {"annual": -0.5}},
])
def test_the_estimate_follows_the_generators(source):
    scenario = scenario_from_data(_scenario(source))
    size = estimate_size(scenario)
    jobs = generate(scenario.workload[0], np.random.default_rng(1))
    assert size.jobs == pytest.approx(len(jobs), rel=0.1)
    assert size.horizon_s >= jobs["submit_time"].max() * 0.9
    assert size.draws >= 0.9 * len(jobs)


def test_the_default_scenario_fits():
    size = check_size(default_scenario())
    assert 15_000 < size.jobs < 30_000 and size.devices == 512


def test_too_big_is_refused_with_the_estimate_and_the_limit(monkeypatch):
    monkeypatch.setenv("CAPSIM_MEMORY_LIMIT", "10MB")
    with pytest.raises(CapsimError, match=r"workload: too big for this machine: about 2\d.\d MB of memory "
                                          r"\(21,600 jobs.*over the limit of 10.0 MB \(CAPSIM_MEMORY_LIMIT\)"):
        simulator.run(_scenario({"until": "30d", "arrival": {"process": "poisson", "rate_per_hour": 30}}))
    monkeypatch.setenv("CAPSIM_MEMORY_LIMIT", "lots")
    with pytest.raises(CapsimError, match="CAPSIM_MEMORY_LIMIT must be a size"):
        simulator.run(_scenario({"jobs": 5, "arrival": {"process": "poisson", "rate_per_hour": 30}}))


def test_jobs_that_would_never_all_arrive_are_refused():
    decaying = {"jobs": 10_000, "arrival": {"process": "poisson", "rate_per_hour": 1}, "growth": {"annual": -0.9}}
    with pytest.raises(CapsimError, match=r"workload\[0\]: 10,000 jobs would not all arrive within 10,000 years"):
        scenario_from_data(_scenario(decaying))
    slow = {"jobs": 100, "arrival": {"process": "poisson", "rate_per_hour": 1e-9}}
    with pytest.raises(CapsimError, match="take about 1.1e\\+07 years to arrive"):
        scenario_from_data(_scenario(slow))


def test_failures_beyond_the_limit_are_refused():
    source = {"jobs": 10, "arrival": {"process": "poisson", "rate_per_hour": 1}}
    with pytest.raises(CapsimError, match="failures.device_mtbf: about .* node failures expected"):
        scenario_from_data(_scenario(source, failures={"device_mtbf": "0.1s"}))


def test_traces_are_counted_once_read(tmp_path, monkeypatch):
    rows = "\n".join(f"j{i},{i},1,60" for i in range(20_000))
    (tmp_path / "jobs.csv").write_text("job_id,submit_time,gpus,duration\n" + rows + "\n")
    data = _scenario({"jobs": 5, "arrival": {"process": "poisson", "rate_per_hour": 1}})
    data["workload"] = [{"kind": "trace", "format": "csv", "path": str(tmp_path / "jobs.csv")}]
    monkeypatch.setenv("CAPSIM_MEMORY_LIMIT", "20MB")
    scenario = scenario_from_data(data)  # unknown until read
    with pytest.raises(CapsimError, match="20,000 jobs"):
        simulator.run(scenario, progress=False)
