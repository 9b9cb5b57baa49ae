"""tiresias (2D-LAS with discretised queues) and gittins on hand-worked schedules."""

import pytest

from simulator.policies.gittins import GittinsIndex
from tests.helpers import jobs, run_jobs

NO_RESTORE = {"preemption": {"restore": 0}}


def test_a_demoted_job_is_preempted_by_a_new_one(tmp_path):
    # One 4-GPU node, one threshold at 100 device-seconds. a (4 GPUs, 100 s) crosses it at t = 25 and
    # drops to queue 1. b (4 GPUs, 10 s) arrives at 30 in queue 0 and preempts a: b runs 30-40; a
    # resumes at 40 with 70 s left and ends at 110.
    js = jobs(submit_time=[0, 30], gpus=[4, 4], duration=[100, 10])
    out = run_jobs(js, pools=((1, 4),), policy="tiresias", thresholds=[100],
                   **NO_RESTORE).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [30, 40]
    assert out.loc["a", ["end_time", "preemptions"]].tolist() == [110, 1]


def test_no_preemption_within_one_queue(tmp_path):
    # Same jobs but b arrives at 20, when a (80 device-seconds) is in queue 0 like b: b waits. At 25 a
    # is demoted and b preempts it: b runs 25-35, a resumes at 35 with 75 s left and ends at 110.
    js = jobs(submit_time=[0, 20], gpus=[4, 4], duration=[100, 10])
    out = run_jobs(js, pools=((1, 4),), policy="tiresias", thresholds=[100],
                   **NO_RESTORE).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [25, 35]
    assert out.loc["a", ["end_time", "preemptions"]].tolist() == [110, 1]


def test_attained_service_counts_devices_times_time(tmp_path):
    # 2D: a 1-GPU job crosses 100 device-seconds after 100 s, a 4-GPU one after 25 s. On 5 GPUs, a
    # (1 GPU, 200 s) and b (4 GPUs, 200 s) start at 0; c (4 GPUs, 10 s) arrives at 50. b (queue 1 since
    # 25) is preempted; a (50 device-seconds, queue 0) keeps running. c 50-60, b resumes at 60 -> 210.
    js = jobs(submit_time=[0, 0, 50], gpus=[1, 4, 4], duration=[200, 200, 10])
    out = run_jobs(js, pools=((1, 5),), policy="tiresias", thresholds=[100],
                   **NO_RESTORE).jobs.set_index("job_id")
    assert out["preemptions"].to_dict() == {"a": 0, "b": 1, "c": 0}
    assert out.loc["b", "end_time"] == 210 and out.loc["c", "start_time"] == 50


def test_promote_after_returns_a_starving_job_to_the_top_queue(tmp_path):
    # One GPU, threshold 10 s. a (100 s) is demoted at 10; b (50 s) arrives at 20 in queue 0 and
    # preempts it (a: 20 done). b is demoted at 30; without promotion, neither preempts the other in
    # queue 1: b runs to 70, a resumes 70-150.
    js = jobs(submit_time=[0, 20], gpus=[1, 1], duration=[100, 50])
    plain = run_jobs(js, pools=((1, 1),), policy="tiresias", thresholds=[10],
                     **NO_RESTORE).jobs.set_index("job_id")
    assert plain.loc["b", ["start_time", "end_time"]].tolist() == [20, 70]
    assert plain.loc["a", "end_time"] == 150
    # promote_after 30: a, queued at 20, is back in queue 0 at 50 and preempts b (30 s left). a runs
    # 50-60 (10 s of fresh service) and is demoted; b, queued at 50, is promoted at 80 and preempts a
    # (50 done, 50 left); b runs 80-100 and ends; a resumes 100-150.
    promoted = run_jobs(js, pools=((1, 1),), policy="tiresias", thresholds=[10], promote_after=30,
                        **NO_RESTORE).jobs.set_index("job_id")
    assert promoted["preemptions"].to_dict() == {"a": 2, "b": 1}
    assert promoted["end_time"].to_dict() == {"a": 150, "b": 100}


def test_gittins_index_values():
    # Service always 100: at 0 the best quantum finishes it surely after 100 -> 1/100; after 50 -> 1/50.
    flat = GittinsIndex([100.0] * 4, quanta=16)
    assert flat(0.0) == pytest.approx(1 / 100) and flat(50.0) == pytest.approx(1 / 50)
    # Half the jobs take 10, half 1000. At 0: quantum 10 finishes half for 10 spent -> 0.05 (beats
    # quantum 1000: 1 / 505). After 10 of service only the 1000s remain: 1/990. A job that has run a
    # little is worth less than a new one: the index is not monotone in service, unlike LAS.
    split = GittinsIndex([10.0, 10.0, 1000.0, 1000.0], quanta=16)
    assert split(0.0) == pytest.approx(0.05) and split(10.0) == pytest.approx(1 / 990)


def test_gittins_orders_a_queue_by_index(tmp_path):
    # One GPU, thresholds far away (one queue). Service samples: half 10 s, half 1000 s (1 GPU).
    # a (1000 s) runs 0-1000. b (arrives at 1) and c (at 2) are fresh, with the same index 0.05:
    # first come first served, b at 1000 and c at 1010.
    js = jobs(submit_time=[0, 1, 2], gpus=[1, 1, 1], duration=[1000, 10, 10])
    out = run_jobs(js, pools=((1, 1),), policy="gittins", thresholds=[1e9],
                   service_samples=[10, 10, 1000, 1000]).jobs.set_index("job_id")
    assert out["start_time"].to_dict() == {"a": 0, "b": 1000, "c": 1010}
