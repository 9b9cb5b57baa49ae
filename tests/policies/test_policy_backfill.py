"""easy-backfill and conservative-backfill: hand-worked schedules and the reservation guarantee."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.policies.backfill import ConservativeBackfill, EasyBackfill
from simulator.policies.registry import register_policy
from tests.helpers import jobs, run_jobs


def starts(res) -> list:
    return res.jobs.sort_values("job_id")["start_time"].tolist()


class _FirstReservations:
    """Keeps the first reservation each job got; the last instance is reachable from the test."""

    last = None

    def __init__(self, *args):
        super().__init__(*args)
        self.first: dict[str, float] = {}
        type(self).last = self

    def place(self, now):
        decision = super().place(now)
        for job in list(self.queue.values()):
            if job.index in self.reservations:
                self.first.setdefault(job.id, self.reservations[job.index])
        return decision


@register_policy("test-easy-recorded")
class EasyRecorded(_FirstReservations, EasyBackfill):
    pass


@register_policy("test-conservative-recorded")
class ConservativeRecorded(_FirstReservations, ConservativeBackfill):
    pass


def test_easy_backfills_only_what_does_not_delay_the_head(tmp_path):
    # One 8-GPU node. a (4 GPUs) runs 0-100. b (8 GPUs) is the blocked head: its shadow time is 100,
    # with 0 extra devices. c (2 GPUs, 10 s) ends at 12 <= 100: backfilled at 2. d (2 GPUs, 200 s)
    # would run past 100 on devices the head needs: it waits; b runs 100-150, then d at 150.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[4, 8, 2, 2], duration=[100, 50, 10, 200])
    assert starts(run_jobs(js, policy="easy-backfill")) == [0, 100, 2, 150]


def test_easy_uses_extra_devices_but_conservative_protects_every_reservation(tmp_path):
    # One 8-GPU node. a (6 GPUs) runs 0-100. b (4 GPUs, 100 s) is the head: shadow 100, and at 100
    # 8 are free so 4 are extra. c (8 GPUs, 50 s) waits behind it. d (2 GPUs, 300 s) arrives at 3.
    # EASY: d fits now and uses 2 of the 4 extra devices -> starts at 3 (ends 303); b runs 100-200;
    #   c needs all 8, so it waits for d: 303.
    # Conservative: b is reserved [100, 200) on 4, c [200, 250) on 8; d would overlap c's
    #   reservation, so it gets [250, 550): starts at 250.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[6, 4, 8, 2], duration=[100, 100, 50, 300])
    assert starts(run_jobs(js, policy="easy-backfill")) == [0, 100, 303, 3]
    assert starts(run_jobs(js, policy="conservative-backfill")) == [0, 100, 200, 250]


def test_conservative_backfills_into_a_hole_before_a_reservation(tmp_path):
    # Same as above, but d runs 90 s: [3, 93) ends before b's reservation at 100: it starts at 3.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[6, 4, 8, 2], duration=[100, 100, 50, 90])
    assert starts(run_jobs(js, policy="conservative-backfill")) == [0, 100, 200, 3]


def test_backfill_depth_bounds_the_scan(tmp_path):
    # One 8-GPU node: a (4 GPUs) runs 0-100, b (8) is the head, c (8) cannot backfill. With
    # backfill_depth 1 only c is examined, so d (2 GPUs, 10 s, would fit at 3) runs in order: b
    # 100-150, c 150-160, d at 160. With the default depth d backfills at 3.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[4, 8, 8, 2], duration=[100, 50, 10, 10])
    assert starts(run_jobs(js, policy="easy-backfill", backfill_depth=1))[3] == 160
    assert starts(run_jobs(js, policy="easy-backfill"))[3] == 3


# One node (devices counted = devices placeable), exact estimates: plans are kept exactly.
rows = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 8), st.integers(1, 200)), min_size=2, max_size=40)


# EASY: the head job starts no later than its reservation. Conservative: no job starts after the
# first reservation it was given.
@pytest.mark.parametrize("policy, recorded", [("test-easy-recorded", EasyRecorded),
                                              ("test-conservative-recorded", ConservativeRecorded)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_no_job_starts_after_its_first_reservation(policy, recorded, rows, tmp_path):
    js = jobs(**dict(zip(["submit_time", "gpus", "duration"], zip(*rows, strict=True), strict=True)))
    out = run_jobs(js, policy=policy).jobs.set_index("job_id")
    for job_id, reserved in recorded.last.first.items():
        assert out.loc[job_id, "start_time"] <= reserved + 1e-6
