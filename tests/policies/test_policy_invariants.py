"""Every policy on random job lists (Hypothesis): devices are never oversubscribed, every feasible job
finishes, and no job starts before it arrives."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.policies.builtin import BUILTIN
from tests.helpers import assert_timeline_conserves_work, run_jobs

# Options that make a policy meaningful on these small job lists; the others run with their defaults.
OPTIONS = {
    "sjf": {"estimates": {"error": "lognormal", "sigma": 1.0}},
    "conservative-backfill": {"estimates": {"source": "history", "default": 50}},
    "quota": {"quotas": {"x": 4}, "default_quota": 2}, "tiresias": {"thresholds": [50, 500]},
    "gittins": {"thresholds": [200], "refresh": 3}, "themis": {"lease": 60, "elastic": True},
    "gavel": {"round": 60},
}

job_rows = st.lists(st.tuples(st.integers(0, 500), st.integers(1, 8), st.integers(1, 300),
                              st.sampled_from("xyz"), st.integers(0, 3)), min_size=1, max_size=40)


def with_recorded_starts(js: pd.DataFrame) -> pd.DataFrame:
    """The trace column `replay` needs (a recorded start a while after each submission); the other
    policies ignore it, so every built-in runs on the same job lists."""
    return js.assign(recorded_start_time=js["submit_time"] + (js["duration"] % 97))


def test_options_name_only_builtin_policies():
    assert set(OPTIONS) <= set(BUILTIN)


@pytest.mark.parametrize("policy", BUILTIN)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=job_rows, two_pools=st.booleans())
def test_capacity_is_never_exceeded_and_every_job_finishes(policy, rows, two_pools, tmp_path):
    submit, gpus, duration, vc, shrink = zip(*rows, strict=True)
    js = pd.DataFrame({"job_id": [f"j{i}" for i in range(len(rows))], "submit_time": submit, "gpus": gpus,
                       "duration": duration, "vc": vc, "user": vc,
                       "min_gpus": [max(1, g >> s) for g, s in zip(gpus, shrink, strict=True)],
                       "deadline": [s + 3 * d for s, d in zip(submit, duration, strict=True)]})
    js = with_recorded_starts(js)
    pools = ((1, 8), (2, 4)) if two_pools else ((2, 4),)
    res = run_jobs(js, pools=pools, policy=policy,
                   preemption={"restore": 5, "checkpoint_interval": 20}, **OPTIONS.get(policy, {}))
    out = res.jobs
    capacity = sum(n * per for n, per in pools)
    assert (res.timeline["busy_gpus"] <= capacity).all()
    assert res.summary["gpu_utilization"] <= 1 + 1e-9
    assert_timeline_conserves_work(res)
    expected_rejections = policy == "edf"  # admission control; other policies complete everything
    finished = out[out["status"] == "completed"]
    assert len(finished) + (out["status"] == "rejected").sum() == len(js)
    if not expected_rejections:
        assert len(finished) == len(js)
    assert (finished["start_time"] >= finished["submit_time"]).all()
    # No policy makes a job faster than its full request allows (elastic jobs here may only shrink).
    assert (finished["end_time"] - finished["start_time"] >= finished["duration"] - 1e-6).all()
