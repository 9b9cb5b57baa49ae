"""quota: guaranteed shares, borrowing idle quota, and reclaiming it by preempting borrowers."""

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.policies.quota import Quota
from simulator.policies.registry import register_policy
from tests.helpers import jobs, run_jobs, simulate

QUOTAS = {"x": 4, "y": 4}


@register_policy("test-quota-checked")
class CheckedQuota(Quota):
    """Checks the invariants at every pass: a group's guaranteed devices stay within its quota and are
    devices its running jobs hold, and only borrowed jobs are ever preempted."""

    violations: list[str] = []

    def place(self, now):
        held = defaultdict(int)
        for job in self.view.running.values():
            held[self.group(job)] += job.gpus
        for group, guaranteed in self.guaranteed.items():
            if guaranteed > held[group]:
                self.violations.append(f"{group} counts {guaranteed} guaranteed devices, runs on {held[group]}")
        borrowed_before = {job.index for job in self.borrowed}
        decision = super().place(now)
        for job in decision.suspend:
            if job.index not in borrowed_before:
                self.violations.append(f"{job.id} preempted while within quota")
        return decision

    def on_launch(self, job, now):
        super().on_launch(job, now)
        group = self.group(job)
        if self.guaranteed[group] > self.quota_of(group):
            self.violations.append(f"{group} holds {self.guaranteed[group]} guaranteed devices")


def test_borrowed_job_is_preempted_when_the_owner_needs_its_quota(tmp_path):
    # One 8-GPU node, quotas x 4 and y 4, no restore cost. a (x, 8 GPUs) is over x's quota but the
    # node is idle: it borrows and runs from 0. b (y, 4 GPUs) arrives at 10 within y's quota: a is
    # preempted, b runs 10-20; a (90 s left) needs 8 and restarts at 20, ending at 110.
    js = jobs(submit_time=[0, 10], gpus=[8, 4], duration=[100, 10], vc=["x", "y"])
    out = run_jobs(js, policy="quota", quotas=QUOTAS,
                   preemption={"restore": 0}).jobs.set_index("job_id")
    assert out.loc["b", ["start_time", "end_time"]].tolist() == [10, 20]
    assert out.loc["a", ["end_time", "preemptions"]].tolist() == [110, 1]


def test_without_borrowing_a_group_waits_for_its_own_quota(tmp_path):
    # Quota x 2 on an idle 8-GPU node: a (x, 2 GPUs) runs 0-100; b (x, 2 GPUs) would exceed x's quota
    # and may not borrow: it waits until a ends at 100, although 6 devices are idle.
    js = jobs(submit_time=[0, 1], gpus=[2, 2], duration=[100, 10], vc=["x", "x"])
    out = run_jobs(js, policy="quota", quotas={"x": 2}, borrow=False).jobs.set_index("job_id")
    assert out["start_time"].tolist() == [0, 100]


def test_priority_orders_the_queue(tmp_path):
    # One GPU, everyone within quota. a runs 0-10; b (priority 0) and c (priority 5) wait: c first.
    js = jobs(submit_time=[0, 1, 2], gpus=[1, 1, 1], duration=[10, 10, 10], vc=["x"] * 3, priority=[0, 0, 5])
    out = run_jobs(js, pools=((1, 1),), policy="quota", quotas={"x": 1}).jobs.set_index("job_id")
    assert out["start_time"].to_dict() == {"a": 0, "b": 20, "c": 10}


def test_a_guaranteed_job_stopped_by_a_retirement_gets_its_quota_back():
    # Two 4-GPU pools, quota x 4, no borrowing. a (x, 4 GPUs, 1000 s) runs on p0 from 0; p0 retires at
    # 100 and a (checkpointed, 900 s left) restarts on p1 at once, within its quota, and ends at 1000.
    # The quota it held used to stay counted, so a could never start again.
    js = jobs(submit_time=[0], gpus=[4], duration=[1000], vc=["x"])
    out = simulate(js, Quota, pools=((1, 4), (1, 4)), options={"quotas": {"x": 4}, "borrow": False},
                   retirements=[(0, 100)])
    assert out[["start_time", "end_time", "status", "pool"]].values.tolist() == [[0, 1000, "completed", "p1"]]


rows = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 8), st.integers(1, 200), st.sampled_from("xyz")),
                min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_quotas_hold_and_only_borrowers_are_preempted(rows, tmp_path):
    CheckedQuota.violations = []
    js = jobs(**dict(zip(["submit_time", "gpus", "duration", "vc"], zip(*rows, strict=True), strict=True)))
    # Node failures too: a guaranteed job they stop must give its quota back (and take it again).
    out = run_jobs(js, pools=((2, 4),), policy="test-quota-checked", quotas={"x": 4, "y": 2},
                   default_quota=2, extra={"failures": {"device_mtbf": "30m", "repair": "1m"}}).jobs
    assert CheckedQuota.violations == []
    assert (out["status"] == "completed").all()
