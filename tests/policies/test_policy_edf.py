"""edf: earliest deadline first with admission control."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import jobs, run_jobs


def test_admission_rejects_a_job_that_would_miss_and_orders_by_deadline(tmp_path):
    # One 4-GPU node. a (4 GPUs, 100 s, deadline 150) runs 0-100. b (4, 100 s, deadline 150) arrives
    # at 10: the earliest it can run is 100-200 > 150: rejected. c (4, 50 s, deadline 160) at 20:
    # 100-150 meets 160: admitted. d (2, 10 s, deadline 120) at 30 goes before c: 100-110, and c
    # moves to 110-160, still in time: admitted. e (no deadline, 1 GPU, 5 s) at 40 is planned after
    # them, in the earliest hole that delays no reservation: beside d, 100-105 (c starts at 110).
    js = jobs(submit_time=[0, 10, 20, 30, 40], gpus=[4, 4, 4, 2, 1], duration=[100, 100, 50, 10, 5],
              deadline=[150, 150, 160, 120, None])
    out = run_jobs(js, pools=((1, 4),), policy="edf").jobs.set_index("job_id")
    assert out["status"].to_dict() == {"a": "completed", "b": "rejected", "c": "completed",
                                       "d": "completed", "e": "completed"}
    assert out["start_time"].dropna().to_dict() == {"a": 0, "c": 110, "d": 100, "e": 100}


def test_a_job_that_would_push_an_admitted_one_past_its_deadline_is_rejected(tmp_path):
    # One GPU. a (100 s, deadline 100) runs 0-100. b (50 s, deadline 160) at 1: 100-150, admitted.
    # c (30 s, deadline 140) at 2: EDF puts it first, 100-130 in time, but then b ends at 180 > 160:
    # rejected. Without admission control c is queued and b misses its deadline.
    js = jobs(submit_time=[0, 1, 2], gpus=[1, 1, 1], duration=[100, 50, 30], deadline=[100, 160, 140])
    out = run_jobs(js, pools=((1, 1),), policy="edf").jobs.set_index("job_id")
    assert out.loc["c", "status"] == "rejected" and out.loc["b", "end_time"] == 150
    loose = run_jobs(js, pools=((1, 1),), policy="edf", admission=False).jobs.set_index("job_id")
    assert loose.loc["c", "start_time"] == 100 and loose.loc["b", "end_time"] == 180


rows = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 8), st.integers(1, 100), st.integers(0, 400),
                          st.booleans()), min_size=1, max_size=40)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_admitted_jobs_meet_their_deadlines_with_exact_estimates(rows, tmp_path):
    submit, gpus, duration, slack, has_deadline = zip(*rows, strict=True)
    deadline = [s + d + x if h else None for s, d, x, h in zip(submit, duration, slack, has_deadline, strict=True)]
    js = jobs(submit_time=submit, gpus=gpus, duration=duration, deadline=deadline)
    out = run_jobs(js, policy="edf").jobs.set_index("job_id")
    js = js.set_index("job_id").loc[out.index]
    done = out[(out["status"] == "completed") & js["deadline"].notna()]
    assert (done["end_time"] <= js.loc[done.index, "deadline"] + 1e-6).all()
    assert set(out.index[out["status"] == "rejected"]) <= set(js.index[js["deadline"].notna()])
