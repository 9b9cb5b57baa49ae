"""easy-backfill and conservative-backfill: hand-worked schedules and the reservation guarantee."""

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.policies.backfill import ConservativeBackfill, EasyBackfill
from simulator.policies.registry import register_policy
from tests.helpers import run_jobs


def jobs(**cols) -> pd.DataFrame:
    frame = pd.DataFrame(cols)
    frame.insert(0, "job_id", [f"j{i}" for i in range(len(frame))])
    return frame


def starts(res) -> list:
    return res.jobs.sort_values("job_id", key=lambda s: s.str[1:].astype(int))["start_time"].tolist()


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
    # One 8-GPU node. j0 (4 GPUs) runs 0-100. j1 (8 GPUs) is the blocked head: its shadow time is 100,
    # with 0 extra devices. j2 (2 GPUs, 10 s) ends at 12 <= 100: backfilled at 2. j3 (2 GPUs, 200 s)
    # would run past 100 on devices the head needs: it waits; j1 runs 100-150, then j3 at 150.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[4, 8, 2, 2], duration=[100, 50, 10, 200])
    assert starts(run_jobs(js, tmp_path, policy="easy-backfill")) == [0, 100, 2, 150]


def test_easy_uses_extra_devices_but_conservative_protects_every_reservation(tmp_path):
    # One 8-GPU node. j0 (6 GPUs) runs 0-100. j1 (4 GPUs, 100 s) is the head: shadow 100, and at 100
    # 8 are free so 4 are extra. j2 (8 GPUs, 50 s) waits behind it. j3 (2 GPUs, 300 s) arrives at 3.
    # EASY: j3 fits now and uses 2 of the 4 extra devices -> starts at 3 (ends 303); j1 runs 100-200;
    #   j2 needs all 8, so it waits for j3: 303.
    # Conservative: j1 is reserved [100, 200) on 4, j2 [200, 250) on 8; j3 would overlap j2's
    #   reservation, so it gets [250, 550): starts at 250.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[6, 4, 8, 2], duration=[100, 100, 50, 300])
    assert starts(run_jobs(js, tmp_path, policy="easy-backfill")) == [0, 100, 303, 3]
    assert starts(run_jobs(js, tmp_path, policy="conservative-backfill")) == [0, 100, 200, 250]


def test_conservative_backfills_into_a_hole_before_a_reservation(tmp_path):
    # Same as above, but j3 runs 90 s: [3, 93) ends before j1's reservation at 100: it starts at 3.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[6, 4, 8, 2], duration=[100, 100, 50, 90])
    assert starts(run_jobs(js, tmp_path, policy="conservative-backfill")) == [0, 100, 200, 3]


def test_backfill_depth_bounds_the_scan(tmp_path):
    # One 8-GPU node: j0 (4 GPUs) runs 0-100, j1 (8) is the head, j2 (8) cannot backfill. With
    # backfill_depth 1 only j2 is examined, so j3 (2 GPUs, 10 s, would fit at 3) runs in order: j1
    # 100-150, j2 150-160, j3 at 160. With the default depth j3 backfills at 3.
    js = jobs(submit_time=[0, 1, 2, 3], gpus=[4, 8, 8, 2], duration=[100, 50, 10, 10])
    assert starts(run_jobs(js, tmp_path, policy="easy-backfill", backfill_depth=1))[3] == 160
    assert starts(run_jobs(js, tmp_path, policy="easy-backfill"))[3] == 3


# One node (devices counted = devices placeable), exact estimates: plans are kept exactly.
rows = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 8), st.integers(1, 200)), min_size=2, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_easy_head_starts_no_later_than_its_reservation(rows, tmp_path):
    js = jobs(**dict(zip(["submit_time", "gpus", "duration"], zip(*rows, strict=True), strict=True)))
    out = run_jobs(js, tmp_path, policy="test-easy-recorded").jobs.set_index("job_id")
    for job_id, reserved in EasyRecorded.last.first.items():
        assert out.loc[job_id, "start_time"] <= reserved + 1e-6


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_conservative_never_starts_a_job_after_its_first_reservation(rows, tmp_path):
    js = jobs(**dict(zip(["submit_time", "gpus", "duration"], zip(*rows, strict=True), strict=True)))
    out = run_jobs(js, tmp_path, policy="test-conservative-recorded").jobs.set_index("job_id")
    for job_id, reserved in ConservativeRecorded.last.first.items():
        assert out.loc[job_id, "start_time"] <= reserved + 1e-6
