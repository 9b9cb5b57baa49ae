"""Checkpointing: a running job stops every `interval` seconds of work to write a checkpoint that takes
`cost` seconds; an interruption keeps the work of the checkpoints completed and wastes the rest.

With cost 0 this is the plain "lose the work since the last checkpoint" rule. With a cost, short
intervals waste time writing and long ones lose more work per failure: Young's (1974) and Daly's
(2006) optimum, about sqrt(2 x cost x MTBF), is the balance this lets a planner find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Work left after an interruption is a multiple of the interval up to rounding; do not let a
# 899.9999 s remainder of 900 count one checkpoint fewer.
_SLACK = 1e-9


@dataclass(frozen=True)
class Checkpointing:
    """How interrupted jobs resume: `restore_s` to reload before working again; a checkpoint every
    `interval_s` seconds of work (None: only when suspended) costing `cost_s`; `on_preempt`: the
    scheduler's preemptions let the job checkpoint first (no work lost)."""

    restore_s: float = 0.0
    interval_s: float | None = None
    cost_s: float = 0.0
    on_preempt: bool = False


def wall_time(work: float, interval: float | None, cost: float) -> float:
    """Seconds to do `work` seconds of work, checkpointing after every full interval."""
    if not cost or interval is None:
        return work
    return work + math.floor(work / interval + _SLACK) * cost


def kept_and_wasted(ran: float, interval: float | None, cost: float) -> tuple[float, float]:
    """(work kept, seconds wasted) when a run is interrupted `ran` seconds after it started working.
    Without an interval the job checkpoints as it is suspended and keeps everything."""
    if interval is None:
        return ran, 0.0
    cycles = math.floor(ran / (interval + cost) + _SLACK)
    return cycles * interval, ran - cycles * (interval + cost)
