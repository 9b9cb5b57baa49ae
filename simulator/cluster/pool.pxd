# Augmenting declarations for pool.py (the optional compiled build: simulator/compiled.py).
cimport cython

cdef class Allocation:
    cdef public Pool pool
    cdef public list nodes
    cdef public Py_ssize_t devices
    cdef public Py_ssize_t milli

cdef class Pool:
    cdef public object name, device
    cdef public Py_ssize_t index, nodes, per_node, capacity, free
    cdef public bint installed
    cdef public object burst_after
    cdef public double in_service_from, in_service_until
    cdef public list _free_on, _masks, _holds
    cdef public Py_ssize_t leaf_size, domain_size
    cdef public object guard

    @cython.locals(per_node=Py_ssize_t, masks=list, guard=object, k=Py_ssize_t, node=Py_ssize_t, whole=Py_ssize_t,
                   rest=Py_ssize_t, taken=list)
    cpdef Allocation allocate(self, Py_ssize_t devices, bint spread=*, Py_ssize_t gpu_milli=*)
    # `node` stays a Python int: `1 << node` must not be a C shift (pools have more than 63 nodes)
    @cython.locals(free_on=list, masks=list, count=Py_ssize_t, was=Py_ssize_t)
    cpdef release(self, Allocation alloc)
