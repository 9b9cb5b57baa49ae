# Augmenting declarations for fabric.py (the optional compiled build: simulator/compiled.py). A link's
# load is summed on C doubles (the same IEEE additions and products, in the same order, as in Python: the
# build passes -ffp-contract=off, so no fused multiply-add); flows and the fat-tree fabric are cdef classes,
# so the re-share reads and writes their fields without the interpreter.
cimport cython
from simulator.network.fill cimport Filling

# A job's flow: its rate and progress as C doubles (the same IEEE operations, in the same order).
cdef class Flow:
    cdef public double demand, rate, since, progressed, length, delay

    cpdef double progress_at(self, double now)
    @cython.locals(elapsed=double)
    cpdef set_rate(self, double rate, double now)
    cpdef double end_at(self)

@cython.locals(total=double, load=double, share=double)
cpdef double link_load(dict on, dict shares)

# A job across leaves: its hops and all-to-all loads, counts and devices as C integers, each node's
# injection a C double (the same IEEE product and quotient as in Python); the totals stay Python's `sum`.
@cython.locals(n=Py_ssize_t, devices=long, count=long, node=long, leaf=long, pod=long, per_leaf=long,
               inj=double, total=double, sent=double, inside=Py_ssize_t)
cpdef tuple all_to_all(tree, list nodes, double demand)

# A fat-tree fabric's bookkeeping on typed containers. Column sets stay Python ints (`1 << j` on a
# Python int: a fabric can have more than 64 links), so the columns that are shifted stay objects.
cdef class TreeFabric:
    cdef public object tree, traffic, per_device_gbs, domain_nodes, _cap, _over
    cdef public dict capacity, _column, flows, loads, _shares, _entries, _bits, hops
    cdef public list _links, _cap_list, _crossing, _full, _joined, _link_gb, _used_list, usage_changes
    cdef public bint _a2a
    cdef public set _carrying
    cdef public double _since
    cdef public Filling _filling

    @cython.locals(per_domain=Py_ssize_t, per_leaf=Py_ssize_t, first=Py_ssize_t, same_domain=bint,
                   same_leaf=bint, domain=Py_ssize_t, leaf=Py_ssize_t, node=Py_ssize_t, column=dict,
                   crossing=list, full=list, cap=list, on=dict, total=double)
    cpdef bint join(self, job, Flow flow, list nodes) except -1
    @cython.locals(column=dict, crossing=list, full=list, cap=list, on=dict, total=double, links=list)
    cpdef list leave(self, job)
    @cython.locals(bits=dict, rest=list)
    cpdef tuple _component(self, list columns)
    @cython.locals(elapsed=double, gb=list, used=list, j=Py_ssize_t, moved=double, gbs=double)
    cpdef account(self, double now)
    @cython.locals(joined=list, flows=dict, jobs=list, shares=list, now_shares=dict, bits=dict, i=Py_ssize_t,
                   digits=str, top=Py_ssize_t, k=Py_ssize_t, contended=bint)
    cpdef list fair_rates(self, around=*)
    @cython.locals(entries=dict, column=dict, demand=list, cols=list, vals=list, entry=tuple, loads=dict, d=double)
    cpdef list _fill(self, list jobs)
    @cython.locals(shares=dict, full=list, crossing=list, before=list, carrying=set, links=list, changes=list,
                   j=Py_ssize_t)
    cpdef _record(self, columns)
