"""Earliest deadline first with admission control (`edf`).

Jobs run by conservative backfilling in deadline order (jobs without a deadline after, in arrival
order). At arrival a job with a deadline is planned into that schedule; it is rejected if it would miss
its deadline, or would make an already admitted job miss one that it otherwise meets. With exact
estimates the executed schedule is the plan, so admitted jobs meet their deadlines (on pools where
device counting equals placement, e.g. one node per pool or one device per node) as long as the queue
is within `backfill_depth` (default 1000) jobs, since only those are planned per pass.
"""

from __future__ import annotations

from pydantic import Field

from simulator.policies.backfill import ConservativeBackfill
from simulator.policies.predictive import PredictiveOptions
from simulator.policies.profile import FreeProfile
from simulator.policies.registry import register_policy

INF = float("inf")


class EdfOptions(PredictiveOptions):
    backfill_depth: int = Field(default=1000, ge=1, description="queued jobs planned per pass")
    admission: bool = True


@register_policy("edf")
class EarliestDeadlineFirst(ConservativeBackfill):
    Options = EdfOptions

    def order_key(self, job) -> tuple:
        return (INF if job.deadline is None else job.deadline, job.submit)

    def admit(self, job, now):
        if job.deadline is None or not self.options.admission:
            return None
        with_it = self._misses(now, job)
        if job.index in with_it:
            return "deadline cannot be met"
        if with_it and with_it - self._misses(now, None):
            return "admitting it would make an admitted job miss its deadline"
        return None

    def _misses(self, now, newcomer) -> set[int]:
        """Indices of deadline jobs whose planned end (queue plus `newcomer`) is after their deadline."""
        profile = FreeProfile(now, self.view.cluster.free, self.running_ends())
        key = None if newcomer is None else (newcomer.deadline, newcomer.submit, newcomer.index)
        missed: set[int] = set()
        placed_newcomer = newcomer is None
        for job in self.plan_order:
            if job.deadline is None:
                break
            if not placed_newcomer and key < self.plan_order.key(job):
                self._plan_one(profile, newcomer, now, missed)
                placed_newcomer = True
            self._plan_one(profile, job, now, missed)
        if not placed_newcomer:
            self._plan_one(profile, newcomer, now, missed)
        return missed

    def _plan_one(self, profile, job, now, missed) -> None:
        run = self.predicted_run(job)
        start = profile.earliest(job.gpus, run)
        profile.reserve(start, run, job.gpus)
        if start + run > job.deadline + 1e-9:
            missed.add(job.index)
