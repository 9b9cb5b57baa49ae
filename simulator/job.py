"""A job as a plain record: no process, no generator; the engine's callbacks update it. Policies read
it, the performance model times it: it sits below all of them (and is compiled with the engine)."""

from __future__ import annotations

QUEUED, RUNNING, COMPLETED, REJECTED = "queued", "running", "completed", "rejected"


class Job:
    __slots__ = (
        # what the workload asked for
        "index", "id", "submit", "gpus", "duration", "user", "vc", "device", "priority", "deadline",
        "estimate", "min_gpus", "max_gpus", "model", "recorded_start", "comm_fraction", "gpu_milli",
        # lifecycle
        "state", "queued_since", "first_start", "start", "run_start", "end", "alloc", "runtime", "frac_left",
        "version", "attained", "preemptions", "lost_work", "reject_reason", "policy_data", "pool",
        "placed_device", "failures", "flow", "site",
    )

    def __init__(self, index: int, job_id: str, submit: float, gpus: int, duration: float):
        self.index = index
        self.id = job_id
        self.submit = submit
        self.gpus = gpus
        self.duration = duration
        self.user = self.vc = self.device = self.model = None
        self.priority = 0
        self.deadline = self.estimate = self.recorded_start = None
        self.comm_fraction = 0.0  # share of its run time spent communicating between nodes
        self.gpu_milli = 0  # thousandths of one GPU a fractional job asks for on a sharing pool; 0: whole GPUs
        self.min_gpus = self.max_gpus = gpus
        self.state = QUEUED
        self.queued_since = submit  # when it last joined the queue (burst pools take jobs that waited)
        self.first_start = self.start = self.run_start = self.end = None
        self.alloc = None
        self.pool = self.placed_device = None  # where it last ran (kept after the allocation is freed)
        self.runtime = duration  # full runtime on the current allocation
        self.frac_left = 1.0  # share of the job's work still to do
        # Bumped whenever the completion on the calendar goes stale (an interruption, or a new rate on a
        # contended fabric): entries of older versions are dropped.
        self.version = 0
        self.attained = 0.0  # device-seconds of service received so far (Tiresias' 2D attained service)
        self.preemptions = 0  # interruptions of any cause: the scheduler's or a node failure
        self.failures = 0  # interruptions by node failures
        self.lost_work = 0.0  # device-seconds redone after preemptions
        self.reject_reason = None
        self.policy_data = None  # a slot a policy may use for its own bookkeeping
        self.flow = None  # its traffic on a contended fabric while it runs there (network/fabric.py)
        # The site whose pools it may use (features/sites.py; None: any pool); a key no site has while
        # its input moves there over a wide-area link.
        self.site = None

    @property
    def size(self) -> int:
        """Devices held now, else devices asked for."""
        return self.alloc.devices if self.alloc is not None else self.gpus

    def attained_at(self, now: float) -> float:
        if self.state == RUNNING:
            return self.attained + self.alloc.gpus * (now - self.start)
        return self.attained

    def remaining_at(self, now: float) -> float:
        """Seconds of run time left at the current allocation's speed (known durations only)."""
        if self.state == RUNNING:
            if self.flow is not None:  # slowed by a contended fabric: count the work, not the wall time
                done = self.flow.progress_at(now)
            else:
                done = max(0.0, now - self.run_start)
            return max(0.0, self.frac_left * self.runtime - done)
        return self.frac_left * self.runtime

    def __repr__(self) -> str:
        return f"Job({self.id!r}, submit={self.submit}, gpus={self.gpus}, state={self.state})"


def duration_runtime(job: Job, devices: int, device: str) -> float:
    """How long a job runs on the devices it got: its recorded duration is its run time on the devices
    it asked for. An elastic job given fewer or more devices runs proportionally longer or shorter
    (linear scaling)."""
    if devices == job.gpus:
        return job.duration
    return job.duration * job.gpus / devices
