# Augmenting declarations for recorder.py (the optional compiled build: simulator/compiled.py).
cimport cython
from simulator.job cimport Job
from simulator.cluster.pool cimport Allocation

cdef class Recorder:
    cdef public list start, end, pool, status, last_start, held, interrupted
    cdef public dict interruptions
    cdef public double busy_device_seconds
    cdef public bint shared
    cdef public dict _arrays

    @cython.locals(i=Py_ssize_t, alloc=Allocation)
    cpdef job_done(self, Job job)
