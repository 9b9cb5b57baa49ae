# Augmenting declarations for fabric.py (the optional compiled build: simulator/compiled.py). A link's
# load is summed on C doubles (the same IEEE additions and products, in the same order, as in Python: the
# build passes -ffp-contract=off, so no fused multiply-add); the per-join and per-leave bookkeeping (the
# component search, the changed links) runs compiled as it is.
cimport cython

@cython.locals(total=double, load=double, share=double)
cpdef double link_load(dict on, shares)
