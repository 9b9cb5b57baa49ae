"""How long a job runs on the devices it got."""

from __future__ import annotations

from simulator.engine.job import Job


def duration_runtime(job: Job, devices: int, device: str) -> float:
    """A job's recorded duration is its run time on the devices it asked for. An elastic job given
    fewer or more devices runs proportionally longer or shorter (linear scaling)."""
    if devices == job.gpus:
        return job.duration
    return job.duration * job.gpus / devices
