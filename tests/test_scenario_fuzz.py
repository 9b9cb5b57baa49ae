"""Fuzzing what a user can write: valid scenarios, sweep files and purchase plans (the embedded default,
the examples in docs/ and the tests), mutated as a careful adversary would (deleted keys, wrong types,
zero / negative / NaN / infinite / 2^63 / huge numbers, unicode, copied subtrees, jobs bigger than the
cluster, zero durations), go through capsim. Every case must end in Results that make sense (finite
summary numbers that JSON can hold, no job starting before its submission or ending before its start)
or in one CapsimError: never another exception, never a hang (each case runs under a time bound).

The budget is bounded by default (about a thousand cases, under a minute, the same cases every run);
CAPSIM_FUZZ_EXAMPLES=N runs N fresh random cases per test instead (5,000: a few minutes), and
CAPSIM_FUZZ_CASE_SECONDS sets the time bound of one case. Every crash these tests and the issue 16
attack found is kept below as an explicit regression example.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulator
from simulator.errors import CapsimError
from simulator.scenario import default_scenario_text, scenario_from_text
from simulator.workload.size import estimate_size

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("CAPSIM_FUZZ_EXAMPLES", "0"))
CASE_SECONDS = float(os.environ.get("CAPSIM_FUZZ_CASE_SECONDS", "30"))  # a case taking longer is a hang
# Cases are run (not only validated) when they are this small; a bigger valid scenario is only validated.
RUN_JOBS, RUN_FAILURES, RUN_NODES, RUN_REQUESTS, RUN_WINDOWS = 300, 2_000, 20_000, 3_000, 2_000


@pytest.fixture(autouse=True, scope="module")
def _small_memory_limit():
    """The size check refuses what would not fit in 2 GB: the same refusals on every machine, and no
    case that fills this one (a case planned at 80% of a shared CI machine's memory is OOM-killed)."""
    before = os.environ.get("CAPSIM_MEMORY_LIMIT")
    os.environ["CAPSIM_MEMORY_LIMIT"] = "2GB"
    yield
    if before is None:
        del os.environ["CAPSIM_MEMORY_LIMIT"]
    else:
        os.environ["CAPSIM_MEMORY_LIMIT"] = before


def _budget(default: int) -> settings:
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------------
# The valid inputs the mutations start from

TEST_SCENARIO = """\
name: t
cluster:
  pools:
    - {name: a, device: h100-sxm, nodes: 2, devices_per_node: 8}
    - {name: b, device: a100-sxm-80gb, nodes: 2, devices_per_node: 4, available_from: 2h,
       available_until: 9d, drain_before: 1d, network: {oversubscription: 4}, price_usd: 20000}
workload:
  - kind: synthetic
    jobs: 30
    arrival: {process: diurnal, rate_per_hour: 6, shape: sinusoid, weekend: 0.5,
              bursts: {every: 1d, size: 3, jitter: 1h}}
    classes:
      - {weight: 3, gpus: {choice: [1, 2, 4], weights: [0.5, 0.3, 0.2]},
         duration: {dist: lognormal, median: 20m, sigma: 1.2, max: 1d}}
      - {weight: 1, gpus: 8, duration: {dist: mixture, weights: [1, 2],
         components: [{dist: constant, value: 10m}, {dist: weibull, shape: 0.7, scale: 2h}]}}
    growth: {annual: 0.5, sizes: 0.2}
    users: 5
    comm_fraction: 0.1
  - kind: synthetic
    name: q
    jobs: 10
    arrival: {process: poisson, rate_per_hour: 2}
    gpus: 1
    duration: {dist: quantiles, p: [0, 0.5, 1], values: [1m, 30m, 5h]}
scheduler: {policy: tiresias, thresholds: [1h, 10h],
            preemption: {checkpoint_interval: 30m, checkpoint_cost: 10s, restore: 60s}}
power: {idle_fraction: 0.2, pue: 1.3}
cost: {usd_per_kwh: 0.1, amortization_years: 4}
failures: {device_mtbf: 20000h, repair: 2h}
"""


def _yaml_blocks(path: Path) -> list[dict]:
    text = path.read_text()
    out = []
    for body in re.findall(r"```yaml\n(.*?)```", text, re.S):
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def _small(scenario: dict) -> dict | None:
    """A valid scenario cut down to a few dozen jobs (so a case runs in well under a second), its trace
    sources' paths made absolute, or None when it does not validate as it is."""
    data = copy.deepcopy(scenario)
    sources = []
    for src in data.get("workload", []):
        if src.get("kind") == "trace":
            path = ROOT / src["path"]
            if not path.is_file():
                continue
            src["path"] = str(path)
        elif src.get("kind") in ("synthetic", "preset"):
            src.pop("until", None)
            src["jobs"] = min(int(src.get("jobs") or 40), 40)
            if "path" in src:  # a fitted preset of the docs' own session: not here
                continue
        sources.append(src)
    data["workload"] = sources
    try:
        scenario_from_text(yaml.safe_dump(data))
    except CapsimError:
        return None
    return data


def _scenarios() -> list[dict]:
    found = [yaml.safe_load(default_scenario_text()), yaml.safe_load(TEST_SCENARIO)]
    for page in sorted((ROOT / "docs").glob("*.md")):
        found += [d for d in _yaml_blocks(page) if "cluster" in d]
    for text in re.findall(r'"""\\\n(name: .*?)"""', (ROOT / "tests" / "test_bad_input.py").read_text(), re.S):
        found.append(yaml.safe_load(text))
    return [s for s in map(_small, found) if s is not None]


SCENARIOS = _scenarios()
SMALL_BASE = {"name": "small", "seed": 1,
              "cluster": {"pools": [{"name": "h100", "device": "h100-sxm", "nodes": 2, "devices_per_node": 8}]},
              "workload": [{"kind": "synthetic", "jobs": 12, "arrival": {"process": "poisson", "rate_per_hour": 4},
                            "gpus": {"choice": [1, 8], "weights": [0.7, 0.3]},
                            "duration": {"dist": "exponential", "mean": "30m"}}],
              "cost": {"usd_per_kwh": 0.08}}
SWEEPS = []
for _page in ("sweeps_and_plans.md", "policies.md", "benchmarks.md"):
    for _doc in _yaml_blocks(ROOT / "docs" / _page):
        if "axes" in _doc or "cases" in _doc:
            _base = _small(_doc["base"]) if "base" in _doc else SMALL_BASE
            if _base is not None:
                SWEEPS.append({**{k: v for k, v in _doc.items() if k != "scenario"}, "base": _base, "seeds": 1})
# Purchase plans for training waits (a plan for a service's latency sizes replicas, not nodes, on a base
# with services: its options are checked by tests/test_purchase_plan.py)
PLANS = [{k: v for k, v in d.items() if k != "scenario"} | {"base": SMALL_BASE, "seeds": 1}
         for d in _yaml_blocks(ROOT / "docs" / "sweeps_and_plans.md")
         if isinstance(d.get("target"), dict) and "service" not in d["target"]]
for plan in PLANS:
    for option in plan["options"]:
        option["max_nodes"] = min(option["max_nodes"], 4)


def test_the_fuzzers_start_from_valid_inputs():
    assert len(SCENARIOS) >= 6  # the default, the tests', the docs' scenarios
    assert len(SWEEPS) >= 2 and len(PLANS) >= 1


# ---------------------------------------------------------------------------------------------------
# Mutations

NASTY_NUMBERS = [0, -1, 1, 2, -0.5, 0.0, -0.0, 1e-300, -1e-300, 1e-9, 1e300, -1e300, 1e308, 2**31, 2**53,
                 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, 10**400, float("nan"), float("inf"),
                 float("-inf"), 3.5, 7, 8, 64, 1000, 10**6]
NASTY_STRINGS = ["", " ", "abc", "0", "-1", "1e999", "nan", ".inf", "-5m", "0s", "1e-300s", "90s", "2h", "30d",
                 "1 fortnight", "1e20y", "-1e20y", "ünïcødé ☃", "\u202e\u0000x", "h100-sxm", "../models/llama3-8b",
                 "/etc/passwd", "fifo", "tiresias", "gavel", "themis", "quota", "gittins", "easy-backfill", "edf",
                 "sjf", "srtf", "x" * 300, "999999999999999999999999999999", "true", "null", "[1, 2]"]
nasty_values = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(NASTY_STRINGS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([None, True, False, [], {}, [5], [[0, 1]], {"x": 1}, [float("nan")], [-1, 2],
                     {"dist": "constant", "value": 0}, {"choice": [2**63]}]),
)


def _paths(node, path=()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _numbers(doc) -> list[tuple]:
    return [p for p in _paths(doc) if isinstance(_get(doc, p), int | float) and not isinstance(_get(doc, p), bool)]


def mutate(doc, data) -> object:
    """One mutation of `doc` (changed in place where possible; the result is returned)."""
    paths = _paths(doc)
    kind = data.draw(st.sampled_from(["replace", "replace", "delete", "copy", "number", "number", "duplicate",
                                      "zero_durations", "huge_job"]), label="mutation")
    if kind == "number" and _numbers(doc):
        path = data.draw(st.sampled_from(_numbers(doc)), label="number at")
        value = _get(doc, path)
        factor = data.draw(st.sampled_from([0, -1, 1e-300, 1e-6, 1e6, 1e300, 2**63, float("nan"), float("inf"),
                                            0.1, 0.5, 2, 3, 10]))
        try:
            new = value * factor
        except OverflowError:  # a 400-digit integer times a float
            new = value * int(factor) if math.isfinite(factor) and factor == int(factor) else value
        if isinstance(value, int) and isinstance(new, float) and math.isfinite(new) and new.is_integer():
            new = int(new)
        kind, value_to_set = "set", new
    elif kind == "zero_durations":
        for p in paths:
            if p and p[-1] in ("duration", "mean", "median", "value", "scale", "every", "restore", "round", "lease",
                               "checkpoint_interval", "repair", "device_mtbf", "jitter", "available_from"):
                parent = _get(doc, p[:-1])
                if isinstance(parent, dict) and not isinstance(parent[p[-1]], dict | list):
                    parent[p[-1]] = data.draw(st.sampled_from([0, "0s", -1, 1e-300]))
        return doc
    elif kind == "huge_job":
        for p in paths:
            if p and p[-1] == "gpus" and isinstance(_get(doc, p), int):
                _get(doc, p[:-1])["gpus"] = data.draw(st.sampled_from([10**6, 2**53, 100, 17]))
        return doc
    if not paths[1:]:
        return copy.deepcopy(data.draw(nasty_values))  # a copy: the strategy's own lists must not change
    path = data.draw(st.sampled_from(paths[1:]), label="at")
    parent, key = _get(doc, path[:-1]), path[-1]
    if kind == "delete":
        del parent[key]
    elif kind == "copy":
        source = data.draw(st.sampled_from(paths), label="copied from")
        parent[key] = copy.deepcopy(_get(doc, source))
    elif kind == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    elif kind == "set":
        parent[key] = value_to_set
    else:
        parent[key] = copy.deepcopy(data.draw(nasty_values, label="value"))
    return doc


def _dump(doc) -> str | None:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return None


def mutate_text(text: str, data) -> str:
    """A change to the YAML text itself: a line repeated (a repeated key), dropped or cut, a character
    inserted, an anchor and aliases around a line."""
    lines = text.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    kind = data.draw(st.sampled_from(["repeat", "drop", "cut", "insert", "alias"]), label="text mutation")
    if kind == "repeat":
        lines.insert(i, lines[i])
    elif kind == "drop":
        del lines[i]
    elif kind == "cut":
        lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + data.draw(st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \t\u00a0\ufeff"))) + lines[i][at:]
    else:
        key, sep, value = lines[i].partition(": ")
        if sep and value:
            lines[i] = f"{key}: &x {value}"
            lines.append("x-alias: [*x, *x]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# The checks

class Hang(BaseException):  # not an Exception, so that capsim's own handlers cannot catch it
    pass


@contextmanager
def time_bound(seconds: float):
    """Fail (an AssertionError, which Hypothesis shrinks and reports) a case still running after `seconds`."""
    def alarm(signum, frame):
        raise Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Hang:
        raise AssertionError(f"a hang: still running after {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_results(res) -> None:
    summary = res.summary
    bad = {k: v for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v)}
    assert not bad, f"non-finite summary numbers: {bad}"
    json.dumps(summary, allow_nan=False)  # summary.json must be valid JSON
    jobs = res.jobs
    started = jobs["start_time"].notna()
    assert (jobs.loc[started, "start_time"] >= jobs.loc[started, "submit_time"]).all(), "a job started before submission"
    ended = jobs["end_time"].notna()
    assert (jobs.loc[ended, "end_time"] >= jobs.loc[ended, "start_time"]).all(), "a job ended before it started"
    assert summary["jobs_submitted"] == len(jobs)
    time_s = res.timeline["time_s"].to_numpy()
    assert (time_s[1:] >= time_s[:-1]).all() and all(map(math.isfinite, time_s)), "timeline out of order"


def run_scenario_text(text: str) -> str:
    """'refused' (a CapsimError), 'validated' (valid, too big to run here) or 'ran' (Results checked)."""
    with time_bound(CASE_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scenario = scenario_from_text(text, source="<fuzz>", base_dir=ROOT)
            size = estimate_size(scenario)
            if (size.jobs > RUN_JOBS or size.failures > RUN_FAILURES or size.nodes > RUN_NODES
                    or size.requests > RUN_REQUESTS or size.windows > RUN_WINDOWS):
                return "validated"
            res = simulator.run(scenario, progress=False)
        except CapsimError as exc:
            assert str(exc) and "Traceback" not in str(exc)
            return "refused"
    check_results(res)
    return "ran"


@given(data=st.data())
@_budget(800)
def test_mutated_scenarios_run_or_fail_with_one_clear_error(data):
    doc = copy.deepcopy(data.draw(st.sampled_from(SCENARIOS), label="base"))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        doc = mutate(doc, data)
    text = _dump(doc)
    if text is not None and data.draw(st.integers(0, 4), label="text mutations") == 0:
        text = mutate_text(text, data)
    if text is not None:
        run_scenario_text(text)


_TMP = tempfile.TemporaryDirectory(prefix="capsim-fuzz-")


def _write(name: str, text: str) -> Path:
    path = Path(_TMP.name) / name
    path.write_text(text)
    return path


@given(data=st.data())
@_budget(120)
def test_mutated_sweep_files_load_or_fail_with_one_clear_error(data):
    doc = copy.deepcopy(data.draw(st.sampled_from(SWEEPS), label="base"))
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        doc = mutate(doc, data)
    text = _dump(doc)
    if text is None:
        return
    path = _write("sweep.yaml", text)
    from simulator.experiment.sweep import load_sweep

    with time_bound(CASE_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sweep = load_sweep(path)
            jobs = sum(estimate_size(p.scenario).jobs for p in sweep.points) * len(sweep.seeds)
            if jobs <= 4 * RUN_JOBS and sweep.runs <= 16:
                result = simulator.sweep(path, workers=1, progress=False)
                assert len(result.runs) == sweep.runs
                json.dumps(result.runs.select_dtypes("number").to_dict("list"), allow_nan=True)
        except CapsimError:
            pass


@given(data=st.data())
@_budget(60)
def test_mutated_purchase_plans_load_or_fail_with_one_clear_error(data):
    doc = copy.deepcopy(data.draw(st.sampled_from(PLANS), label="base"))
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        doc = mutate(doc, data)
    text = _dump(doc)
    if text is None:
        return
    path = _write("plan.yaml", text)
    from simulator.planning.purchase import cheapest_purchase, load_purchase_plan

    with time_bound(CASE_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spec, base, _, _ = load_purchase_plan(path)
            small = (len(spec.options) <= 3 and all(o.max_nodes <= 8 for o in spec.options) and spec.seeds <= 2
                     and estimate_size(scenario_from_text(yaml.safe_dump(base))).jobs <= 60)
            if small:
                plan = cheapest_purchase(path, workers=1, progress=False)
                assert len(plan.options) == len(spec.options)
        except CapsimError:
            pass


# ---------------------------------------------------------------------------------------------------
# Regression examples: each crash or silent acceptance found (issue 16, and these fuzzers), kept.

GOOD = """\
name: t
cluster:
  pools:
    - {name: a, device: h100-sxm, nodes: NODES, devices_per_node: DPN EXTRA_POOL}
workload:
  - kind: synthetic
    jobs: JOBS
    arrival: ARRIVAL
    gpus: GPUS
    duration: DURATION
    users: USERS
    GROWTH
scheduler: SCHEDULER
TAIL
"""
_DEFAULTS = dict(NODES="2", DPN="8", EXTRA_POOL="", JOBS="20", ARRIVAL="{process: poisson, rate_per_hour: 10}",
                 GPUS="1", DURATION="{dist: exponential, mean: 1h}", USERS="1", GROWTH="", SCHEDULER="{policy: fifo}",
                 TAIL="")


def _scenario(**over) -> str:
    text = GOOD
    for key, value in {**_DEFAULTS, **over}.items():
        text = text.replace(key, value)
    return text


# (what was wrong, the scenario's changes, what the one-line error must say)
REGRESSIONS = [
    ("NaN weight", dict(GPUS="{choice: [1, 2], weights: [.nan, 1]}"), "workload[0].gpus.weights[0] (line 9)"),
    ("infinite weight", dict(GPUS="{choice: [1, 2], weights: [.inf, 1]}"), "finite number"),
    ("infinite rate", dict(ARRIVAL="{process: poisson, rate_per_hour: .inf}"), "workload[0].arrival.rate_per_hour"),
    ("NaN empirical weight", dict(DURATION="{dist: empirical, values: [1, 2], weights: [.nan, 1]}"), "finite"),
    ("scalar empirical values", dict(DURATION="{dist: empirical, values: 5}"), "expected a list of run times"),
    ("scalar quantile values", dict(DURATION="{dist: quantiles, p: [0, 1], values: 5}"), "expected a list"),
    ("negative constant duration", dict(DURATION="{dist: constant, value: -5}"), "greater than or equal to 0"),
    ("infinite lognormal sigma", dict(DURATION="{dist: lognormal, median: 1h, sigma: .inf}"), "finite"),
    ("lognormal whose mean overflows", dict(DURATION="{dist: lognormal, median: 1h, sigma: 19}"), "mean run time"),
    ("lognormal sigma of 10^300 (an OverflowError)", dict(DURATION="{dist: lognormal, median: 1h, sigma: 1e300, "
                                                                 "max: 2d}"), "less than or equal to 20"),
    ("negative lognormal median", dict(DURATION="{dist: lognormal, median: -1h, sigma: 1}"), "greater than 0"),
    ("Weibull shape near 0", dict(DURATION="{dist: weibull, shape: 1e-300, scale: 1h}"), "mean run time"),
    ("NaN mixture weight", dict(DURATION="{dist: mixture, components: [{dist: constant, value: 5}], "
                                         "weights: [.nan]}"), "finite"),
    ("infinite growth", dict(GROWTH="growth: {annual: .inf}"), "workload[0].growth.annual"),
    ("NaN growth curve", dict(GROWTH="growth: {curve: [[0, .nan]]}"), "workload[0].growth.curve[0][1]"),
    ("infinite size growth", dict(GROWTH="growth: {sizes: .inf}"), "finite"),
    ("growth that needs 10^9 draws", dict(GROWTH="growth: {annual: 1e300}", JOBS="1000"), "too big"),
    ("growth that overflows the rate", dict(GROWTH="growth: {annual: 1e300}"), "grows without bound"),
    ("infinite hourly rate", dict(ARRIVAL="{process: diurnal, rate_per_hour: 10, hourly: [.inf"
                                          + ", 1" * 23 + "]}"), "arrival.hourly[0]"),
    ("bursts of 10^10 jobs", dict(ARRIVAL="{process: poisson, rate_per_hour: 10, bursts: {every: 1h, "
                                          "size: 10000000000}}"), "too big for this machine"),
    ("users >= 2^63", dict(USERS=str(2**63)), "workload[0].users"),
    ("gpus >= 2^63", dict(GPUS=str(2**63)), "workload[0].gpus"),
    ("a choice of 2^63 gpus", dict(GPUS=f"{{choice: [{2**63}]}}"), "workload[0].gpus.choice[0]"),
    ("10^12 nodes", dict(NODES=str(10**12)), "cluster.pools[0].nodes"),
    ("10^12 devices per node", dict(DPN=str(10**12)), "cluster.pools[0].devices_per_node"),
    ("10^12 jobs", dict(JOBS=str(10**12)), "10,000 years"),
    ("10^9 jobs", dict(JOBS=str(10**9), ARRIVAL="{process: poisson, rate_per_hour: 1e9}"),
     "too big for this machine"),
    ("2^63 jobs", dict(JOBS=str(2**63)), "workload[0].jobs"),
    ("a 5,000-digit integer", dict(NODES="9" * 5000), "integer of 5,000 characters"),
    ("infinite oversubscription", dict(EXTRA_POOL=", network: {oversubscription: .inf}"), "oversubscription"),
    ("NaN oversubscription", dict(EXTRA_POOL=", network: {oversubscription: .nan}"), "oversubscription"),
    ("infinite price", dict(EXTRA_POOL=", price_usd: .inf", TAIL="cost: {usd_per_kwh: 0.1}"), "price_usd"),
    ("infinite energy price", dict(TAIL="cost: {usd_per_kwh: .inf}"), "cost.usd_per_kwh"),
    ("pue 1e308 (summary.json had Infinity)", dict(TAIL="power: {pue: 1e308}"), "power.pue"),
    ("amortised over 1e-320 years", dict(TAIL="cost: {amortization_years: 1e-320}"), "amortization_years"),
    ("MTBF 1e-300 (a run without end)", dict(TAIL="failures: {device_mtbf: 1e-300}"), "node failures expected"),
    ("checkpoints of 68 years under failures (a run without end)",
     dict(SCHEDULER="{policy: fifo, preemption: {checkpoint_interval: 30m, checkpoint_cost: 2147483648}}",
          GPUS="8", TAIL="failures: {device_mtbf: 50700h}"), "node failures expected"),
    ("a week-long job that never checkpoints, failing hourly", dict(
        DURATION="{dist: constant, value: 7d}", GPUS="16", TAIL="failures: {device_mtbf: 16h}"),
     "node failures expected"),
    ("tiresias thresholds: 5", dict(SCHEDULER="{policy: tiresias, thresholds: 5}"),
     "scheduler.thresholds: expected a list, got 5"),
    ("negative tiresias threshold", dict(SCHEDULER="{policy: tiresias, thresholds: [-5, 10]}"),
     "scheduler.thresholds[0]: must not be negative"),
    ("negative quota", dict(SCHEDULER="{policy: quota, quotas: {a: -5}}"), "scheduler.quotas.a"),
    ("quota >= 2^63", dict(SCHEDULER=f"{{policy: quota, quotas: {{a: {2**63}}}}}"), "fits 64 bits"),
    ("negative gavel throughput", dict(SCHEDULER="{policy: gavel, throughputs: {h100-sxm: -1}}"),
     "scheduler.throughputs.h100-sxm: must not be negative"),
    ("NaN gavel throughput", dict(SCHEDULER="{policy: gavel, throughputs: {h100-sxm: .nan}}"), "finite"),
    ("infinite estimate sigma", dict(SCHEDULER="{policy: sjf, estimates: {error: lognormal, sigma: .inf}}"),
     "scheduler.estimates.sigma"),
    ("negative restore (time ran backwards)", dict(SCHEDULER="{policy: tiresias, preemption: {restore: -100}}"),
     "scheduler.preemption.restore"),
    ("negative restore with a unit", dict(SCHEDULER="{policy: tiresias, preemption: {restore: -2m}}"),
     "scheduler.preemption.restore"),
    ("negative start", dict(GROWTH="start: -1d"), "workload[0].start"),
    ("a duration of 10^20 years", dict(DURATION="{dist: exponential, mean: 1e20y}"), "10,000 years"),
    ("a union tag in the key path", dict(GPUS="abc"), "workload[0].gpus (line 9): none of the accepted forms"),
    ("a preset name that is a path", dict(), "not a path"),
    ("a zoo model name that is a path", dict(), "unknown model"),
    ("duplicate key", dict(), "key 'nodes' appears twice in one mapping (first on line 4)"),
]


def _regression_text(name: str, over: dict) -> str:
    text = _scenario(**over)
    if name == "a preset name that is a path":
        text = text.split("workload:")[0] + "workload:\n  - {kind: preset, name: ../models/llama3-8b, jobs: 5}\n"
    elif name == "a zoo model name that is a path":
        text = text.replace("    duration: {dist: exponential, mean: 1h}\n",
                            "    model: ../presets/philly\n    tokens: 1e9\n")
    elif name == "growth that overflows the rate":
        text = text.replace("jobs: 20", "until: 10y")
    elif name == "duplicate key":
        text = text.replace("nodes: 2,", "nodes: 2, nodes: 400,")
    return text


@pytest.mark.parametrize(("name", "over", "expected"), REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_regressions_fail_with_one_clear_error(name, over, expected, monkeypatch):
    monkeypatch.setenv("CAPSIM_MEMORY_LIMIT", "4GB")  # the same refusals on every machine
    text = _regression_text(name, over)
    start = time.perf_counter()
    with time_bound(CASE_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CapsimError) as info:
            simulator.run(text, progress=False)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - start < 10


CHAT = next(d for d in _yaml_blocks(ROOT / "docs" / "serving.md") if "services" in d)


def _chat(request: dict | None = None, service: dict | None = None, tail: dict | None = None) -> str:
    doc = copy.deepcopy(CHAT)
    doc["requests"][0].update(request or {})
    doc["requests"][0] = {k: v for k, v in doc["requests"][0].items() if v is not None}
    doc["services"][0].update(service or {})
    doc.update(tail or {})
    return yaml.safe_dump(doc, sort_keys=False)


# Serving and maintenance sections, which the size check did not cover (what was wrong, the scenario, the error).
SECTION_REGRESSIONS = [
    # The fuzz case OOM-killed at ~24 GB: the docs' `requests: 300` times 10^6; the estimate had no requests.
    ("3x10^8 requests (24 GB before the OOM kill)", lambda: _chat({"requests": 300 * 10**6}),
     "GB of memory (0 jobs, 3e+08 serving requests"),  # the size check's refusal, whatever its estimate
    ("2^63 requests (numpy: maximum dimension exceeded)", lambda: _chat({"requests": 2**63}), "too big"),
    ("a rate of 10^300 per second for an hour", lambda: _chat({"requests": None, "until": "1h",
                                                               "arrival": {"process": "poisson", "rate_per_s": 1e300}}),
     "requests[0].arrival.rate_per_s (line"),  # refused by its bound (10^9 a second) before the size check
    ("10^9 requests a second for an hour", lambda: _chat({"requests": None, "until": "1h",
                                                         "arrival": {"process": "poisson", "rate_per_s": 1e9}}),
     "3.6e+12 serving requests"),
    ("an infinite rate until 1h (ZeroDivisionError)", lambda: _chat({"requests": None, "until": "1h", "arrival": {
        "process": "poisson", "rate_per_s": float("inf")}}), "requests[0].arrival.rate_per_s (line"),
    ("a prompt of 10^30 tokens (int64 overflow)", lambda: _chat({"prompt_tokens": 10**30}),
     "requests[0].prompt_tokens"),
    ("uniform output up to 2^63 tokens", lambda: _chat({"output_tokens": {"dist": "uniform", "low": 1,
                                                                         "high": 2**63}}),
     "requests[0].output_tokens.high"),
    ("lognormal output of median 10^300 (wrapped to negative counts)",
     lambda: _chat({"output_tokens": {"dist": "lognormal", "median": 1e300, "sigma": 0.5}}),
     "requests[0].output_tokens.median"),
    ("10^9 replicas on 8 devices", lambda: _chat(service={"replicas": 10**9}), "services[0].replicas: pool"),
    ("maintenance every millisecond", lambda: _scenario(
        TAIL="maintenance: [{pool: a, every: 0.001, duration: 0.0005}]",
        SCHEDULER="{policy: fifo, preemption: {restore: 0}}"), "maintenance: too big for this machine"),
    ("maintenance windows leaving less up-time than a restore (ran for ever)", lambda: _scenario(
        TAIL="maintenance: [{pool: a, every: 2h, duration: 1h}]", DURATION="{dist: constant, value: 10h}",
        SCHEDULER="{policy: fifo, preemption: {restore: 2h}}"), "maintenance[0].every: the pool is up for 1h"),
]


@pytest.mark.parametrize(("name", "make", "expected"), SECTION_REGRESSIONS, ids=[r[0] for r in SECTION_REGRESSIONS])
def test_section_regressions_fail_with_one_clear_error(name, make, expected, monkeypatch):
    monkeypatch.setenv("CAPSIM_MEMORY_LIMIT", "4GB")
    start = time.perf_counter()
    with time_bound(CASE_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CapsimError) as info:
            simulator.run(make(), progress=False)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - start < 10


def test_the_docs_chat_service_is_sized_and_runs():
    """The docs' serving example passes the size check with its 300 requests counted, and runs."""
    size = estimate_size(scenario_from_text(_chat()))
    assert size.requests == 300 and size.replicas == 2
    res = simulator.run(_chat(), progress=False)
    assert len(res.requests) == 300 and res.summary["services"]["chat"]["requests_completed"] == 300


def test_good_scenario_of_the_regressions_runs():
    res = simulator.run(_scenario(), progress=False)
    check_results(res)


def test_tests_and_docs_examples_run_clean():
    """The bases themselves (cut to a few dozen jobs) run and pass the checks."""
    for doc in SCENARIOS:
        assert run_scenario_text(yaml.safe_dump(doc)) in ("ran", "validated")


def test_alias_bomb_sweep_file_is_refused_at_once(tmp_path):
    """A 747-byte sweep file whose nested aliases expanded to 3.7 GB."""
    lines = ["name: bomb", "base:", "  name: x", "  cluster: {pools: [{name: a, device: h100-sxm, nodes: 1, "
             "devices_per_node: 8}]}", "  workload: []", "axes:", "  l0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n"
    assert len(text.encode()) < 1000
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(CapsimError, match=r"bomb.yaml: line \d+, column \d+: aliases repeat"):
        simulator.sweep(path)
    assert time.perf_counter() - start < 2


def test_deep_nesting_and_recursive_aliases_are_refused(tmp_path):
    deep = _scenario(TAIL="x: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(CapsimError, match="nesting"):
        simulator.run(deep, progress=False)
    block = _scenario(TAIL="x:\n  " + "- " * 150 + "1")
    with pytest.raises(CapsimError, match="nesting deeper than 100 levels"):
        simulator.run(block, progress=False)
    with pytest.raises(CapsimError, match="recursive"):
        simulator.run(_scenario(TAIL="x: &a [1, *a]"), progress=False)


def test_sweep_with_periods_where_every_job_is_rejected(tmp_path):
    """Found by the sweep fuzzer: jobs larger than the cluster leave no timeline, and the periods
    table had no columns (KeyError: 'case')."""
    base = copy.deepcopy(SMALL_BASE)
    base["workload"][0]["gpus"] = 2**31
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "all-rejected", "base": base, "seeds": 1, "periods": "7d",
                                    "cases": [{"name": "a"}, {"name": "b", "set": {"cluster.pools[0].nodes": 3}}],
                                    "metrics": ["p95_wait_s", "gpu_utilization", "cost_usd"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = simulator.sweep(path, workers=1, progress=False)
    assert (result.runs["jobs_rejected"] == 12).all()
    assert set(result.periods["case"]) == {"a", "b"} and (result.periods["jobs_submitted"] == 12).all()
    assert (result.period_points["cost_usd_mean"] == 0).all()


def test_plan_with_a_null_cost_is_refused(tmp_path):
    """Found by the plan fuzzer: `cost: null` passed the check for `cost:` and the search failed with
    KeyError: 'cost_usd' after its first runs."""
    plan = copy.deepcopy(PLANS[0])
    plan["base"]["cost"] = None
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    from simulator.planning.purchase import cheapest_purchase

    with pytest.raises(CapsimError, match="the base scenario needs `cost:`"):
        cheapest_purchase(path, workers=1, progress=False)


def test_a_period_that_cuts_a_run_into_too_many_periods_is_one_error(tmp_path):
    """Found by the plan fuzzer: `period: 1e-300` asked numpy for 10^305 period edges (ValueError)."""
    plan = copy.deepcopy(PLANS[0])
    plan["target"]["period"] = 1e-300
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    from simulator.planning.purchase import cheapest_purchase

    with pytest.raises(CapsimError, match=r"periods: a period of 1e-300s cuts the run .* periods; at most 100,000"):
        cheapest_purchase(path, workers=1, progress=False)
    res = simulator.run(_scenario(), progress=False)
    with pytest.raises(CapsimError, match="at most 100,000"):
        res.by_period(0.001)
