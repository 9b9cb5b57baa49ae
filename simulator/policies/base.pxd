# Augmenting declarations for base.py (the optional compiled build: simulator/compiled.py).
cimport cython
from simulator.job cimport Job
from simulator.cluster.pool cimport Pool, Allocation

cdef class Decision:
    cdef public list suspend, launch

cdef class ClusterView:
    cdef public object cluster
    cdef public bint spread
    cdef public Pool _only
    cdef public dict running
    cdef public Decision decision
    cdef public object now

    @cython.locals(only=Pool, alloc=Allocation)
    cpdef allocate(self, Job job, devices=*)

cdef class Policy:
    cdef dict __dict__
    cdef public object options, context, queue
    cdef public ClusterView view

    @cython.locals(view=ClusterView)
    cpdef place(self, now)
    cpdef order(self, now)
    cpdef on_queued(self, Job job, now)
    cpdef on_launch(self, Job job, now)
