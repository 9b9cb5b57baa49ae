"""The policy contract has no traps: a subclass of a built-in policy that overrides `order` schedules by
that order, exactly as the same `order` on the base `Policy` with the same `blocking` does."""

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.job import QUEUED
from simulator.policies.base import Policy, contract_of
from simulator.policies.builtin import BUILTIN
from simulator.policies.edf import EarliestDeadlineFirst
from simulator.policies.elastic import ElasticFifo
from simulator.policies.fifo import Fifo
from simulator.policies.registry import policy_class
from simulator.policies.shortest import ShortestJobFirst, ShortestRemainingTimeFirst
from simulator.policies.tiresias import Tiresias
from tests.helpers import jobs, simulate


def smallest_first(self, now):
    return sorted(self.queue.values(), key=lambda j: (j.gpus, j.submit, j.index))


def test_a_fifo_subclass_with_its_own_order_is_not_held_to_arrival_order():
    # One 8-GPU node. a (6 GPUs) runs 0-100; b (4 GPUs) arrives at 1 and waits; c (2 GPUs) arrives at 2
    # and, smallest first, fits at once. The engine used to skip the pass for c's arrival because Fifo
    # declares `in_order`, which the subclass inherited: c waited for a, to 100.
    js = jobs(submit_time=[0, 1, 2], gpus=[6, 4, 2], duration=[100, 10, 10])
    sub = type("SmallestFirstFifo", (Fifo,), {"order": smallest_first})
    ref = type("SmallestFirst", (Policy,), {"order": smallest_first, "blocking": True})
    for cls in (sub, ref):
        assert simulate(js, cls).set_index("job_id")["start_time"].to_dict() == {"a": 0, "b": 100, "c": 2}


# Deterministic re-orderings of the queue (by job, never by time: extra passes must not matter).
ORDERS = {
    "reversed": lambda self, now: list(self.queue.values())[::-1],
    "by-hash": lambda self, now: sorted(self.queue.values(), key=lambda j: (zlib.crc32(j.id.encode()), j.index)),
    "largest-first": lambda self, now: sorted(self.queue.values(), key=lambda j: (-j.gpus, j.index)),
}

job_rows = st.lists(st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 3, 4, 8]), st.integers(1, 300),
                              st.integers(0, 200), st.sampled_from("xyz")), min_size=1, max_size=25)


@pytest.mark.parametrize("name", BUILTIN)
@settings(max_examples=25, deadline=None)
@given(rows=job_rows, order=st.sampled_from(sorted(ORDERS)), pools=st.sampled_from([((1, 8),), ((2, 4), (1, 8))]),
       failures=st.booleans())
def test_any_builtin_subclass_that_overrides_order_schedules_as_that_order_on_policy(name, rows, order, pools,
                                                                                      failures):
    """Admission is its own hook: the job lists carry no deadlines (edf admits every job) and carry
    recorded starts (replay admits every job)."""
    base = policy_class(name)
    submit, gpus, duration, late, vc = zip(*sorted(rows), strict=True)
    js = jobs(submit_time=submit, gpus=gpus, duration=duration, vc=vc, user=vc,
              recorded_start_time=[s + d for s, d in zip(submit, late, strict=True)])
    sub = type(f"Reordered{base.__name__}", (base,), {"order": ORDERS[order]})
    ref = type("Reordered", (Policy,), {"order": ORDERS[order], "blocking": base.blocking})
    run = {"pools": pools, "restore": 5.0, "checkpoint_interval": 50.0,
           "failures": (3000.0, 100.0) if failures else None}
    got, want = simulate(js, sub, **run), simulate(js, ref, **run)
    for column in ("start_time", "end_time", "status", "preemptions"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), err_msg=column)


# -- what the engine works out from a class ------------------------------------------------------------
def test_in_order_holds_only_where_order_place_blocking_and_queueing_are_the_declarers():
    assert contract_of(Fifo).in_order and contract_of(ElasticFifo).in_order
    assert not contract_of(Policy).in_order and not contract_of(ShortestJobFirst).in_order
    unchanged = type("F", (Fifo,), {"admit": lambda self, job, now: None, "on_complete": lambda self, job, now: None})
    assert contract_of(unchanged).in_order  # what it overrides has nothing to do with queue order
    for changed in ({"order": smallest_first}, {"blocking": False}, {"place": Policy.place},
                    {"on_queued": lambda self, job, now: Fifo.on_queued(self, job, now)}):
        assert not contract_of(type("F", (Fifo,), changed)).in_order, changed
    mixin = type("SmallestFirstMixin", (), {"order": smallest_first})
    assert not contract_of(type("F", (mixin, Fifo), {})).in_order
    assert contract_of(type("F", (Policy,), {"blocking": True, "in_order": True})).in_order  # declared where it holds


def test_an_order_overridden_below_its_parents_place_is_placed_by_policy_place():
    assert contract_of(Tiresias).own_place and contract_of(ShortestJobFirst).own_place  # order above place
    assert not contract_of(type("T", (Tiresias,), {"order": smallest_first})).own_place
    assert contract_of(type("T", (Tiresias,), {"order": smallest_first, "place": Tiresias.place})).own_place
    sjf = type("S", (ShortestJobFirst,), {"order": smallest_first})
    assert not contract_of(sjf).own_place and sjf.blocking  # placed by that order, still blocking


def test_hooks_are_called_only_when_overridden():
    plain = contract_of(Fifo)
    assert not (plain.admit or plain.on_suspend or plain.on_complete or plain.next_wakeup)
    tiresias = contract_of(Tiresias)
    assert tiresias.on_suspend and tiresias.on_complete and tiresias.next_wakeup and not tiresias.admit
    assert contract_of(EarliestDeadlineFirst).admit


# -- on_suspend ------------------------------------------------------------------------------------------
class Notified:
    """Records the queue notifications and checks the job's state when a suspension is notified."""

    events: list = []

    def on_suspend(self, job, now):
        assert job.alloc is None and job.state == QUEUED and job.index not in self.queue
        type(self).events.append(("suspend", job.id, now))
        super().on_suspend(job, now)

    def on_queued(self, job, now):
        type(self).events.append(("queued", job.id, now))
        super().on_queued(job, now)


def notified(cls):
    return type(f"Notified{cls.__name__}", (Notified, cls), {"events": []})


def test_a_preemption_and_a_retirement_are_notified_before_the_job_is_requeued():
    # Two 4-GPU pools, srtf, no restore, no checkpoint interval (a suspended job keeps its work). At 0 the
    # shorter b (500 s) takes p0 and a (1000 s) p1. c (10 s) arrives at 50 and preempts a, the longest
    # remaining: c runs 50-60 on p1 and a resumes there at 60. p0 retires at 300: b (200 s left) is
    # suspended, and preempts a (710 s left) in the same pass: b runs 300-500, a 500-1210.
    js = jobs(submit_time=[0, 0, 50], gpus=[4, 4, 4], duration=[1000, 500, 10])
    cls = notified(ShortestRemainingTimeFirst)
    out = simulate(js, cls, pools=((1, 4), (1, 4)), retirements=[(0, 300)]).set_index("job_id")
    assert out["end_time"].to_dict() == {"a": 1210, "b": 500, "c": 60}
    assert cls.events == [("queued", "a", 0), ("queued", "b", 0), ("queued", "c", 50),
                          ("suspend", "a", 50), ("queued", "a", 50),  # preempted by c
                          ("suspend", "b", 300), ("queued", "b", 300),  # its pool retired
                          ("suspend", "a", 300), ("queued", "a", 300)]  # preempted by b


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_is_notified_of_every_suspension(name):
    # Failures, a retirement and the policy's own preemptions: each suspension is notified once, just
    # before the job is re-queued.
    rng = np.random.default_rng(3)
    n = 40
    submit = np.sort(rng.uniform(0, 2000, n)).round()
    js = jobs(submit_time=submit, gpus=rng.choice([1, 2, 4], n), duration=rng.uniform(50, 600, n).round(),
              vc=rng.choice(list("xy"), n), user=rng.choice(list("xy"), n), recorded_start_time=submit + 30)
    cls = notified(policy_class(name))
    out = simulate(js, cls, pools=((2, 4), (1, 4)), restore=5.0, checkpoint_interval=60.0,
                   failures=(4 * 3600.0, 300.0), retirements=[(1, 1500)])
    assert out["failures"].sum() > 0 and (out["status"] == "completed").all()
    suspends = [i for i, event in enumerate(cls.events) if event[0] == "suspend"]
    assert len(suspends) == out["preemptions"].sum()
    for i in suspends:
        assert cls.events[i + 1] == ("queued", *cls.events[i][1:])
