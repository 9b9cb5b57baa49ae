"""sjf and srtf on hand-worked schedules, and what wrong estimates cost."""


from tests.helpers import jobs, run_jobs

NO_RESTORE = {"preemption": {"restore": 0}}


def starts(res) -> dict:
    return res.jobs.set_index("job_id")["start_time"].to_dict()


def test_sjf_orders_by_duration_and_blocks_at_the_head(tmp_path):
    # One 8-GPU node. a (4 GPUs, 100 s) starts at 0. b (8 GPUs, 50 s) arrives at 1 and cannot fit.
    # c (2 GPUs, 10 s) arrives at 2 and is now the shortest, so it heads the queue and starts at 2.
    # d (2 GPUs, 200 s) arrives at 3 behind b (50 s), which blocks: d waits although 2 GPUs are free.
    # a ends at 100: b runs 100-150, then d at 150.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[4, 8, 2, 2], duration=[100, 50, 10, 200])
    assert starts(run_jobs(js, policy="sjf")) == {"a": 0, "b": 100, "c": 2, "d": 150}


def test_srtf_preempts_a_longer_running_job(tmp_path):
    # One 4-GPU node, no restore cost. a (4 GPUs, 100 s) runs from 0; at 50, b (4 GPUs, 10 s) has
    # 10 s left against a's 50, so a is suspended (it checkpoints on suspension, losing nothing).
    # b runs 50-60; a resumes at 60 with 50 s left and ends at 110.
    js = jobs(submit_time=[0, 50], gpus=[4, 4], duration=[100, 10])
    out = run_jobs(js, pools=((1, 4),), policy="srtf", **NO_RESTORE).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [50, 60]
    assert out.loc["a", ["end_time", "preemptions"]].tolist() == [110, 1]


def test_srtf_does_not_preempt_when_the_restore_eats_the_gain(tmp_path):
    # Same jobs with the default 60 s restore: b's 10 s + 60 s exceeds a's 50 s left, so b waits to 100.
    js = jobs(submit_time=[0, 50], gpus=[4, 4], duration=[100, 10])
    out = run_jobs(js, pools=((1, 4),), policy="srtf").jobs.set_index("job_id")
    assert out.loc["b", "start_time"] == 100 and out.loc["a", "preemptions"] == 0


def test_user_estimates_can_misorder_sjf(tmp_path):
    # One GPU. a runs 0-100. b (50 s, estimated 500) and c (200 s, estimated 10) wait.
    # Oracle estimates: b 100-150, then c 150. User estimates: c looks shorter: c 100-300, then b 300.
    js = jobs(submit_time=[0, 1, 2], gpus=[1, 1, 1], duration=[100, 50, 200], estimate=[100, 500, 10])
    oracle = starts(run_jobs(js, pools=((1, 1),), policy="sjf"))
    user = starts(run_jobs(js, pools=((1, 1),), policy="sjf", estimates={"source": "user"}))
    assert (oracle["b"], oracle["c"]) == (100, 150)
    assert (user["c"], user["b"]) == (100, 300)


def test_history_estimates_learn_from_the_same_users_completed_jobs(tmp_path):
    # One GPU; a prediction is fixed when the job arrives. a (u1, 100 s) runs 0-100: u1's history is
    # [100]. b (u2, 500 s, predicted 3600 = the default) runs 100-600. Waiting at 600: c (u2, 5 s,
    # arrived 150, u2 still without history: 3600) and d (u1, 400 s, arrived 160: 100 from u1's history)
    # -> d runs 600-1000. e (u2, 1 s) arrives at 700 after b taught u2 500 s; f (u1, 2 s) at 710, 100 s.
    # At 1000 the queue is c 3600, e 500, f 100: f 1000-1002, e 1002-1003, c 1003.
    js = jobs(submit_time=[0, 1, 150, 160, 700, 710], gpus=[1] * 6, duration=[100, 500, 5, 400, 1, 2],
              user=["u1", "u2", "u2", "u1", "u2", "u1"])
    out = starts(run_jobs(js, pools=((1, 1),), policy="sjf", estimates={"source": "history"}))
    assert out == {"a": 0, "b": 100, "c": 1003, "d": 600, "e": 1002, "f": 1000}
