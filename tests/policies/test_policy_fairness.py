"""themis (finish-time fairness leases), gavel (heterogeneity-aware max-min) and elastic jobs."""

import numpy as np
import pytest

from simulator.policies.gavel import max_min_shares
from tests.helpers import jobs, run_jobs

NO_RESTORE = {"preemption": {"restore": 0}}


def test_themis_gives_the_lease_to_the_worst_finish_time_fairness(tmp_path):
    # One 4-GPU node, 100 s leases. a (4 GPUs, 1000 s) runs from 0. b (4 GPUs, 100 s) arrives at 10;
    # the first lease round is at 110. N = 2 jobs, a 1/N share is 2 GPUs, so both ideals double:
    # a: shared (110 + 890) / ideal 2000 = 0.5; b: (100 + 100) / 200 = 1.0, the worse off: b wins the
    # lease, a is preempted at 110. b runs 110-210; a resumes with 890 s left and ends at 1100.
    js = jobs(submit_time=[0, 10], gpus=[4, 4], duration=[1000, 100])
    out = run_jobs(js, pools=((1, 4),), policy="themis", lease=100,
                   **NO_RESTORE).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [110, 210]
    assert out.loc["a", ["end_time", "preemptions"]].tolist() == [1100, 1]


def test_themis_elastic_starts_a_job_on_fewer_devices(tmp_path):
    # One 8-GPU node. a (6 GPUs) runs 0-1000. b asks 4 GPUs (min 2) for 100 s at 10: 2 are free, so
    # with `elastic` it runs on 2 at half speed: 10-210. Without it, b waits for a (the first lease at
    # 1210 is after a ends at 1000, and a's rho is the worse one at 1010 anyway): 1000-1100.
    js = jobs(submit_time=[0, 10], gpus=[6, 4], duration=[1000, 100], min_gpus=[6, 2])
    elastic = run_jobs(js, policy="themis", elastic=True).jobs.set_index("job_id")
    assert elastic.loc["b", ["start_time", "end_time"]].tolist() == [10, 210]
    rigid = run_jobs(js, policy="themis", lease=5000).jobs.set_index("job_id")
    assert rigid.loc["b", ["start_time", "end_time"]].tolist() == [1000, 1100]


def test_elastic_fifo_shrinks_the_head_to_fit_and_grows_up_to_max(tmp_path):
    # One 8-GPU node. a (4 GPUs, 100 s) runs 0-100. b asks 8 GPUs (min 4) for 50 s: it starts at 1 on the
    # 4 free, taking 100 s (1-101). c asks 2 (max 4) for 40 s at 2: nothing free until 100, when 4 are
    # free: it grows to 4 and runs 20 s, 100-120.
    js = jobs(submit_time=[0, 1, 2], gpus=[4, 8, 2], duration=[100, 50, 40], min_gpus=[4, 4, 2],
              max_gpus=[4, 8, 4])
    out = run_jobs(js, policy="elastic-fifo").jobs.set_index("job_id")
    assert out[["start_time", "end_time"]].values.tolist() == [[0, 100], [1, 101], [100, 120]]


def test_max_min_shares_splits_fast_and_slow_devices_fairly():
    # Two 1-GPU jobs, one fast (speed 2) and one slow (speed 1) device. Each job's throughput normalised
    # to its best device is x_fast + x_slow / 2; the fair optimum gives each half of each device: 0.75.
    x = max_min_shares(np.array([1.0, 1.0]), np.array([[2.0, 1.0], [2.0, 1.0]]), np.array([1.0, 1.0]))
    normalised = x[:, 0] + x[:, 1] / 2
    assert normalised.min() == pytest.approx(0.75)
    assert x.sum(axis=0) == pytest.approx([1.0, 1.0])


def test_max_min_shares_respects_a_device_constraint():
    # Job 0 runs only on type 0 (speed 0 elsewhere); job 1 anywhere. Max-min: job 0 takes type 0 fully,
    # job 1 type 1 fully: both at 1.0.
    x = max_min_shares(np.array([1.0, 1.0]), np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([1.0, 1.0]))
    assert x[0] == pytest.approx([1.0, 0.0]) and x[1, 0] + x[1, 1] == pytest.approx(1.0)


def test_gavel_round_gives_a_waiting_job_a_turn(tmp_path):
    # Two pools of one device (h100 then a100), 100 s rounds. a, b, c (1 GPU, 1000 s) all arrive at 0:
    # a and b start on arrival, first come first served; c waits. At the round at 100 the LP gives each
    # job 2/3 of a device; c has received nothing so far, so it is placed first and one of a, b yields.
    js = jobs(submit_time=[0, 0, 0], gpus=[1, 1, 1], duration=[1000, 1000, 1000])
    scen = {"round": 100, "throughputs": {"h100-sxm": 2.0}, **NO_RESTORE}
    out = run_jobs(js, pools=((1, 1), (1, 1)), policy="gavel", **scen).jobs.set_index("job_id")
    assert out.loc["c", "start_time"] == 100
    assert out.loc["c", "preemptions"] + out.loc["a", "preemptions"] + out.loc["b", "preemptions"] >= 1


def test_gavel_counts_the_runs_its_own_rounds_cut_short(tmp_path):
    # One device, 100 s rounds, no restore; a, b, c (1 GPU, 1000 s) arrive at 0 and the LP gives each a
    # third. a runs first; at 100, b and c have had nothing (b goes first, by arrival); at 200 a and b
    # have had 100 s each and c nothing: c's turn, 200-300. Then they take turns, a, b, c, to the end.
    # The time a ran before the round at 100 preempted it used not to count, so at 200 a tied with c,
    # won on arrival order, and c waited until a or b had finished.
    js = jobs(submit_time=[0, 0, 0], gpus=[1, 1, 1], duration=[1000, 1000, 1000])
    out = run_jobs(js, pools=((1, 1),), policy="gavel", round=100, **NO_RESTORE).jobs.set_index("job_id")
    assert out["start_time"].to_dict() == {"a": 0, "b": 100, "c": 200}
    assert out["end_time"].to_dict() == {"a": 2800, "b": 2900, "c": 3000}
