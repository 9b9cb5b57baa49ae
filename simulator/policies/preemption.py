"""Making room for a job by suspending running jobs that rank below it (shared by srtf and tiresias)."""

from __future__ import annotations

from collections.abc import Callable

from simulator.policies.base import ClusterView
from simulator.policies.sorted_queue import SortedQueue


def preempt_for(job, view: ClusterView, running: SortedQueue, outranks: Callable[[object], bool]) -> bool:
    """Suspend running jobs, lowest-ranked first, while `job` outranks them, until `job` fits.

    `running` is sorted highest priority first. Nothing is suspended unless enough devices can be
    freed; returns whether the job now fits (placement may still fail across node boundaries).
    """
    victims, gain = [], view.cluster.free
    for candidate in running.reversed():
        if gain >= job.gpus or not outranks(candidate):
            break
        victims.append(candidate)
        gain += candidate.alloc.devices
    if gain < job.gpus:
        return False
    for victim in victims:
        running.remove(victim)
        view.suspend(victim)
        if view.fits(job):
            break
    return True
