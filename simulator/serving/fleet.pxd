# Augmenting declarations for fleet.py (the optional compiled build: simulator/compiled.py).
cimport cython
from simulator.serving.replica cimport Replica

cdef class Fleet:
    cdef public object calendar, services, on_starved, on_drained, on_done, _feed_at
    cdef public set _draining
    cdef public list order, arrival, prompt, output, service, blocks, first, end, replica, rejected
    cdef public list preemptions, replicas, active, disagg, queued, outstanding, _kv_cap, _max_prompt
    cdef public list wake, _key, _affinity, _rr, last_end, _remaining, cached
    cdef public object session
    cdef public dict _home
    cdef public double t0, area, _last
    cdef public Py_ssize_t _next, in_system

    @cython.locals(order=list, arrival=list, i=Py_ssize_t, n=Py_ssize_t, woken=list)
    cpdef feed(self, double now)
    @cython.locals(s=Py_ssize_t, replicas=list, queued=object, rep=Replica)
    cpdef _route(self, Py_ssize_t r, double now, list woken)
    @cython.locals(k=Py_ssize_t)
    cpdef Replica _pick(self, Py_ssize_t s, list replicas, Py_ssize_t r)
    @cython.locals(s=Py_ssize_t, rep=Replica)
    cpdef left(self, Py_ssize_t r, double now)
    cpdef _count_out(self, Py_ssize_t s, double now)
