# Augmenting declarations for replica.py (the optional compiled build: simulator/compiled.py).
# Counters are C integers: token and iteration counts stay far below 2**63 (the scenario's size check
# bounds prompts, outputs and requests).
cimport cython
from simulator.engine.calendar cimport Calendar

cdef class Replica

@cython.locals(best=Replica, rep=Replica, least=cython.longlong)
cpdef Replica least_outstanding(list replicas)
@cython.locals(best=Replica, rep=Replica, least=cython.longlong)
cpdef Replica least_outstanding_tokens(list replicas)

cdef class Replica:
    cdef public object fleet, cost, waiting, pending
    cdef public Calendar calendar
    cdef public list finishing, group, periods
    cdef public dict start_it
    cdef public long long index, max_seqs, max_tokens, max_prompt, admit_below, pf, pf_left, chunk
    cdef public long long kv_blocks, kv_used, kv_peak, n_running, it, ctx_base, phase, b, T0, k
    cdef public long long outstanding, outstanding_tokens, tokens
    cdef public bint chunked
    cdef public double t_s, A, B, busy_s, kv_area, kv_since

    cpdef bint arrive(self, long long r, double now)
    cpdef schedule(self, double now)
    cpdef double _span(self, long long k)
    @cython.locals(a=double, b=double, d=double, t_s=double, k=cython.longlong)
    cpdef long long _steps_until(self, double now)
