"""Invariants on random scenarios (Hypothesis): capacity is never exceeded and work is conserved."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import run_jobs

job_lists = st.lists(
    st.tuples(st.integers(0, 500), st.integers(1, 16), st.integers(0, 300)), min_size=1, max_size=60)
pool_lists = st.lists(st.tuples(st.integers(1, 4), st.sampled_from([1, 2, 4, 8])), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=job_lists, pools=pool_lists, policy=st.sampled_from(["fifo"]))
def test_busy_time_never_exceeds_capacity(rows, pools, policy, tmp_path):
    jobs = pd.DataFrame(rows, columns=["submit_time", "gpus", "duration"])
    jobs.insert(0, "job_id", [f"j{i}" for i in range(len(jobs))])
    res = run_jobs(jobs, pools=pools, policy=policy)
    capacity = sum(n * per for n, per in pools)
    largest = max(n * per for n, per in pools)
    out, s = res.jobs.set_index("job_id"), res.summary

    # Every job is accounted for: completed, or rejected because no pool could ever hold it.
    assert s["jobs_submitted"] == len(jobs)
    rejected = out["status"] == "rejected"
    assert set(out.index[rejected]) == set(jobs.loc[jobs["gpus"] > largest, "job_id"])
    assert (out.loc[~rejected, "status"] == "completed").all()

    # Conservation: busy device-time equals the work done and never exceeds what was available.
    done = out[~rejected]
    work = float((done["gpus"] * done["duration"]).sum())
    assert np.isclose(s["busy_gpu_hours"] * 3600, work)
    assert s["gpu_utilization"] <= 1 + 1e-9
    assert (res.timeline["busy_gpus"] <= capacity).all()
    assert (done["wait_s"] >= 0).all()
    assert (done["start_time"] >= done["submit_time"]).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=job_lists, pools=pool_lists)
def test_fifo_never_starts_a_later_job_first(rows, pools, tmp_path):
    jobs = pd.DataFrame(rows, columns=["submit_time", "gpus", "duration"])
    jobs.insert(0, "job_id", [f"j{i}" for i in range(len(jobs))])
    res = run_jobs(jobs, pools=pools)
    order = jobs.sort_values("submit_time", kind="stable")["job_id"]
    starts = res.jobs.set_index("job_id").loc[order]
    starts = starts[starts["status"] == "completed"]["start_time"].to_numpy()
    assert (np.diff(starts) >= 0).all()
