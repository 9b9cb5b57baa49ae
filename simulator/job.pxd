# Augmenting declarations for job.py (the optional compiled build: simulator/compiled.py).
cdef class Job:
    cdef public object index  # an object: it keys the queue and running dicts (a C int would box per use)
    cdef public object id
    cdef public double submit
    cdef public long gpus
    cdef public double duration
    cdef public object user, vc, device, priority, deadline, estimate, min_gpus, max_gpus, model
    cdef public object recorded_start
    cdef public double queued_since
    cdef public object state, first_start, start, run_start, end, alloc
    cdef public double runtime, frac_left, attained
    cdef public object lost_work  # an object: the recorder keeps it (a C double would box a new float per job)
    cdef public long version, preemptions, failures
    cdef public object reject_reason, policy_data, pool, placed_device
    cdef public double comm_fraction
    cdef public long gpu_milli
    cdef public object flow, site
