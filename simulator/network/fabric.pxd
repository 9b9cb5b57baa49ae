# Augmenting declarations for fabric.py (the optional compiled build: simulator/compiled.py). A link's
# load is summed on C doubles (the same IEEE additions and products, in the same order, as in Python: the
# build passes -ffp-contract=off, so no fused multiply-add); the per-join and per-leave bookkeeping (the
# component search, the changed links) runs compiled as it is.
cimport cython

# A job's flow: its rate and progress as C doubles (the same IEEE operations, in the same order).
cdef class Flow:
    cdef public double demand, rate, since, progressed, length, delay

    cpdef double progress_at(self, double now)
    @cython.locals(elapsed=double)
    cpdef set_rate(self, double rate, double now)
    cpdef double end_at(self)

@cython.locals(total=double, load=double, share=double)
cpdef double link_load(dict on, shares)

# A job across leaves: its hops and all-to-all loads, counts and devices as C integers, each node's
# injection a C double (the same IEEE product and quotient as in Python); the totals stay Python's `sum`.
@cython.locals(n=Py_ssize_t, devices=long, count=long, node=long, leaf=long, pod=long, per_leaf=long,
               inj=double, total=double, sent=double, inside=Py_ssize_t)
cpdef tuple all_to_all(tree, list nodes, double demand)
