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
    cdef public object fleet, cost, waiting, prompt, output, blocks, first, end
    cdef public Calendar calendar
    cdef public list finishing, group, periods
    cdef public dict start_it, prefill_costs, decode_costs
    cdef public long long index, max_seqs, max_tokens, max_prompt, admit_below, pf, pf_left, chunk
    cdef public long long kv_blocks, kv_used, kv_peak, n_running, it, ctx_base, phase, b, T0, k
    cdef public long long outstanding, outstanding_tokens, tokens, version
    cdef public bint chunked
    cdef public double t_s, A, B, busy_s, kv_area, kv_since

    cpdef bint arrive(self, long long r, double now)
    cpdef schedule(self, double now)
    cpdef _schedule_prefill_first(self, double now)
    cpdef _decode_cost(self, long long b)
    cpdef _change_at(self, double time)
    cpdef _prefilled(self, long long r, double now)
    cpdef _finish_until(self, long long it, double now)
    cpdef _leave(self, long long r, double now)
    @cython.locals(key=tuple)
    cpdef _start_prefill(self, list group, long long kv, long long tokens, double now)
    cpdef _decode_or_idle(self, double now)
    cpdef fire(self, double now)
    cpdef _on_boundary(self, double now)
    cpdef _on_mixed(self, double now)
    cpdef double _span(self, long long k)
    @cython.locals(a=double, b=double, d=double, t_s=double, k=cython.longlong)
    cpdef long long _steps_until(self, double now)
